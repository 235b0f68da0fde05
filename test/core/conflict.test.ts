/**
 * Two nodes (two staging agents on one control plane) creating the same file in one
 * folder: the second gets a clear CONFLICT (EEXIST), never a silent merge; it cannot
 * open the other node's file for writing either. Reading a file staged on another
 * node: listed, with the size published at its writer's last close (not at fsync),
 * refused with STAGED_ON_OTHER_NODE (EREMOTE) until it is committed, then read from
 * the bucket.
 */
import { randomBytes } from 'node:crypto';
import * as fsSync from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RosetFilesystem } from '../../src/core/filesystem.js';
import { HandleTable } from '../../src/core/handles.js';
import { StagingIndex } from '../../src/core/staging-index.js';
import { toErrno as errnoOf } from '../../src/fuse/errno.js';
import { codeOf, startCore, waitSettled } from '../support/core.js';

describe('two writers on two nodes', () => {
  it('refuses the second create of the same file with CONFLICT', async () => {
    const h = await startCore();
    try {
      const cacheDir = path.join(h.dir, 'cache-b');
      await RosetFilesystem.prepareCacheDir(cacheDir);
      const index = new StagingIndex(path.join(cacheDir, 'index.db'));
      const otherCore = new RosetFilesystem({ ...h.ctx, agentId: 'agt_other', index, handles: new HandleTable(), cacheDir }, null);
      const other = otherCore.byPath();
      h.cp.registerAgent(otherCore.agent);
      await h.fs.mkdir('/shared', 0o755);
      await h.fs.release(await h.fs.create('/shared/rank0.pt', 0o644, fsSync.constants.O_WRONLY));
      expect(await codeOf(other.create('/shared/rank0.pt', 0o644, fsSync.constants.O_WRONLY))).toBe('CONFLICT');
      expect(await codeOf(other.open('/shared/rank0.pt', fsSync.constants.O_WRONLY))).toBe('CONFLICT');
      const err = await other.create('/shared/rank0.pt', 0o644, fsSync.constants.O_WRONLY).catch((e: unknown) => e);
      expect(errnoOf(err)).toBe(-17);
      // Different files in the same folder are fine.
      await other.release(await other.create('/shared/rank1.pt', 0o644, fsSync.constants.O_WRONLY));
      index.close();
    } finally {
      await h.close();
    }
  });

  it('lists a file staged on another node, refuses to read it with EREMOTE until it is committed, then reads it from the bucket', async () => {
    const h = await startCore();
    try {
      const cacheDir = path.join(h.dir, 'cache-b');
      await RosetFilesystem.prepareCacheDir(cacheDir);
      const index = new StagingIndex(path.join(cacheDir, 'index.db'));
      const otherCore = new RosetFilesystem({ ...h.ctx, agentId: 'agt_other', index, handles: new HandleTable(), cacheDir }, null);
      const other = otherCore.byPath();
      h.cp.registerAgent(otherCore.agent);
      const { O_RDONLY, O_WRONLY } = fsSync.constants;
      await h.fs.mkdir('/ckpt', 0o755);
      const first = randomBytes(100_000);
      let fh = await h.fs.create('/ckpt/shard.bin', 0o644, O_WRONLY);
      h.fs.write(fh, first, first.length, 0);
      await h.fs.flush(fh);
      await h.fs.release(fh);
      expect(await other.readdir('/ckpt')).toEqual(['shard.bin']);
      expect((await other.getattr('/ckpt/shard.bin')).size).toBe(first.length);

      // More bytes, fsync'd but not closed: the other node still sees the size of the last close.
      const more = randomBytes(50_000);
      fh = await h.fs.open('/ckpt/shard.bin', O_WRONLY);
      h.fs.write(fh, more, more.length, first.length);
      await h.fs.fsync(fh);
      expect((await other.getattr('/ckpt/shard.bin')).size).toBe(first.length);
      await h.fs.flush(fh);
      await h.fs.release(fh);
      expect((await other.getattr('/ckpt/shard.bin')).size).toBe(first.length + more.length);

      const refused = await other.open('/ckpt/shard.bin', O_RDONLY).catch((e: unknown) => e);
      expect((refused as { rosetCode?: string }).rosetCode).toBe('STAGED_ON_OTHER_NODE');
      expect(errnoOf(refused)).toBe(-66); // EREMOTE on Linux

      const folder = (await h.cp.resolvePath(h.mountId, '/ckpt'))!;
      const commit = await h.cp.commit(h.mountId, folder.id, {});
      expect((await waitSettled(h, commit.id)).phase).toBe('completed');
      const rfh = await other.open('/ckpt/shard.bin', O_RDONLY);
      const buf = Buffer.alloc(first.length + more.length);
      expect(other.read(rfh, buf, buf.length, 0)).toBe(buf.length);
      await other.release(rfh);
      expect(buf.equals(Buffer.concat([first, more]))).toBe(true);
      await otherCore.settle();
      index.close();
    } finally {
      await h.close();
    }
  });
});
