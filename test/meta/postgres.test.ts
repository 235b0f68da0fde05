/**
 * The PostgreSQL MetadataStore: the conformance suite every backend passes, unchanged,
 * on a fresh database per test; then what only a shared server has: migrations racing,
 * a newer schema, the server restarting under a live store, and the races that row
 * locks decide between separate store instances (separate pools, as separate
 * processes would have).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMetadata } from '../../src/meta/index.js';
import { PostgresMetadataStore } from '../../src/meta/postgres.js';
import { PG_SCHEMA_STEPS, PG_SCHEMA_VERSION } from '../../src/meta/postgres-schema.js';
import type { CommitRecord, MetadataStore } from '../../src/meta/types.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';
import { metadataConformance } from './conformance.js';

let server: PostgresServer;
beforeAll(async () => { server = await startPostgres(); });
afterAll(async () => { await server?.stop(); });

metadataConformance('postgres', async () => {
  const url = await server.createDatabase();
  const meta = await PostgresMetadataStore.open(url);
  return { meta, cleanup: async () => { await meta.close(); await server.dropDatabase(url); } };
});

async function sql<T extends Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

const now = () => new Date().toISOString();
let seq = 0;
const commitOf = (nodeId: string, path: string): CommitRecord => ({
  id: `cmt_${++seq}`, mountId: 'mnt_1', nodeId, path, message: '', groupId: null, parentCommitId: null, phase: 'sealing', error: null,
  stats: { files: 0, bytes: 0, uploadedBytes: 0, dedupedBytes: 0 }, createdAt: now(), completedAt: null,
});

async function folder(meta: MetadataStore, parentId: string, name: string) {
  return meta.createNode({ mountId: 'mnt_1', parentId, name, type: 'folder', mode: 0o40755, uid: 0, gid: 0, ownerAgent: null });
}

/** Outcomes of racing promises: the codes of the rejected ones, `ok` for the others. */
async function outcomes(ps: Array<Promise<unknown>>): Promise<string[]> {
  return (await Promise.allSettled(ps)).map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { rosetCode?: string }).rosetCode ?? String(r.reason)));
}

describe('postgres: schema and migrations', () => {
  it('migrates once: processes opening an empty database together all succeed, with one schema', async () => {
    const url = await server.createDatabase();
    const stores = await Promise.all([1, 2, 3, 4].map(() => PostgresMetadataStore.open(url)));
    try {
      expect((await sql(url, 'SELECT version FROM roset_schema ORDER BY version')).map((r) => r.version)).toEqual(PG_SCHEMA_STEPS);
      expect(PG_SCHEMA_STEPS.at(-1)).toBe(PG_SCHEMA_VERSION);
      await stores[0]!.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
      expect((await stores[3]!.getMount('mnt_1'))?.name).toBe('default');
      // Opening again changes nothing.
      const again = await PostgresMetadataStore.open(url);
      await again.close();
      expect((await sql(url, 'SELECT version FROM roset_schema')).length).toBe(PG_SCHEMA_STEPS.length);
      expect((await stores[1]!.listMounts()).length).toBe(1);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('refuses to open a database with a newer schema, changing nothing', async () => {
    const url = await server.createDatabase();
    await (await PostgresMetadataStore.open(url)).close();
    await sql(url, 'INSERT INTO roset_schema (version) VALUES ($1)', [PG_SCHEMA_VERSION + 1]);
    await expect(PostgresMetadataStore.open(url)).rejects.toThrow(`schema version ${PG_SCHEMA_VERSION + 1}, newer than this release understands (${PG_SCHEMA_VERSION}); upgrade Roset`);
    expect((await sql(url, 'SELECT count(*)::int AS n FROM roset_schema'))[0]!.n).toBe(PG_SCHEMA_STEPS.length + 1);
  });

  it('migrates a schema 1 database: its mounts stay, the gc columns and tables appear', async () => {
    const url = await server.createDatabase();
    const a = await PostgresMetadataStore.open(url);
    await a.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
    await a.close();
    await sql(url, `DROP TABLE gc_pins; DROP TABLE gc_tombstones; DROP TABLE gc_lease;
      DROP INDEX ref_log_from; DROP INDEX ref_log_to; DROP INDEX refs_commit; DROP INDEX nodes_sha256;
      ALTER TABLE commits DROP COLUMN purged_at; ALTER TABLE commits DROP COLUMN manifest_deleted_at;
      DELETE FROM roset_schema WHERE version > 1;`);
    const b = await PostgresMetadataStore.open(url);
    try {
      expect((await b.listMounts()).map((m) => m.id)).toEqual(['mnt_1']);
      expect(await b.tombstoneObject('a'.repeat(64), now())).toBe(true);
      expect(await b.listPurgedWithManifest()).toEqual([]);
      expect((await sql(url, 'SELECT version FROM roset_schema ORDER BY version')).map((r) => r.version)).toEqual(PG_SCHEMA_STEPS);
    } finally {
      await b.close();
    }
  });

  it('is what openMetadata opens for postgres:// and postgresql:// URLs', async () => {
    const url = await server.createDatabase();
    for (const u of [url, url.replace(/^postgres:/, 'postgresql:')]) {
      const meta = await openMetadata(u, '/nonexistent');
      expect(meta).toBeInstanceOf(PostgresMetadataStore);
      await meta.close();
    }
  });

  it('fails to open an unreachable server with METADATA_UNAVAILABLE, without the password', async () => {
    const err = await PostgresMetadataStore.open('postgres://roset:s3cret-pw@127.0.0.1:1/roset', { connectTimeoutMs: 2000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ rosetCode: 'METADATA_UNAVAILABLE' });
    expect(String((err as Error).message)).not.toContain('s3cret-pw');
    expect(String((err as Error).message)).toContain('postgres://roset:***@127.0.0.1:1/roset');
  });
});

describe('postgres: the server restarting', () => {
  it('fails calls with METADATA_UNAVAILABLE while the server is down, and works again without reopening', async () => {
    const url = await server.createDatabase();
    const meta = await PostgresMetadataStore.open(url);
    const blocker = new pg.Client({ connectionString: url });
    try {
      await meta.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
      const root = await meta.root('mnt_1');
      // Several idle connections in the pool, which the shutdown closes under it.
      await Promise.all([1, 2, 3, 4].map((i) => folder(meta, root.id, `before${i}`)));
      // A change in flight when the server goes: it waits on a row lock held elsewhere.
      await blocker.connect();
      blocker.on('error', () => undefined);
      await blocker.query('BEGIN');
      await blocker.query('SELECT 1 FROM nodes WHERE id = $1 FOR UPDATE', [root.id]);
      const inFlight = folder(meta, root.id, 'during').catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 200));
      await server.restart(async () => {
        expect(await inFlight).toMatchObject({ rosetCode: 'METADATA_UNAVAILABLE' });
        await expect(meta.getMount('mnt_1')).rejects.toMatchObject({ rosetCode: 'METADATA_UNAVAILABLE' });
        await expect(folder(meta, root.id, 'down')).rejects.toMatchObject({ rosetCode: 'METADATA_UNAVAILABLE', code: 'ROSET_E_METADATA_UNAVAILABLE' });
      });
      expect((await meta.getMount('mnt_1'))?.name).toBe('default');
      await folder(meta, root.id, 'after');
      expect((await meta.listChildren(root.id)).map((n) => n.name)).toEqual(['after', 'before1', 'before2', 'before3', 'before4']);
    } finally {
      await blocker.end().catch(() => undefined);
      await meta.close();
    }
  });
});

describe('postgres: races between store instances', () => {
  let url: string;
  let a: PostgresMetadataStore;
  let b: PostgresMetadataStore;
  beforeAll(async () => {
    url = await server.createDatabase();
    a = await PostgresMetadataStore.open(url);
    b = await PostgresMetadataStore.open(url);
    await a.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
  });
  afterAll(async () => { await a?.close(); await b?.close(); });

  it('lets exactly one of two commits win, on a folder and on its parent, from two instances', async () => {
    const root = await a.root('mnt_1');
    for (let i = 0; i < 60; i++) {
      const parent = await folder(a, root.id, `p${i}`);
      const mid = await folder(a, parent.id, 'mid');
      const inner = await folder(a, mid.id, 'inner');
      // Alternate which instance commits the outer folder, and which call goes first.
      const [outerStore, innerStore] = i % 2 === 0 ? [a, b] : [b, a];
      const calls = [() => outerStore.beginCommit(commitOf(parent.id, `/p${i}`)), () => innerStore.beginCommit(commitOf(inner.id, `/p${i}/mid/inner`))];
      if (i % 4 >= 2) calls.reverse();
      const got = await outcomes(calls.map((f) => f()));
      expect(got.filter((o) => o === 'ok'), `round ${i}: ${got.join(', ')}`).toHaveLength(1);
      expect(got.filter((o) => o !== 'ok')).toEqual(['COMMIT_IN_PROGRESS']);
      const states = [(await a.getNode(parent.id))!.state, (await a.getNode(inner.id))!.state];
      expect(states.filter((s) => s === 'sealing')).toHaveLength(1);
    }
  });

  it('never leaves a ref on a purged commit when setRef and purge race from two instances', async () => {
    const root = await a.root('mnt_1');
    for (let i = 0; i < 40; i++) {
      const f = await folder(a, root.id, `g${i}`);
      const c = await a.beginCommit(commitOf(f.id, `/g${i}`));
      await a.markManifested(c.id, c.stats, []);
      await a.completeCommits([c.id], now());
      await a.softDeleteNode(f.id, now());
      const [refStore, purgeStore] = i % 2 === 0 ? [a, b] : [b, a];
      const calls = [
        () => refStore.setRef({ mountId: 'mnt_1', name: `g${i}`, commitId: c.id, updatedAt: now(), updatedBy: 't' }, undefined),
        () => purgeStore.purgeCommit(c.id, '2999-01-01T00:00:00.000Z', now()),
      ];
      if (i % 4 >= 2) calls.reverse();
      await Promise.allSettled(calls.map((call) => call()));
      const ref = await a.getRef('mnt_1', `g${i}`);
      const purged = (await b.getCommit(c.id))!.purgedAt != null;
      expect([ref !== null, purged], `round ${i}`).toSatisfy(([r, p]: boolean[]) => r !== p);
    }
  });

  it('lets exactly one of two compare-and-swaps with the same expected value win, from two instances', async () => {
    const root = await a.root('mnt_1');
    const done: string[] = [];
    for (const name of ['c0', 'c1', 'c2']) {
      const f = await folder(a, root.id, name);
      const c = await a.beginCommit(commitOf(f.id, `/${name}`));
      await a.markManifested(c.id, c.stats, []);
      await a.completeCommits([c.id], now());
      done.push(c.id);
    }
    const [c0, c1] = done as [string, string, string];
    const ref = (name: string, commitId: string) => ({ mountId: 'mnt_1', name, commitId, updatedAt: now(), updatedBy: 't' });
    for (let i = 0; i < 60; i++) {
      const name = `r${i}`;
      // Creation: both expect the ref not to exist.
      const created = await Promise.all([a.setRef(ref(name, c0), null), b.setRef(ref(name, c1), null)]);
      expect(created.filter((r) => r !== null), `round ${i}`).toHaveLength(1);
      const first = (await a.getRef('mnt_1', name))!.commitId;
      // A move: both expect the value the winner set, and each moves it somewhere else.
      const [x, y] = done.filter((c) => c !== first) as [string, string];
      const moved = await Promise.all([b.setRef(ref(name, x), first), a.setRef(ref(name, y), first)]);
      expect(moved.filter((r) => r !== null), `round ${i}`).toHaveLength(1);
      const log = await b.refLog('mnt_1', name);
      expect(log.map((e) => e.fromCommitId)).toEqual([null, first]);
      expect(log[1]!.toCommitId).toBe((await b.getRef('mnt_1', name))!.commitId);
    }
  });
});
