/**
 * The FUSE adapter on the native libfuse3 binding (native/src/roset_fuse.c, low-level,
 * inode-based API). Like the fuse-native adapter it only translates: every rule lives in
 * the filesystem core, which it calls with the same methods.
 *
 * What is different here:
 * - Data never comes to JavaScript. READ and WRITE are pread/pwrite in C, on the fd the
 *   core opened for the handle (`handleInfo`); this adapter hands it over at open and
 *   sets the handle's write flag, which C checks on every WRITE (EBADF if clear).
 *   The one exception: a READ of a committed file still downloading (H_GATED) comes
 *   here first and waits for its blocks to verify (`waitRead`); the bytes still never
 *   do (C preads them when `replyRead` answers).
 * - The kernel speaks inode numbers: `InodeTable` maps them to node ids, and the core
 *   is called by node id. No path is built or looked up: a LOOKUP, GETATTR or OPEN is
 *   one metadata query (test/core/query-count.test.ts).
 * - MKDIR and CREATE carry the calling process's uid and gid, who own what is made.
 * - The kernel's writeback cache is on: write(2) returns once the kernel has the bytes,
 *   and they reach the staged file later (at the latest when the file is closed).
 *   `flushKernelCache` makes the kernel write back and drop a file's pages; the seal
 *   calls it before its snapshot.
 *
 * Invariants:
 * - Every request gets exactly one reply (a handler's failure becomes its errno), and
 *   the C side refuses a second one rather than crash.
 * - Bookkeeping that depends on the kernel having received a reply (lookup counts, a
 *   handle the kernel will release) happens only when the reply function returned 0.
 *   An open or create the kernel gave up on (interrupted) is released here, because the
 *   kernel never will.
 */
import * as fsp from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import type { Logger } from 'pino';
import { CacheError, NamespaceError, RosetError } from '../errors/index.js';
import type { AttrRequest, Caller, RosetFilesystem, Stat, Timespec } from '../core/filesystem.js';
import { errnoName, toErrno } from './errno.js';
import { addNativeFuseSession, fuseError, fuseRequest } from '../metrics/index.js';
import { InodeTable, ROOT_INO } from './inodes.js';
import { H_GATED, H_HASH, H_WRITE, loadNativeBinding, Op, SetAttr, type AttrArray, type NativeStats, type Session } from './native-binding.js';
import type { FuseMount, FuseMountOptions } from './types.js';

const E = osConstants.errno as Record<string, number>;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/** Seconds the kernel may cache entries and attributes: libfuse's default, as fuse-native. */
const TTL = 1;
/** Directory entries per readdir batch; each takes at least 32 bytes of the kernel's buffer. */
const DIRENTS_PER_BYTE = 1 / 32;
/** Parallel invalidations at seal: each blocks a libuv thread while the kernel writes back. */
const FLUSH_CONCURRENCY = 4;

export interface NativeMountOptions extends FuseMountOptions {
  /** Off only to measure or debug: without it every write(2) is a FUSE round trip. */
  writebackCache?: boolean;
  maxThreads?: number;
}

export interface NativeFuseMount extends FuseMount {
  flushKernelCache(nodeIds: string[]): Promise<void>;
  /** Request counters of the C data path, and what the kernel negotiated. */
  stats(): NativeStats;
  /** Inodes the kernel holds (the root included). */
  readonly inodes: number;
}

function handleFlags(h: { writable: boolean; hash: boolean; gated: boolean }): number {
  return h.writable ? H_WRITE | (h.hash ? H_HASH : 0) : h.gated ? H_GATED : 0;
}

function attrOf(st: Stat, ino: number): AttrArray {
  return [ino, st.mode, st.nlink, st.uid, st.gid, st.size, st.blocks, st.blksize,
    st.atime.sec, st.atime.nsec, st.mtime.sec, st.mtime.nsec, st.ctime.sec, st.ctime.nsec];
}

export async function mountNative(fs: RosetFilesystem, mountpoint: string, opts: NativeMountOptions): Promise<NativeFuseMount> {
  const native = loadNativeBinding();
  const { log } = opts;
  await fsp.mkdir(mountpoint, { recursive: true });
  const root = await fs.root();
  // Every READ of a gated handle comes to `waitRead` (Op.READ): cold files may stream.
  fs.streamingReads = true;
  const inodes = new InodeTable(root);
  const dirs = new Map<number, Array<{ name: string; ino: number; mode: number }>>();
  let nextDir = 1;

  /** The node an inode the kernel holds stands for: no metadata query. */
  const idOf = (ino: number): string => {
    const nodeId = inodes.nodeId(ino);
    if (!nodeId) throw new NamespaceError('NODE_NOT_FOUND', `Inode ${ino} is not known (forgotten or removed)`);
    return nodeId;
  };

  const fail = (op: string, ino: number, id: number) => (err: unknown): void => {
    if (!(err instanceof RosetError) || err.rosetCode === 'INTERNAL') log.error({ op, ino, err: (err as Error).message }, 'filesystem operation failed');
    else log.debug({ op, ino, code: err.rosetCode }, 'operation refused');
    const errno = -toErrno(err);
    fuseError(errnoName(errno));
    native.replyErr(id, errno);
  };

  const replyOk = (id: number): void => {
    native.replyErr(id, 0);
  };

  const entryReply = (id: number, e: { nodeId: string; stat: Stat }): void => {
    if (native.replyEntry(id, attrOf(e.stat, e.stat.ino), TTL, TTL) === 0) inodes.remember(e.stat.ino, e.nodeId);
  };

  /** An open the kernel will never release (its request was interrupted): release it here. */
  const orphan = (fh: number): Promise<void> => fs.release(fh).catch((err: unknown) => {
    log.warn({ fh, err: (err as Error).message }, 'could not release an interrupted open');
  });

  const caller = (attr: number[] | undefined): Caller => ({ uid: attr?.[1] ?? 0, gid: attr?.[2] ?? 0 });
  const ts = (sec: number, nsec: number): Timespec => ({ sec, nsec });

  const handlers: Record<number, (id: number, ino: number, fh: number, a: number, b: number, c: number, name?: string, name2?: string, attr?: number[]) => Promise<void>> = {
    [Op.LOOKUP]: async (id, ino, _fh, _a, _b, _c, name) => {
      entryReply(id, await fs.lookup(idOf(ino), name!));
    },
    [Op.GETATTR]: async (id, ino, fh) => {
      native.replyAttr(id, attrOf(await fs.getattr(idOf(ino), fh || undefined), ino), TTL);
    },
    [Op.SETATTR]: async (id, ino, fh, toSet, _b, _c, _n, _n2, attr) => {
      const [mode, uid, gid, size, atimeSec, atimeNsec, mtimeSec, mtimeNsec] = attr!;
      const req: AttrRequest = {};
      if (toSet & SetAttr.SIZE) req.size = size;
      if (toSet & SetAttr.MODE) req.mode = mode;
      if (toSet & SetAttr.UID) req.uid = uid;
      if (toSet & SetAttr.GID) req.gid = gid;
      if (toSet & SetAttr.ATIME_NOW) req.atime = 'now';
      else if (toSet & SetAttr.ATIME) req.atime = ts(atimeSec!, atimeNsec!);
      if (toSet & SetAttr.MTIME_NOW) req.mtime = 'now';
      else if (toSet & SetAttr.MTIME) req.mtime = ts(mtimeSec!, mtimeNsec!);
      // With a handle, a time is the kernel writing back what it kept under the
      // writeback cache (user utimes never carries one): the handle's rule applies.
      native.replyAttr(id, attrOf(await fs.setattr(idOf(ino), fh || undefined, req), ino), TTL);
    },
    [Op.MKDIR]: async (id, ino, _fh, mode, _b, _c, name, _n2, attr) => {
      entryReply(id, await fs.mkdir(idOf(ino), name!, mode, caller(attr)));
    },
    [Op.UNLINK]: async (id, ino, _fh, _a, _b, _c, name) => {
      await fs.unlink(idOf(ino), name!);
      replyOk(id);
    },
    [Op.RMDIR]: async (id, ino, _fh, _a, _b, _c, name) => {
      await fs.rmdir(idOf(ino), name!);
      replyOk(id);
    },
    [Op.RENAME]: async (id, ino, _fh, flags, newParent, _c, name, newName) => {
      await fs.rename(idOf(ino), name!, idOf(newParent), newName!, flags);
      replyOk(id);
    },
    [Op.OPEN]: async (id, ino, _fh, flags) => {
      const fh = await fs.open(idOf(ino), flags);
      const h = fs.handleInfo(fh);
      if (!h) {
        await orphan(fh);
        throw new CacheError('INTERNAL', `open gave handle ${fh} without a file descriptor`);
      }
      // keep_cache: a node's bytes change only through this mount, so the kernel's pages
      // stay true across opens (and a committed file's warm reads never leave the kernel).
      if (native.replyOpen(id, fh, h.fd, handleFlags(h), true) !== 0) await orphan(fh);
    },
    // A READ of a cold file still downloading: answered once the blocks it covers
    // verified (the pread is in C), or with the download's failure (INTEGRITY_ERROR: EIO).
    [Op.READ]: async (id, ino, fh, offset, size, fd) => {
      const complete = await fs.waitRead(fh, offset, size);
      native.replyRead(id, ino, fd, offset, size, complete ? fh : 0);
    },
    [Op.CREATE]: async (id, ino, _fh, mode, flags, _c, name, _n2, attr) => {
      const { fh, entry: e } = await fs.create(idOf(ino), name!, mode, flags, caller(attr));
      const h = fs.handleInfo(fh)!;
      if (native.replyCreate(id, attrOf(e.stat, e.stat.ino), TTL, TTL, fh, h.fd, handleFlags(h), true) === 0) inodes.remember(e.stat.ino, e.nodeId);
      else await orphan(fh);
    },
    // `written`: C wrote bytes through this handle since the last FLUSH; the core did
    // not see them, and publishes size and mtime only for a handle it knows is dirty.
    // `hashing`: C is still hashing them in order (H_HASH).
    [Op.FLUSH]: async (id, _ino, fh, written, hashing) => {
      if (written) fs.noteWritten(fh, hashing === 1);
      await fs.flush(fh);
      replyOk(id);
    },
    // At RELEASE C hands over its digest (name) of the first `hashedBytes` bytes, if the
    // bytes came in order from offset 0.
    [Op.RELEASE]: async (id, _ino, fh, written, hashedBytes, _c, digest) => {
      if (fh && written) fs.noteWritten(fh, digest !== undefined);
      if (fh && digest !== undefined) {
        fs.noteDigest(fh, digest, hashedBytes);
        log.trace({ fh, bytes: hashedBytes }, 'sha256 taken by the data path');
      }
      if (fh) await fs.release(fh);
      replyOk(id);
    },
    [Op.FSYNC]: async (id, _ino, fh) => {
      await fs.fsync(fh);
      replyOk(id);
    },
    [Op.OPENDIR]: async (id, ino) => {
      const { parentId, entries } = await fs.readdir(idOf(ino));
      const parentIno = ino === ROOT_INO || parentId === root ? ROOT_INO : fs.inoOf(parentId);
      const list = [
        { name: '.', ino, mode: S_IFDIR }, { name: '..', ino: parentIno, mode: S_IFDIR },
        ...entries.map((c) => ({ name: c.name, ino: c.ino, mode: c.folder ? S_IFDIR : S_IFREG })),
      ];
      const dfh = nextDir++;
      dirs.set(dfh, list);
      if (native.replyOpendir(id, dfh) !== 0) dirs.delete(dfh);
    },
    [Op.READDIR]: async (id, _ino, dfh, size, off) => {
      const list = dirs.get(dfh);
      if (!list) throw new CacheError('INTERNAL', `Bad directory handle ${dfh}`);
      // The listing was taken at opendir, so offsets stay stable while it is read.
      const batch = list.slice(off, off + Math.ceil(size * DIRENTS_PER_BYTE));
      native.replyDirents(id, size, off, batch.map((e) => e.name), batch.map((e) => e.ino), batch.map((e) => e.mode));
    },
    [Op.RELEASEDIR]: async (id, _ino, dfh) => {
      dirs.delete(dfh);
      replyOk(id);
    },
    [Op.STATFS]: async (id) => {
      const s = await fs.statfs();
      native.replyStatfs(id, [s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail, s.namemax]);
    },
  };

  const opName = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k.toLowerCase()])) as Record<number, string>;

  const dispatch = (op: number, id: number, ino: number, fh: number, a: number, b: number, c: number, name?: string, name2?: string, attr?: number[]): void => {
    switch (op) {
      case Op.FORGET:
        fuseRequest('forget');
        inodes.forget(ino, a);
        return;
      case Op.INIT:
        log.info({ writebackCache: a === 1, maxWrite: b, maxReadahead: c }, 'native FUSE session initialised');
        if (opts.writebackCache !== false && a !== 1) log.warn('the kernel refused the FUSE writeback cache: every write(2) will be a round trip');
        return;
      case Op.IOERROR:
        log.error({ ino, errno: a, syscall: name }, 'data path I/O error in the native binding');
        return;
      case Op.PREFIX:
        // The written-once prefix of a file hashed in C grew: its upload may start or go on.
        fs.writtenPrefix(fh, a);
        return;
      case Op.ENDED:
        if (!unmounting) {
          log.warn({ mountpoint }, 'the mount was unmounted from outside');
          opts.onUnmountedOutside?.();
        }
        return;
      default: {
        const h = handlers[op];
        // A gated READ is counted in C when it is served, as every READ.
        if (op !== Op.READ) fuseRequest(opName[op] ?? 'other');
        if (!h) {
          fuseError('ENOSYS');
          native.replyErr(id, E.ENOSYS!);
          return;
        }
        h(id, ino, fh, a, b, c, name, name2, attr).catch(fail(opName[op] ?? String(op), ino, id));
      }
    }
  };

  const session: Session = native.mount(mountpoint, {
    allowOther: opts.allowOther,
    writebackCache: opts.writebackCache ?? true,
    maxThreads: opts.maxThreads,
  }, dispatch);
  let closed = false;
  let unmounting = false;
  const counters = addNativeFuseSession(() => {
    if (closed) throw new Error('unmounted');
    const s = native.stats(session);
    return {
      reads: s.reads, writes: s.writes, bytesWritten: s.bytesWritten, flushesLocal: s.flushesLocal,
      errors: { EBADF: s.writesRefused, ENOSPC: s.errENOSPC, EFBIG: s.errEFBIG, EIO: s.errEIO, ENOMEM: s.errENOMEM },
    };
  });

  return {
    binding: 'native',
    get inodes() {
      return inodes.size;
    },
    stats: () => native.stats(session),
    async flushKernelCache(nodeIds: string[]): Promise<void> {
      if (closed) return;
      // Only inodes the kernel holds can have pages; a forgotten inode was written back
      // before the kernel let it go.
      const queue = nodeIds.map((n) => inodes.ino(n)).filter((i): i is number => i !== undefined);
      const worker = async (): Promise<void> => {
        for (let ino = queue.shift(); ino !== undefined; ino = queue.shift()) {
          // Offset 0, length 0: the whole file. The kernel launders (writes back) dirty
          // pages before it drops them, and this resolves only after those WRITEs.
          const rc = await native.invalInode(session, ino, 0, 0);
          if (rc !== 0 && rc !== -E.ENOENT! && rc !== -E.ENODEV!) {
            throw new CacheError('INTERNAL', `Could not flush the kernel's cache of inode ${ino} (errno ${-rc})`);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(FLUSH_CONCURRENCY, queue.length) }, worker));
    },
    async unmount(): Promise<void> {
      if (closed) return;
      const stats = native.stats(session);
      unmounting = true;
      counters.retire();
      const rc = await native.unmount(session);
      unmounting = rc === 0;
      if (rc === 0) {
        closed = true;
        // Request counts tell whether writes arrived in big batches (bytes / writes).
        log.info({ ...stats, inodes: inodes.size }, 'native FUSE session closed');
        return;
      }
      const name = Object.entries(E).find(([, v]) => v === -rc)?.[0] ?? String(rc);
      throw Object.assign(new Error(`Cannot unmount ${mountpoint}: ${name}`), { code: name });
    },
  };
}
