/**
 * The native binding's C data path and the TypeScript core answer the same local
 * failure with the same errno: for every errno a pread or pwrite on a staged or cached
 * file can fail with, C's data_errno (exported as `dataErrno` for this test) equals
 * the errno src/errors/codes.ts gives the code src/errors/local.ts picks (the core's localError uses it). Also
 * keeps SetAttr (src/fuse/native-binding.ts) equal to libfuse's FUSE_SET_ATTR_* values
 * as compiled into the addon.
 */
import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { errnoOf } from '../../src/errors/codes.js';
import { localErrorCode } from '../../src/errors/local.js';
import { loadNativeBinding, SetAttr } from '../../src/fuse/native-binding.js';

const ERRNO = constants.errno as Record<string, number>;

/**
 * pread(2) and pwrite(2)'s documented errors, and what a local file system adds (quota,
 * a remount read-only, a stale NFS handle, memory). EINTR is retried in C and never
 * mapped, but it must still agree should it ever be.
 */
const DATA_PATH_ERRNOS = [
  'EIO', 'ENOSPC', 'EDQUOT', 'EFBIG', 'EINVAL', 'EROFS', 'EBADF', 'EINTR', 'EAGAIN', 'EFAULT', 'EISDIR', 'ENXIO',
  'EOVERFLOW', 'ESPIPE', 'EPERM', 'EPIPE', 'EDESTADDRREQ', 'ETXTBSY', 'ESTALE', 'ENOMEM', 'EACCES', 'ENODEV',
];

describe('errno parity between C and TypeScript', () => {
  const native = loadNativeBinding();

  it.each(DATA_PATH_ERRNOS)('%s: C answers what the core answers', (name) => {
    const errno = ERRNO[name];
    expect(errno, `${name} is known to Node`).toBeTypeOf('number');
    const ts = ERRNO[errnoOf(localErrorCode(name))];
    expect(native.dataErrno(errno!)).toBe(ts);
  });

  it('maps the conditions the caller is meant to see to their own errno', () => {
    expect(native.dataErrno(ERRNO.ENOSPC!)).toBe(ERRNO.ENOSPC);
    expect(native.dataErrno(ERRNO.EDQUOT!)).toBe(ERRNO.ENOSPC);
    expect(native.dataErrno(ERRNO.EFBIG!)).toBe(ERRNO.EFBIG);
    expect(localErrorCode('EDQUOT')).toBe('NO_SPACE');
    expect(localErrorCode('EFBIG')).toBe('FILE_TOO_LARGE');
    expect(localErrorCode('EROFS')).toBe('INTERNAL');
  });

  it('a write through a handle not open for writing is EBADF on both sides', () => {
    // C refuses such a WRITE with EBADF (roset_fuse.c ll_write); the core uses this code.
    expect(errnoOf('NOT_OPEN_FOR_WRITING')).toBe('EBADF');
  });

  it('SetAttr matches the FUSE_SET_ATTR_* values the addon was compiled with', () => {
    const compiled = native.setAttrBits();
    for (const [name, bit] of Object.entries(compiled)) expect(SetAttr[name as keyof typeof SetAttr], name).toBe(bit);
    for (const name of ['MODE', 'UID', 'GID', 'SIZE', 'ATIME', 'MTIME', 'ATIME_NOW', 'MTIME_NOW', 'CTIME']) {
      expect(compiled[name], name).toBe(SetAttr[name as keyof typeof SetAttr]);
    }
  });
});
