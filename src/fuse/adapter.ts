/**
 * The FUSE adapter on fuse-native (libfuse 2, path-based high-level API). It only
 * translates: arguments in, errno out. Every rule lives in the filesystem core.
 *
 * Mount options: fuse-native builds `-o` from a fixed list that lacks `big_writes` and
 * `max_write`, and joins options with commas, so they ride along inside `fsname`.
 * Without them the kernel sends a write every 4 KiB (measured: 27 MB/s); libfuse 2
 * caps a write at 128 KiB.
 *
 * Invariant: read and write complete synchronously against the staged file before the
 * reply, so the buffer FUSE lends us is never touched after the callback; nothing copies
 * it because nothing defers it.
 */
import Fuse from 'fuse-native';
import { RosetError } from '../errors/index.js';
import { msOf, timespecFromMs, type Stat } from '../core/filesystem.js';
import type { PathFilesystem } from '../core/path-ops.js';
import { ENOTSUP, errnoName, toErrno } from './errno.js';
import { fuseError, fuseRequest, stagedBytes } from '../metrics/index.js';
import type { FuseMount, FuseMountOptions } from './types.js';

const MAX_IO = 128 * 1024;

type Done = (code: number, ...rest: unknown[]) => void;

export type { FuseMount } from './types.js';

export async function mountFuse(fs: PathFilesystem, mountpoint: string, opts: FuseMountOptions): Promise<FuseMount> {
  const { log } = opts;
  const fail = (op: string, p: string, cb: Done) => (err: unknown): void => {
    if (!(err instanceof RosetError) || err.rosetCode === 'INTERNAL') log.error({ op, path: p, err: (err as Error).message }, 'filesystem operation failed');
    else log.debug({ op, path: p, code: err.rosetCode }, 'operation refused');
    const errno = toErrno(err);
    fuseError(errnoName(errno));
    cb(errno);
  };
  const call = <T>(op: string, p: string, cb: Done, fn: () => Promise<T>, reply: (v: T) => void): void => {
    fuseRequest(op);
    fn().then(reply, fail(op, p, cb));
  };

  const unsupported = (op: string, cb: Done): void => {
    fuseRequest(op);
    fuseError('ENOTSUP');
    cb(ENOTSUP);
  };

  // fuse-native passes times as whole milliseconds (and, a known fuse-native bug, the
  // atime in place of the mtime for utimens): what it gives is what is stored.
  const statOut = (st: Stat) => ({ ...st, atime: msOf(st.atime), mtime: msOf(st.mtime), ctime: msOf(st.ctime) });

  const ops = {
    init: (cb: Done) => cb(0),
    getattr: (p: string, cb: Done) => call('getattr', p, cb, () => fs.getattr(p), (st) => cb(0, statOut(st))),
    fgetattr: (p: string, fh: number, cb: Done) => call('fgetattr', p, cb, () => fs.getattr(p, fh), (st) => cb(0, statOut(st))),
    readdir: (p: string, cb: Done) => call('readdir', p, cb, () => fs.readdir(p), (names) => cb(0, names)),
    statfs: (p: string, cb: Done) => call('statfs', p, cb, () => fs.statfs(), (s) => cb(0, s)),
    mkdir: (p: string, mode: number, cb: Done) => call('mkdir', p, cb, () => fs.mkdir(p, mode), () => cb(0)),
    rmdir: (p: string, cb: Done) => call('rmdir', p, cb, () => fs.rmdir(p), () => cb(0)),
    create: (p: string, mode: number, cb: Done) => call('create', p, cb, () => fs.create(p, mode, 0), (fh) => cb(0, fh)),
    open: (p: string, flags: number, cb: Done) => call('open', p, cb, () => fs.open(p, flags), (fh) => cb(0, fh)),
    read: (p: string, fh: number, buf: Buffer, len: number, pos: number, cb: Done) => {
      fuseRequest('read');
      try {
        cb(fs.read(fh, buf, Math.min(len, buf.length), pos));
      } catch (err) {
        fail('read', p, cb)(err);
      }
    },
    write: (p: string, fh: number, buf: Buffer, len: number, pos: number, cb: Done) => {
      fuseRequest('write');
      try {
        const n = fs.write(fh, buf, Math.min(len, buf.length), pos);
        stagedBytes(n);
        cb(n);
      } catch (err) {
        fail('write', p, cb)(err);
      }
    },
    flush: (p: string, fh: number, cb: Done) => call('flush', p, cb, () => fs.flush(fh), () => cb(0)),
    fsync: (p: string, _datasync: boolean, fh: number, cb: Done) => call('fsync', p, cb, () => fs.fsync(fh), () => cb(0)),
    release: (p: string, fh: number, cb: Done) => call('release', p, cb, () => fs.release(fh), () => cb(0)),
    truncate: (p: string, size: number, cb: Done) => call('truncate', p, cb, () => fs.truncate(p, size), () => cb(0)),
    ftruncate: (p: string, fh: number, size: number, cb: Done) => call('ftruncate', p, cb, () => fs.ftruncate(fh, size), () => cb(0)),
    unlink: (p: string, cb: Done) => call('unlink', p, cb, () => fs.unlink(p), () => cb(0)),
    rename: (src: string, dst: string, cb: Done) => call('rename', src, cb, () => fs.rename(src, dst), () => cb(0)),
    chmod: (p: string, mode: number, cb: Done) => call('chmod', p, cb, () => fs.chmod(p, mode), () => cb(0)),
    chown: (p: string, uid: number, gid: number, cb: Done) => call('chown', p, cb, () => fs.chown(p, uid, gid), () => cb(0)),
    utimens: (p: string, atime: number, mtime: number, cb: Done) => call('utimens', p, cb, () => fs.utimens(p, timespecFromMs(atime), timespecFromMs(mtime)), () => cb(0)),
    symlink: (_src: string, _dst: string, cb: Done) => unsupported('symlink', cb),
    link: (_src: string, _dst: string, cb: Done) => unsupported('link', cb),
    mknod: (_p: string, _mode: number, _dev: number, cb: Done) => unsupported('mknod', cb),
  };

  const fuse = new Fuse(mountpoint, ops as unknown as Record<string, (...a: unknown[]) => void>, {
    force: true,
    mkdir: true,
    // Every operation completes on its own; fuse-native's per-call timer would cost a
    // setTimeout on each 128 KiB write.
    timeout: false,
    allowOther: opts.allowOther,
    // The kernel checks mode bits against the owner and group Roset stores, as ext4 does.
    defaultPermissions: true,
    maxRead: MAX_IO,
    // No hard_remove: libfuse 2 then loses the path of an unlinked open file and fails
    // its fstat; it renames the file to `.fuse_hidden*` until its last close instead.
    fsname: `roset,big_writes,max_write=${MAX_IO}`,
  });
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  return {
    binding: 'fuse-native',
    unmount: () => new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve()))),
  };
}
