/**
 * Loads the native libfuse3 addon (native/, built by `npm run build:native`) and types
 * what it exports. The C side is native/src/roset_fuse.c; the op numbers, the handle
 * flags and the attribute layouts below must match it (SetAttr is checked against the
 * compiled libfuse values by test/fuse/errno-parity.test.ts).
 *
 * Times cross the binding as whole seconds and nanoseconds, two numbers per time, exact
 * to the nanosecond; never as fractional milliseconds.
 *
 * Invariant: loading is lazy and fails with a message that says how to build the addon,
 * so a machine without it can still run the fuse-native binding.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Requests C sends to JavaScript (dispatch's first argument). */
export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, MKDIR: 5, UNLINK: 6, RMDIR: 7, RENAME: 8, OPEN: 9, RELEASE: 10, FSYNC: 11,
  OPENDIR: 12, READDIR: 13, RELEASEDIR: 14, STATFS: 15, CREATE: 16,
  /** Events, not requests: no reply. */
  INIT: 17, IOERROR: 18,
  FLUSH: 19,
  /** Event: the session loop returned (the kernel dropped the mount: our unmount, or a umount from outside). */
  ENDED: 20,
  /** A READ through a handle with H_GATED: answered by replyRead once its bytes verified. */
  READ: 21,
  /** Event: the written-once prefix of a handle hashed in C passed another 8 MiB (its byte count in `a`). */
  PREFIX: 22,
} as const;

/** Per-handle flags kept in C memory; the data path reads them on every WRITE. */
export const H_WRITE = 1;
/** Set at open: the file is empty and this is its only writer; C hashes in-order writes (sha256). */
export const H_HASH = 4;
/** Set at open: a committed object still downloading; every READ comes to JavaScript (Op.READ) until replyRead clears it. */
export const H_GATED = 8;

/** FUSE_SET_ATTR_* bits of a SETATTR's toSet (libfuse 3's values). */
export const SetAttr = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5, ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8,
  FORCE: 1 << 9, CTIME: 1 << 10, KILL_SUID: 1 << 11, KILL_SGID: 1 << 12, FILE: 1 << 13, KILL_PRIV: 1 << 14, OPEN: 1 << 15,
  TIMES_SET: 1 << 16, TOUCH: 1 << 17,
} as const;

export type Session = { readonly __session: unique symbol };

/**
 * Arguments of one dispatched request: op, reply id, inode, handle (the core's fh, or
 * a directory handle), three numbers whose meaning depends on the op, up to two names,
 * and for SETATTR a SetAttrArray (a is then the toSet bitmask of SetAttr bits); for MKDIR
 * and CREATE the same array carries the caller: [mode, uid, gid, ...].
 */
export type Dispatch = (op: number, id: number, ino: number, fh: number, a: number, b: number, c: number,
  name: string | undefined, name2: string | undefined, attr: SetAttrArray | undefined) => void;

/**
 * Attributes replied to the kernel (replyEntry, replyAttr, replyCreate). Every element
 * is a whole number; each time is whole seconds (may be negative) and nanoseconds in
 * [0, 999999999]. C refuses anything else with a TypeError, leaving the request open.
 */
export type AttrArray = [
  ino: number, mode: number, nlink: number, uid: number, gid: number, size: number, blocks: number, blksize: number,
  atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, ctimeSec: number, ctimeNsec: number,
];

/** The attributes of a SETATTR, as C sends them: only the fields toSet names are meaningful. */
export type SetAttrArray = [
  mode: number, uid: number, gid: number, size: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number,
];

export interface NativeStats {
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  writesRefused: number;
  /** FLUSH of a read-only handle, answered in C. */
  flushesLocal: number;
  /** Data-path errors answered in C, by errno (EBADF is `writesRefused`). */
  errENOSPC: number;
  errEFBIG: number;
  errEIO: number;
  errENOMEM: number;
  maxWrite: number;
  maxReadahead: number;
  writebackCache: boolean;
}

/** Every reply returns 0, or -errno: -ESTALE for an id already answered, -ENOENT when the kernel gave up on the request. */
export interface NativeBinding {
  mount(mountpoint: string, opts: { allowOther?: boolean; debug?: boolean; writebackCache?: boolean; maxThreads?: number }, dispatch: Dispatch): Session;
  unmount(s: Session): Promise<number>;
  replyErr(id: number, errno: number): number;
  replyEntry(id: number, attr: AttrArray, attrTimeout: number, entryTimeout: number): number;
  replyAttr(id: number, attr: AttrArray, attrTimeout: number): number;
  replyOpen(id: number, fh: number, fd: number, flags: number, keepCache: boolean): number;
  /** Answers an Op.READ: pread of [offset, offset + size) on `fd` in C; `ungateFh` > 0 clears that handle's H_GATED. */
  replyRead(id: number, ino: number, fd: number, offset: number, size: number, ungateFh: number): number;
  replyCreate(id: number, attr: AttrArray, attrTimeout: number, entryTimeout: number, fh: number, fd: number, flags: number, keepCache: boolean): number;
  replyOpendir(id: number, dirFh: number): number;
  /** Returns how many entries fitted in `size` bytes (or -errno). */
  replyDirents(id: number, size: number, firstOffset: number, names: string[], inos: number[], modes: number[]): number;
  replyStatfs(id: number, s: number[]): number;
  invalInode(s: Session, ino: number, off: number, len: number): Promise<number>;
  stats(s: Session): NativeStats;
  /** For tests: the errno C answers when a data-path syscall (pread, pwrite) fails with `errno`. */
  dataErrno(errno: number): number;
  /** For tests: libfuse's FUSE_SET_ATTR_* values as compiled in, by name without the prefix. */
  setAttrBits(): Record<string, number>;
  /** One sd_notify datagram (`READY=1`, `STATUS=…`) to the unix socket `socketPath` ('@': abstract); 0 or -errno. */
  notify(socketPath: string, state: string): number;
}

export const ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/roset_fuse.node', import.meta.url));

let loaded: NativeBinding | null = null;

export function loadNativeBinding(): NativeBinding {
  if (loaded) return loaded;
  if (!existsSync(ADDON_PATH)) {
    throw new Error(`The native FUSE binding is not built (${ADDON_PATH} is missing): run \`npm run build\` (needs libfuse3-dev and a C compiler), or use --fuse-binding fuse-native`);
  }
  loaded = createRequire(import.meta.url)(ADDON_PATH) as NativeBinding;
  return loaded;
}
