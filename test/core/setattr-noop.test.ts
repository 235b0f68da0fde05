/**
 * A SETATTR that changes nothing is not refused by the barrier, without FUSE: the kernel
 * (writeback cache) sends the times it already sent, with a new ctime, while a rename
 * of the file returns, and under an auto-commit that rename is the one that raised the
 * barrier. Refused, the kernel reported EIO at the file's next close(2), a reader's too
 * (test/e2e/auto-commit.test.ts reads the marker back at once). A change of a time, or
 * of anything else, is still refused.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { codeOf, startCore, waitSettled, writeFile } from '../support/core.js';

describe('setattr under the barrier', () => {
  it('answers a times-only SETATTR equal to the stored times, and refuses one that differs', async () => {
    const h = await startCore({});
    try {
      await h.fs.mkdir('/ck', 0o755);
      await writeFile(h, '/ck/a.bin', randomBytes(4096));
      const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
      const c = await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, {})).id);
      expect(c.phase).toBe('completed');
      const file = (await h.cp.resolvePath(h.mountId, '/ck/a.bin'))!;
      const before = await h.core.getattr(file.id);
      // The kernel's own copy of the mtime: the stored one to the microsecond, or within
      // the 2 µs a staged file's mtime can lose on its way through a double.
      const same = { sec: file.mtime.sec, nsec: file.mtime.nsec + 999 };
      expect(await h.core.setattr(file.id, undefined, { mtime: same })).toEqual(before);
      expect(await h.core.setattr(file.id, undefined, { mtime: file.mtime, atime: file.atime })).toEqual(before);
      // A different time, or anything besides times, is a change: refused.
      expect(await codeOf(h.core.setattr(file.id, undefined, { mtime: { sec: file.mtime.sec + 1, nsec: file.mtime.nsec } }))).toBe('COMMITTED');
      expect(await codeOf(h.core.setattr(file.id, undefined, { mtime: 'now' }))).toBe('COMMITTED');
      expect(await codeOf(h.core.setattr(file.id, undefined, { mtime: file.mtime, mode: 0o600 }))).toBe('COMMITTED');
      expect(await h.core.getattr(file.id)).toEqual(before);
    } finally {
      await h.close();
    }
  });
});
