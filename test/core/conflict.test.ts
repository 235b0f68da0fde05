/**
 * Two nodes (two staging agents on one control plane) creating the same file in one
 * folder: the second gets a clear CONFLICT (EEXIST), never a silent merge; it cannot
 * open the other node's file for writing either.
 */
import * as fsSync from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RosetFilesystem } from '../../src/core/filesystem.js';
import { HandleTable } from '../../src/core/handles.js';
import { StagingIndex } from '../../src/core/staging-index.js';
import { toErrno as errnoOf } from '../../src/fuse/errno.js';
import { codeOf, startCore } from '../support/core.js';

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
});
