/**
 * The error code of a failed local syscall on the data path (a pread, pwrite, fsync,
 * truncate or open of a staged or cached file), by its errno name.
 *
 * Owns: which local failures are the caller's to see with a specific errno (a full
 * disk, too large a file) and which are internal (EIO). `SQLITE_FULL` is the staging
 * index on the same full cache disk.
 *
 * Invariant: the native binding answers the same failures in C with the same errno
 * (data_errno in native/src/roset_fuse.c); test/fuse/errno-parity.test.ts checks that
 * `errnoOf(localErrorCode(name))` equals C's answer for every errno C can meet there.
 */
export function localErrorCode(errnoName: string): 'NO_SPACE' | 'FILE_TOO_LARGE' | 'INTERNAL' {
  switch (errnoName) {
    case 'ENOSPC':
    case 'EDQUOT':
    case 'SQLITE_FULL': // the staging index could not grow: the cache disk is full
      return 'NO_SPACE';
    case 'EFBIG':
      return 'FILE_TOO_LARGE';
    default:
      return 'INTERNAL';
  }
}
