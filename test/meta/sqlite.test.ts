import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
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
      raw.exec('ALTER TABLE commits DROP COLUMN progress; ALTER TABLE agent_tasks DROP COLUMN progress; PRAGMA user_version = 3;');
      raw.close();

      const again = new SqliteMetadataStore(file);
      expect((await again.getCommit('cmt_1'))).toMatchObject({ message: 'm', phase: 'sealing', progress: null });
      await again.setCommitProgress('cmt_1', { phase: 'sealing', filesTotal: 0, filesDone: 0, bytesTotal: 0, bytesUploaded: 0 });
      expect((await again.getCommit('cmt_1'))!.progress).toMatchObject({ phase: 'sealing' });
      await again.close();
      const check = new Database(file, { readonly: true });
      expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      check.close();
      expect(SCHEMA_VERSION).toBe(4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
