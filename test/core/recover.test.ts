/**
 * `recoverFromBucket` brings back exactly what the bucket proves: completed commits
 * with their manifests, sealed groups with their records, refs at their mirrored
 * position; not commits of a group that never sealed, nor folders never committed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fsSync from 'node:fs';
import { describe, expect, it } from 'vitest';
import { recoverFromBucket } from '../../src/commit/recover.js';
import { SqliteMetadataStore } from '../../src/meta/sqlite.js';
import { startCore, waitSettled, type CoreHarness } from '../support/core.js';

async function folder(h: CoreHarness, p: string, files: Record<string, string>): Promise<string> {
  await h.fs.mkdir(p, 0o755);
  for (const [name, text] of Object.entries(files)) {
    const fh = await h.fs.create(`${p}/${name}`, 0o640, fsSync.constants.O_WRONLY);
    h.fs.write(fh, Buffer.from(text), text.length, 0);
    await h.fs.release(fh);
  }
  return (await h.cp.resolvePath(h.mountId, p))!.id;
}

describe('recover from the bucket', () => {
  it('restores completed commits, sealed groups and refs, and nothing unproven', async () => {
    const h = await startCore();
    try {
      const c1 = await waitSettled(h, (await h.cp.commit(h.mountId, await folder(h, '/ck1', { 'a.bin': 'A', 'b.bin': 'B' }), { message: 'one' })).id);
      const c2 = await waitSettled(h, (await h.cp.commit(h.mountId, await folder(h, '/ck2', { 'a.bin': 'A' }), { message: 'two' })).id);
      await h.cp.setRef(h.mountId, 'latest', { commitId: c1.id }, 'test');
      await h.cp.setRef(h.mountId, 'latest', { commitId: c2.id }, 'test');
      const sealed = await h.cp.createGroup(h.mountId, { message: 'sealed' });
      const g1 = await h.cp.commit(h.mountId, await folder(h, '/g1', { 'w': 'W' }), { groupId: sealed.id });
      await h.cp.sealGroup(h.mountId, sealed.id);
      expect((await waitSettled(h, g1.id)).phase).toBe('completed');
      // A group that never sealed: its commit wrote a manifest but never completed.
      const open = await h.cp.createGroup(h.mountId, {});
      const g2 = await h.cp.commit(h.mountId, await folder(h, '/g2', { 'x': 'X' }), { groupId: open.id });
      for (let i = 0; i < 200 && (await h.cp.getCommit(h.mountId, g2.id)).phase !== 'manifested'; i++) await new Promise((r) => setTimeout(r, 10));
      await folder(h, '/never-committed', { 'y': 'Y' });

      const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-recover-'));
      const meta = new SqliteMetadataStore(path.join(dir, 'metadata.db'));
      try {
        const report = await recoverFromBucket(h.ctx.store, meta, { mountName: 'default' });
        expect(report.commits).toBe(3);
        expect(report.groups).toBe(1);
        expect(report.refs).toEqual([{ name: 'latest', commitId: c2.id }]);
        expect(report.skipped.map((s) => s.key)).toEqual([`commits/${g2.id}.json`]);
        expect(report.mounts).toEqual([{ id: h.mountId, name: 'default' }]);

        for (const c of [c1, c2]) {
          const r = (await meta.getCommit(c.id))!;
          expect({ phase: r.phase, path: r.path, message: r.message, stats: r.stats, parent: r.parentCommitId })
            .toEqual({ phase: 'completed', path: c.path, message: c.message, stats: c.stats, parent: c.parentCommitId });
        }
        expect(await meta.getCommit(g2.id)).toBeNull();
        expect((await meta.getGroup(sealed.id))!.status).toBe('committed');
        expect(await meta.getGroup(open.id)).toBeNull();
        const file = (await meta.resolvePath(h.mountId, '/ck1/b.bin'))!;
        expect({ state: file.state, size: file.size, mode: file.mode & 0o777 }).toEqual({ state: 'committed', size: 1, mode: 0o640 });
        expect(file.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(await meta.resolvePath(h.mountId, '/never-committed')).toBeNull();
        expect(await meta.resolvePath(h.mountId, '/g2')).toBeNull();
        await expect(recoverFromBucket(h.ctx.store, meta, { mountName: 'default' })).rejects.toMatchObject({ rosetCode: 'BAD_REQUEST' });
      } finally {
        await meta.close();
        rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      await h.close();
    }
  });
});
