import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Database } from '../../src/util/sqlite-driver.js';
import { describe, expect, it } from 'vitest';
import { SqliteMetadataStore } from '../../src/meta/sqlite.js';
import { SCHEMA_VERSION } from '../../src/meta/sqlite-schema.js';
import { metadataConformance } from './conformance.js';

metadataConformance('sqlite', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-meta-'));
  const meta = new SqliteMetadataStore(path.join(dir, 'metadata.db'));
  return { meta, cleanup: async () => { await meta.close(); rmSync(dir, { recursive: true, force: true }); } };
});

describe('sqlite: schema 3 to 4', () => {
  it('adds the progress columns to a version 3 database, keeping its commits', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-meta-v3-'));
    const file = path.join(dir, 'metadata.db');
    try {
      const first = new SqliteMetadataStore(file);
      await first.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: '2030-01-01T00:00:00.000Z' });
      const root = await first.root('mnt_1');
      await first.beginCommit({ id: 'cmt_1', mountId: 'mnt_1', nodeId: root.id, path: '/', message: 'm', groupId: null, parentCommitId: null, phase: 'sealing',
        error: null, stats: { files: 0, bytes: 0, uploadedBytes: 0, dedupedBytes: 0 }, createdAt: '2030-01-01T00:00:00.000Z', completedAt: null });
      await first.close();
      // What release 3 left: no progress columns, user_version 3.
      const raw = new Database(file);
      raw.exec(`ALTER TABLE commits DROP COLUMN progress; ALTER TABLE agent_tasks DROP COLUMN progress;
        DROP TABLE gc_pins; DROP TABLE gc_tombstones; DROP TABLE gc_lease; DROP TABLE mount_auto_commit;
        DROP INDEX ref_log_from; DROP INDEX ref_log_to; DROP INDEX refs_commit; DROP INDEX nodes_sha256;
        ALTER TABLE commits DROP COLUMN purged_at; ALTER TABLE commits DROP COLUMN manifest_deleted_at;
        PRAGMA user_version = 3;`);
      raw.close();

      const again = new SqliteMetadataStore(file);
      expect((await again.getCommit('cmt_1'))).toMatchObject({ message: 'm', phase: 'sealing', progress: null });
      await again.setCommitProgress('cmt_1', { phase: 'sealing', filesTotal: 0, filesDone: 0, bytesTotal: 0, bytesUploaded: 0 });
      expect((await again.getCommit('cmt_1'))!.progress).toMatchObject({ phase: 'sealing' });
      await again.close();
      const check = new Database(file, { readonly: true });
      expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      check.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sqlite: setRef and purge from two stores on one file', () => {
  it('never leaves a ref on a purged commit', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-meta-'));
    const a = new SqliteMetadataStore(path.join(dir, 'metadata.db'));
    const b = new SqliteMetadataStore(path.join(dir, 'metadata.db'));
    const now = () => new Date().toISOString();
    try {
      await a.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
      const root = await a.root('mnt_1');
      for (let i = 0; i < 20; i++) {
        const f = await a.createNode({ mountId: 'mnt_1', parentId: root.id, name: `g${i}`, type: 'folder', mode: 0o40755, uid: 0, gid: 0, ownerAgent: null });
        const c = await a.beginCommit({
          id: `cmt_${i}`, mountId: 'mnt_1', nodeId: f.id, path: `/g${i}`, message: '', groupId: null, parentCommitId: null, phase: 'sealing', error: null,
          stats: { files: 0, bytes: 0, uploadedBytes: 0, dedupedBytes: 0 }, createdAt: now(), completedAt: null,
        });
        await a.markManifested(c.id, c.stats, []);
        await a.completeCommits([c.id], now());
        await a.softDeleteNode(f.id, now());
        const calls = [
          () => a.setRef({ mountId: 'mnt_1', name: `g${i}`, commitId: c.id, updatedAt: now(), updatedBy: 't' }, undefined),
          () => b.purgeCommit(c.id, '2999-01-01T00:00:00.000Z', now()),
        ];
        if (i % 2) calls.reverse();
        await Promise.allSettled(calls.map((call) => call()));
        const ref = await b.getRef('mnt_1', `g${i}`);
        const purged = (await a.getCommit(c.id))!.purgedAt != null;
        expect(ref !== null, `round ${i}`).not.toBe(purged);
      }
    } finally {
      await a.close();
      await b.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sqlite: the gc step of the schema', () => {
  it('migrates a schema 4 database: its commits stay, the gc columns and tables appear', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-meta-'));
    const file = path.join(dir, 'metadata.db');
    const now = () => new Date().toISOString();
    try {
      const a = new SqliteMetadataStore(file);
      await a.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
      await a.close();
      // Back to what schema 4 held.
      const db = new Database(file);
      db.exec(`DROP TABLE gc_pins; DROP TABLE gc_tombstones; DROP TABLE gc_lease; DROP TABLE mount_auto_commit;
        DROP INDEX ref_log_from; DROP INDEX ref_log_to; DROP INDEX refs_commit; DROP INDEX nodes_sha256;
        ALTER TABLE commits DROP COLUMN purged_at; ALTER TABLE commits DROP COLUMN manifest_deleted_at;`);
      db.pragma('user_version = 4');
      db.close();
      const b = new SqliteMetadataStore(file);
      try {
        expect((await b.listMounts()).map((m) => m.id)).toEqual(['mnt_1']);
        expect(await b.tombstoneObject('a'.repeat(64), now())).toBe(true);
        expect(await b.listPurgedWithManifest()).toEqual([]);
      } finally {
        await b.close();
      }
      const check = new Database(file);
      expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      check.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sqlite: the auto-commit step of the schema', () => {
  it('migrates a schema 5 database: its mounts stay, and rules can be set', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-meta-'));
    const file = path.join(dir, 'metadata.db');
    const now = () => new Date().toISOString();
    try {
      const a = new SqliteMetadataStore(file);
      await a.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
      await a.close();
      // Back to what schema 5 held.
      const db = new Database(file);
      db.exec('DROP TABLE mount_auto_commit');
      db.pragma('user_version = 5');
      db.close();
      const b = new SqliteMetadataStore(file);
      try {
        expect((await b.listMounts()).map((m) => m.id)).toEqual(['mnt_1']);
        expect((await b.getAutoCommitRules('mnt_1')).version).toBe(0);
        expect(await b.setAutoCommitRules('mnt_1', ['ckpt/*:@dcp'], 0, now(), 't')).toMatchObject({ version: 1 });
      } finally {
        await b.close();
      }
      const check = new Database(file);
      expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      check.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
