import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteMetadataStore } from '../../src/meta/sqlite.js';
import { describe, expect, it } from 'vitest';
import { metadataConformance } from './conformance.js';

metadataConformance('sqlite', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-meta-'));
  const meta = new SqliteMetadataStore(path.join(dir, 'metadata.db'));
  return { meta, cleanup: async () => { await meta.close(); rmSync(dir, { recursive: true, force: true }); } };
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
