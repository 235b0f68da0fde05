/**
 * The PostgreSQL MetadataStore: the conformance suite every backend passes, unchanged,
 * on a fresh database per test; then what only a shared server has: migrations racing,
 * a newer schema, the server restarting under a live store, and the races that row
 * locks decide between separate store instances (separate pools, as separate
 * processes would have).
 */
import * as net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMetadata } from '../../src/meta/index.js';
import { PostgresMetadataStore } from '../../src/meta/postgres.js';
import { PG_SCHEMA_STEPS, PG_SCHEMA_VERSION } from '../../src/meta/postgres-schema.js';
import type { CommitRecord, MetadataStore, NodeRecord } from '../../src/meta/types.js';
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

/** A store on `url` with the mount `mnt_1`, given to `fn` with its root; closed after, whatever happens. */
async function onMount(url: string, fn: (meta: PostgresMetadataStore, root: NodeRecord) => Promise<void>): Promise<void> {
  const meta = await PostgresMetadataStore.open(url);
  try {
    await meta.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
    await fn(meta, await meta.root('mnt_1'));
  } finally {
    await meta.close();
  }
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

  it('brings a version 1 database to version 2: the progress columns, its rows kept', async () => {
    const url = await server.createDatabase();
    const first = await PostgresMetadataStore.open(url);
    await first.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
    await first.close();
    // What a version 1 database holds.
    await sql(url, 'ALTER TABLE commits DROP COLUMN progress');
    await sql(url, 'ALTER TABLE agent_tasks DROP COLUMN progress');
    await sql(url, `DROP TABLE gc_pins; DROP TABLE gc_tombstones; DROP TABLE gc_lease; DROP TABLE mount_auto_commit;
      DROP INDEX ref_log_from; DROP INDEX ref_log_to; DROP INDEX refs_commit; DROP INDEX nodes_sha256;
      ALTER TABLE commits DROP COLUMN purged_at; ALTER TABLE commits DROP COLUMN manifest_deleted_at;`);
    await sql(url, 'DELETE FROM roset_schema WHERE version > 1');
    const again = await PostgresMetadataStore.open(url);
    try {
      expect((await sql(url, 'SELECT version FROM roset_schema ORDER BY version')).map((r) => r.version)).toEqual(PG_SCHEMA_STEPS);
      expect((await again.getMount('mnt_1'))?.name).toBe('default');
      const root = await again.root('mnt_1');
      await again.beginCommit({ id: 'cmt_1', mountId: 'mnt_1', nodeId: root.id, path: '/', message: '', groupId: null, parentCommitId: null, phase: 'sealing',
        error: null, stats: { files: 0, bytes: 0, uploadedBytes: 0, dedupedBytes: 0 }, createdAt: now(), completedAt: null });
      await again.setCommitProgress('cmt_1', { phase: 'uploading', filesTotal: 2, filesDone: 1, bytesTotal: 9, bytesUploaded: 4 });
      expect((await again.getCommit('cmt_1'))!.progress).toEqual({ phase: 'uploading', filesTotal: 2, filesDone: 1, bytesTotal: 9, bytesUploaded: 4 });
    } finally {
      await again.close();
    }
  });

  it('refuses to open a database with a newer schema, changing nothing', async () => {
    const url = await server.createDatabase();
    await (await PostgresMetadataStore.open(url)).close();
    await sql(url, 'INSERT INTO roset_schema (version) VALUES ($1)', [PG_SCHEMA_VERSION + 1]);
    await expect(PostgresMetadataStore.open(url)).rejects.toThrow(`schema version ${PG_SCHEMA_VERSION + 1}, newer than this release understands (${PG_SCHEMA_VERSION}); upgrade Roset`);
    expect((await sql(url, 'SELECT count(*)::int AS n FROM roset_schema'))[0]!.n).toBe(PG_SCHEMA_STEPS.length + 1);
  });

  it('migrates a schema 2 database: its mounts stay, the gc columns and tables appear', async () => {
    const url = await server.createDatabase();
    const a = await PostgresMetadataStore.open(url);
    await a.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
    await a.close();
    await sql(url, `DROP TABLE gc_pins; DROP TABLE gc_tombstones; DROP TABLE gc_lease; DROP TABLE mount_auto_commit;
      DROP INDEX ref_log_from; DROP INDEX ref_log_to; DROP INDEX refs_commit; DROP INDEX nodes_sha256;
      ALTER TABLE commits DROP COLUMN purged_at; ALTER TABLE commits DROP COLUMN manifest_deleted_at;
      DELETE FROM roset_schema WHERE version > 2;`);
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

  it('migrates a schema 3 database: its mounts stay, and auto-commit rules can be set', async () => {
    const url = await server.createDatabase();
    const a = await PostgresMetadataStore.open(url);
    await a.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
    await a.close();
    await sql(url, 'DROP TABLE mount_auto_commit; DELETE FROM roset_schema WHERE version > 3;');
    const b = await PostgresMetadataStore.open(url);
    try {
      expect((await b.listMounts()).map((m) => m.id)).toEqual(['mnt_1']);
      expect(await b.setAutoCommitRules('mnt_1', ['ckpt/*:@dcp'], 0, now(), 't')).toMatchObject({ rules: ['ckpt/*:@dcp'], version: 1 });
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
      // The server shows it waiting on that lock: then it is in flight, not yet to be sent.
      for (let waited = 0; ; waited++) {
        const r = await blocker.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()");
        if ((r.rows[0] as { n: number }).n > 0) break;
        if (waited > 3000) throw new Error('the change never waited on the row lock');
        await new Promise((r) => setTimeout(r, 10));
      }
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

describe('postgres: connections the server ended while they were idle', () => {
  it('sends a call again on another connection when the pooled one it took was terminated unseen', async () => {
    const url = await server.createDatabase();
    await onMount(url, async (meta, root) => {
      await Promise.all([1, 2, 3, 4].map((i) => folder(meta, root.id, `idle${i}`)));
      server.terminateSessionsSync(url);
      // Both calls start before this process has read one notice: they take the pool's
      // dead connections first, and must not fail for it.
      const mount = meta.getMount('mnt_1');
      const created = folder(meta, root.id, 'after');
      expect((await mount)?.name).toBe('default');
      await created;
      expect((await meta.listChildren(root.id)).map((n) => n.name)).toEqual(['after', 'idle1', 'idle2', 'idle3', 'idle4']);
    });
  });
});

/**
 * A TCP relay to `target` that ends the session of the next `count` connections the
 * way a server shutting down does, at the worst moment: its FATAL 57P01 notice rides in
 * the same write as the ReadyForQuery that completes the connection's startup.
 */
async function endingAfterStartup(target: URL): Promise<{ url: string; endNext: (count: number) => void; ended: () => number; close: () => Promise<void> }> {
  let toEnd = 0;
  let ended = 0;
  const notice = (() => {
    const fields = Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0');
    const head = Buffer.alloc(5);
    head.write('E', 0);
    head.writeInt32BE(4 + fields.length, 1);
    return Buffer.concat([head, fields]);
  })();
  const sockets = new Set<net.Socket>();
  const relay = net.createServer((client) => {
    const server = net.connect(Number(target.port), target.hostname);
    sockets.add(client).add(server);
    const drop = (): void => { client.destroy(); server.destroy(); sockets.delete(client); sockets.delete(server); };
    client.on('error', drop).on('close', drop);
    server.on('error', drop).on('close', drop);
    client.pipe(server);
    if (toEnd === 0) return void server.pipe(client);
    toEnd--;
    // Server messages: a type byte, then a length that counts itself. Relayed whole, up
    // to the ReadyForQuery ('Z'), which goes out with the notice; then the session ends.
    let pending = Buffer.alloc(0);
    server.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (let at = 0; at + 5 <= pending.length;) {
        const end = at + 1 + pending.readInt32BE(at + 1);
        if (end > pending.length) break;
        if (pending[at] === 0x5a) {
          ended++;
          client.end(Buffer.concat([pending.subarray(0, end), notice]));
          server.destroy();
          return;
        }
        at = end;
      }
    });
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const url = new URL(target.href);
  url.port = String((relay.address() as net.AddressInfo).port);
  return {
    url: url.href,
    endNext: (count) => { toEnd = count; },
    ended: () => ended,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => relay.close(() => resolve()));
    },
  };
}

describe('postgres: connections the server ends as they open', () => {
  it('survives a session ended in the same read that completed its startup, and sends the call again', async () => {
    const relay = await endingAfterStartup(new URL(await server.createDatabase()));
    try {
      await onMount(relay.url, async (meta, root) => {
        // The pool holds one idle connection; three calls at once open two more, and the
        // server ends both as they open. An 'error' nobody listened for would have ended
        // this process (the test run reports it); a call that failed would reject here.
        relay.endNext(2);
        await Promise.all([1, 2, 3].map((i) => folder(meta, root.id, `f${i}`)));
        expect(relay.ended()).toBe(2);
        expect((await meta.listChildren(root.id)).map((n) => n.name)).toEqual(['f1', 'f2', 'f3']);
      });
    } finally {
      await relay.close();
    }
  });
});

describe('postgres: a change the server keeps aborting', () => {
  it('runs it again, then fails with METADATA_CONTENDED, having changed nothing', async () => {
    const url = await server.createDatabase();
    await onMount(url, async (meta, root) => {
      // Every insert of this name is a deadlock victim, as far as the store can tell.
      await sql(url, "CREATE FUNCTION victim() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$ LANGUAGE plpgsql");
      await sql(url, "CREATE TRIGGER victim BEFORE INSERT ON nodes FOR EACH ROW WHEN (NEW.name = 'victim') EXECUTE FUNCTION victim()");
      const err = await folder(meta, root.id, 'victim').catch((e: unknown) => e);
      expect(err).toMatchObject({ rosetCode: 'METADATA_CONTENDED' });
      expect(String((err as Error).message)).toContain('deadlock detected');
      // Anything else goes through; the victim was never created.
      await folder(meta, root.id, 'other');
      expect((await meta.listChildren(root.id)).map((n) => n.name)).toEqual(['other']);
    });
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

  it('never leaves a ref on a deleted folder when a ref move and a soft delete race, from two instances', async () => {
    const root = await a.root('mnt_1');
    const ref = (name: string, commitId: string) => ({ mountId: 'mnt_1', name, commitId, updatedAt: now(), updatedBy: 't' });
    const completedIn = async (parentId: string, name: string, path: string) => {
      const f = await folder(a, parentId, name);
      const c = await a.beginCommit(commitOf(f.id, path));
      await a.markManifested(c.id, c.stats, []);
      await a.completeCommits([c.id], now());
      return { folder: f, commit: c.id };
    };
    const base = await completedIn(root.id, 'race-base', '/race-base');
    for (let i = 0; i < 40; i++) {
      // Odd rounds delete a staging folder that holds the committed one.
      const holder = i % 2 === 1 ? await folder(a, root.id, `race-h${i}`) : null;
      const ck = await completedIn(holder?.id ?? root.id, `race${i}`, holder ? `/race-h${i}/race${i}` : `/race${i}`);
      const name = `race-ref${i}`;
      await a.setRef(ref(name, base.commit), undefined);
      const target = holder?.id ?? ck.folder.id;
      const calls = [() => a.setRef(ref(name, ck.commit), undefined), () => b.softDeleteNode(target, now())];
      if (i % 4 >= 2) calls.reverse();
      const got = await outcomes(calls.map((f) => f()));
      expect(got.filter((o) => o === 'ok'), `round ${i}: ${got.join(', ')}`).toHaveLength(1);
      expect(got.filter((o) => o !== 'ok').sort(), `round ${i}`).toSatisfy((e: string[]) => e[0] === 'COMMIT_FOLDER_DELETED' || e[0] === 'REFERENCED_BY_REF');
      const r = (await a.getRef('mnt_1', name))!;
      const deleted = (await a.getNode(ck.folder.id))!.deletedAt !== null;
      expect(r.commitId === ck.commit && deleted, `round ${i}`).toBe(false);
    }
  });

  it('orders a ref move and a soft delete by row locks: whichever checks second waits and is refused', async () => {
    // A store whose transactions pause inside, after their check: without the locks
    // the other call would slip into the pause.
    const slow = await PostgresMetadataStore.open(url, { pauseAt: () => new Promise((r) => setTimeout(r, 700)) });
    try {
      const root = await a.root('mnt_1');
      const ref = (name: string, commitId: string) => ({ mountId: 'mnt_1', name, commitId, updatedAt: now(), updatedBy: 't' });
      const completedIn = async (name: string) => {
        const f = await folder(a, root.id, name);
        const c = await a.beginCommit(commitOf(f.id, `/${name}`));
        await a.markManifested(c.id, c.stats, []);
        await a.completeCommits([c.id], now());
        return { folder: f, commit: c.id };
      };
      const base = await completedIn('lock-base');
      // The delete checks the refs first and pauses; the move waits for it, then is refused.
      const one = await completedIn('lock-1');
      await a.setRef(ref('lock-r1', base.commit), undefined);
      const del = slow.softDeleteNode(one.folder.id, now());
      await new Promise((r) => setTimeout(r, 250));
      await expect(b.setRef(ref('lock-r1', one.commit), undefined)).rejects.toMatchObject({ rosetCode: 'COMMIT_FOLDER_DELETED' });
      await del;
      expect((await a.getRef('mnt_1', 'lock-r1'))!.commitId).toBe(base.commit);
      // The move checks the folder first and pauses; the delete waits for it, then is refused.
      const two = await completedIn('lock-2');
      const move = slow.setRef(ref('lock-r2', two.commit), undefined);
      await new Promise((r) => setTimeout(r, 250));
      await expect(b.softDeleteNode(two.folder.id, now())).rejects.toMatchObject({ rosetCode: 'REFERENCED_BY_REF' });
      await move;
      expect((await a.getNode(two.folder.id))!.deletedAt).toBeNull();
      expect((await a.getRef('mnt_1', 'lock-r2'))!.commitId).toBe(two.commit);
    } finally {
      await slow.close();
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
