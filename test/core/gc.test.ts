/**
 * Garbage collection of commits (`collectCommits`): what `--keep-last` and purge remove,
 * that a ref or a recent ref-log entry keeps a commit, that a dry run changes nothing,
 * and that a run stopped between a purge and its manifest deletion converges when run
 * again.
 */
import * as fsSync from 'node:fs';
import { describe, expect, it } from 'vitest';
import { collectCommits } from '../../src/commit/gc.js';
import { manifestKey } from '../../src/commit/layout.js';
import type { ObjectStore } from '../../src/store/types.js';
import { codeOf, startCore, waitSettled, type CoreHarness } from '../support/core.js';

const DAY = 24 * 3600 * 1000;

async function checkpoint(h: CoreHarness, p: string, files: Record<string, string>): Promise<string> {
  await h.fs.mkdir(p, 0o755);
  for (const [name, text] of Object.entries(files)) {
    const fh = await h.fs.create(`${p}/${name}`, 0o640, fsSync.constants.O_WRONLY);
    h.fs.write(fh, Buffer.from(text), text.length, 0);
    await h.fs.release(fh);
  }
  const node = (await h.cp.resolvePath(h.mountId, p))!;
  const c = await waitSettled(h, (await h.cp.commit(h.mountId, node.id, { message: p })).id);
  expect(c.phase).toBe('completed');
  return c.id;
}

async function hasManifest(h: CoreHarness, id: string): Promise<boolean> {
  return (await h.ctx.store.head(manifestKey(id))) !== null;
}

describe('gc of commits', () => {
  it('purges soft-deleted, unreferenced commits; keeps referenced ones and recent ref-log entries; dry run changes nothing', async () => {
    const h = await startCore();
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await checkpoint(h, `/ck${i}`, { 'shared.bin': 'S', [`own${i}.bin`]: `own ${i}` }));
      await h.cp.setRef(h.mountId, 'latest', { commitId: ids[4]! }, 'test');
      // ck1 was a ref's target until just now: the ref log keeps it for keepWithin.
      await h.cp.setRef(h.mountId, 'best', { commitId: ids[1]! }, 'test');
      await h.cp.setRef(h.mountId, 'best', { commitId: ids[3]! }, 'test');
      for (const i of [0, 1, 2, 3]) await h.cp.deleteNode(h.mountId, (await h.cp.resolvePath(h.mountId, `/ck${i}`))!.id);

      const dry = await collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 7 * DAY, dryRun: true });
      expect(dry.purged.map((p) => p.commitId).sort()).toEqual([ids[0], ids[2]].sort());
      expect(dry.manifestsDeleted).toBe(2);
      for (const id of ids) expect(await hasManifest(h, id)).toBe(true);
      expect((await h.cp.getCommit(h.mountId, ids[0]!)).purgedAt).toBeNull();

      const r = await collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 7 * DAY });
      expect(r.purged.map((p) => p.commitId).sort()).toEqual([ids[0], ids[2]].sort());
      expect(Object.fromEntries(r.kept.map((k) => [k.commitId, k.reason]))).toEqual({ [ids[1]!]: 'in-ref-log', [ids[3]!]: 'referenced' });
      expect(r.manifestsDeleted).toBe(2);
      expect(r.manifestBytes).toBeGreaterThan(0);
      expect(await hasManifest(h, ids[0]!)).toBe(false);
      expect(await hasManifest(h, ids[2]!)).toBe(false);
      expect(await codeOf(h.cp.getManifest(h.mountId, ids[0]!))).toBe('COMMIT_PURGED');
      expect(await codeOf(h.cp.setRef(h.mountId, 'old', { commitId: ids[0]! }, 'test'))).toBe('COMMIT_PURGED');
      for (const i of [1, 3, 4]) expect((await h.cp.getManifest(h.mountId, ids[i]!)).files.length).toBe(2);
      expect((await h.cp.getRef(h.mountId, 'latest')).commitId).toBe(ids[4]);

      // Past the window, the ref-log entry no longer keeps ck1.
      const later = await collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 7 * DAY, now: () => new Date(Date.now() + 8 * DAY) });
      expect(later.purged.map((p) => p.commitId)).toEqual([ids[1]]);
      // A rerun finds nothing more to do.
      const again = await collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 7 * DAY, now: () => new Date(Date.now() + 8 * DAY) });
      expect({ purged: again.purged, manifests: again.manifestsDeleted }).toEqual({ purged: [], manifests: 0 });
    } finally {
      await h.close();
    }
  });

  it('--keep-last soft-deletes the older committed folders of each parent, never a referenced one', async () => {
    const h = await startCore();
    try {
      await h.fs.mkdir('/run', 0o755);
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) ids.push(await checkpoint(h, `/run/step${i}`, { 'w.bin': `w${i}` }));
      const other = await checkpoint(h, '/solo', { 'x.bin': 'x' });
      await h.cp.setRef(h.mountId, 'first', { commitId: ids[0]! }, 'test');
      const dry = await collectCommits(h.cp['meta'], h.ctx.store, { keepLast: 2, keepWithinMs: 0, dryRun: true });
      expect(dry.softDeleted.map((d) => d.commitId)).toEqual([ids[1]]);
      expect(dry.purged.map((p) => p.commitId)).toEqual([ids[1]]);
      expect(await h.cp.resolvePath(h.mountId, '/run/step1')).not.toBeNull();

      const r = await collectCommits(h.cp['meta'], h.ctx.store, { keepLast: 2, keepWithinMs: 0 });
      expect(r.softDeleted.map((d) => d.commitId)).toEqual([ids[1]]);
      expect(r.purged.map((p) => p.commitId)).toEqual([ids[1]]);
      for (const p of ['/run/step0', '/run/step2', '/run/step3', '/solo']) expect(await h.cp.resolvePath(h.mountId, p)).not.toBeNull();
      expect(await h.cp.resolvePath(h.mountId, '/run/step1')).toBeNull();
      for (const id of [ids[0]!, ids[2]!, ids[3]!, other]) expect(await hasManifest(h, id)).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('converges when a run stops after a purge, before the manifest is deleted', async () => {
    let failDeletes = true;
    const h = await startCore({
      wrapStore: (s: ObjectStore) => new Proxy(s, {
        get(target, prop, recv) {
          if (prop === 'delete') {
            return async (key: string) => {
              if (failDeletes && key.startsWith('commits/')) throw new Error('stopped');
              return target.delete(key);
            };
          }
          const v = Reflect.get(target, prop, recv) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      }),
    });
    try {
      const id = await checkpoint(h, '/ck', { 'a.bin': 'A' });
      await h.cp.deleteNode(h.mountId, (await h.cp.resolvePath(h.mountId, '/ck'))!.id);
      await expect(collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 0 })).rejects.toThrow('stopped');
      expect((await h.cp.getCommit(h.mountId, id)).purgedAt).not.toBeNull();
      expect(await hasManifest(h, id)).toBe(true);
      failDeletes = false;
      const r = await collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 0 });
      expect({ purged: r.purged, manifests: r.manifestsDeleted }).toEqual({ purged: [], manifests: 1 });
      expect(await hasManifest(h, id)).toBe(false);
    } finally {
      await h.close();
    }
  });
});
