/**
 * The filesystem core: every POSIX operation the mount supports, addressed by node id,
 * testable without FUSE. The FUSE bindings only translate arguments and errno; a
 * binding that speaks paths resolves them once, at its edge (`path-ops.ts`).
 *
 * Owns: staged bytes in `<cacheDir>/staging/<nodeId>`, open handles, and the waiting
 * half of the write barrier (the metadata store checks folder states inside the
 * transaction of every change: src/meta/types.ts).
 *
 * Invariants:
 * - Every namespace change is one control-plane call whose transaction checks the
 *   barrier; inside a sealing or committed folder it fails with EROFS (SEALED /
 *   COMMITTED). The one exception is rmdir of a committed folder itself, which
 *   soft-deletes it as a whole (ControlService.removeChild; docs/SEMANTICS.md,
 *   "Removing committed folders"). Nothing here checks a state first and changes it in
 *   a second step.
 * - Whatever changes a file's bytes registers as a writer (a handle in `handles.ts`)
 *   before the barrier is checked, and stays one until the bytes are changed: open for
 *   writing, create, and truncate or utimens without a handle. A seal waits for every
 *   writer inside its folder, so a snapshot never misses a change the caller was told
 *   succeeded, and a caller refused by the barrier is told EROFS, never an internal
 *   error.
 * - Writes through a handle opened before the seal may finish.
 * - An unlinked file stays usable through the handles open on it (fstat, read, write,
 *   close) until the last one closes, as POSIX says.
 * - Committed files are read from the staged copy when this node wrote them, else from
 *   the object cache, which verifies every byte (its block, or the whole file) before it
 *   is served. With `streamingReads` (a binding that holds a READ until `waitRead`
 *   resolved: the native one), a cold file opens at once on its partial download and
 *   each read waits only for the blocks it covers; otherwise the open waits for all.
 *   With `prefetchSiblings`, a cold open also sets off the prefetch of the other
 *   committed files of its folder (`sibling-prefetch.ts`), never waited for.
 * - With the fuse-native binding, data writes are synchronous `pwrite`s done before the
 *   FUSE reply, so the kernel's buffer is never used after the call returns; the native
 *   binding writes in C and tells the core afterwards (`noteWritten`).
 */
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { msOf, nowTimespec, timespecFromMs, type AttrChange, type Guard, type NodeRecord, type Timespec } from '../meta/types.js';
import { CacheError, NamespaceError, RosetError } from '../errors/index.js';
import { localErrorCode } from '../errors/local.js';
import { StagingAgent } from './agent.js';
import { stagingPath, type CoreContext } from './context.js';
import { ObjectCache } from './object-cache.js';
import { SiblingPrefetch } from './sibling-prefetch.js';
import { Uploader } from './uploader.js';
import { newWriteHash, type Handle, type WriteHash } from './handles.js';
import { PathFilesystem } from './path-ops.js';
import { delayPoint } from '../util/failpoints.js';

export interface Stat {
  mode: number;
  size: number;
  nlink: number;
  uid: number;
  gid: number;
  ino: number;
  blksize: number;
  blocks: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
}

/** A node as a LOOKUP, MKDIR or CREATE reply needs it. */
export interface Entry {
  nodeId: string;
  stat: Stat;
}

/** Who asks: the owner of what they create. */
export interface Caller {
  uid: number;
  gid: number;
}

/** A SETATTR: absent fields stay; 'now' is the time of the call. */
export interface AttrRequest {
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  atime?: Timespec | 'now';
  mtime?: Timespec | 'now';
}

export interface StatFs {
  bsize: number; frsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number; favail: number; namemax: number;
}

const O_ACCMODE = 3;
const C = fsSync.constants;
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;

/**
 * Turns a local syscall failure into a RosetError the adapter can map to errno. The C
 * data path (native/src/roset_fuse.c, data_errno) answers the same errno for the same
 * failures; test/fuse/errno-parity.test.ts checks the two against src/errors/codes.ts.
 */
function localError(err: unknown, what: string): RosetError {
  if (err instanceof RosetError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = localErrorCode(e.code ?? '');
  switch (code) {
    case 'NO_SPACE': return new CacheError(code, `The cache disk is full (${what})`, {}, { cause: err });
    case 'FILE_TOO_LARGE': return new CacheError(code, `${what}: the file would exceed the maximum file size`, {}, { cause: err });
    case 'INTERNAL': return new CacheError(code, `${what}: ${e.message}`, {}, { cause: err });
    default: {
      const never: never = code;
      throw new Error(`unknown local error code ${String(never)}`);
    }
  }
}

/** A time from a bigint `fs.Stats` field in nanoseconds (`mtimeNs`, ...). */
const tsOfNs = (ns: bigint): Timespec => ({ sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) });
const maxTs = (a: Timespec, b: Timespec): Timespec => (a.sec - b.sec || a.nsec - b.nsec) >= 0 ? a : b;
/**
 * `b` is absent, or is `a` to within 2 µs. A node records its staged file's mtime at
 * close, and that mtime was set from the kernel's through a double of seconds that
 * libuv cuts to the microsecond: it can sit up to about 1.25 µs below the kernel's.
 */
const sameTs = (a: Timespec, b: Timespec | undefined): boolean => !b || Math.abs((a.sec - b.sec) * 1e9 + a.nsec - b.nsec) < 2000;
/** Seconds as `futimes` takes them (Node passes on about a microsecond). */
const secondsOf = (t: Timespec): number => t.sec + t.nsec / 1e9;

export class RosetFilesystem {
  readonly agent: StagingAgent;
  readonly uploader: Uploader;
  private readonly objects: ObjectCache;
  /** Null when `prefetchSiblings` is off. */
  private readonly siblings: SiblingPrefetch | null;
  private rootId: string | null = null;

  /**
   * Set by a binding that calls `waitRead` before every read through a handle whose
   * `handleInfo` says `gated` (the native binding): cold committed files then open at
   * once and stream. Off, an open waits for the whole object.
   */
  streamingReads = false;

  constructor(private readonly ctx: CoreContext, mountpoint: string | null) {
    this.uploader = new Uploader(ctx);
    this.objects = new ObjectCache(ctx, { maxBytes: ctx.cacheMaxBytes ?? 0, ...ctx.readCache });
    this.siblings = ctx.prefetchSiblings ? new SiblingPrefetch(ctx, this.objects) : null;
    this.agent = new StagingAgent(ctx, mountpoint, this.uploader, this.objects);
  }

  static async prepareCacheDir(cacheDir: string): Promise<void> {
    for (const d of ['staging', 'objects', 'tmp']) await fs.mkdir(path.join(cacheDir, d), { recursive: true });
    for (const f of await fs.readdir(path.join(cacheDir, 'tmp'))) await fs.rm(path.join(cacheDir, 'tmp', f), { force: true, recursive: true });
  }

  /** This core by path, resolving each path once (for path-based bindings and tests). */
  byPath(): PathFilesystem {
    return new PathFilesystem(this, this.ctx.control, this.ctx.mountId);
  }

  /** The mount's root folder id (fixed for the life of the mount). */
  async root(): Promise<string> {
    this.rootId ??= (await this.ctx.control.root(this.ctx.mountId)).id;
    return this.rootId;
  }

  /**
   * Brings the namespace and the cache back in line after a restart: staged files are
   * served again; files this agent owns whose bytes the cache lost are removed from the
   * namespace (they cannot be committed), and files left open by a crash are reported.
   */
  async reconcile(): Promise<{ lost: string[]; unclosed: number }> {
    const unclosed = this.ctx.index.resetWriters();
    if (unclosed > 0) this.ctx.log.warn({ files: unclosed }, 'files were open for writing when the daemon stopped; their bytes are kept as written');
    const lost: string[] = [];
    const mine = (await this.ctx.control.subtree(await this.root())).filter((n) => n.type === 'file' && n.state !== 'committed' && n.ownerAgent === this.ctx.agentId);
    for (const n of mine) {
      if (!this.ctx.index.hasStaged(n.id) || !fsSync.existsSync(stagingPath(this.ctx, n.id))) {
        lost.push(`/${n.relPath}`);
        await this.ctx.control.removeChild(this.ctx.mountId, n.parentId!, n.name, 'file').catch((err: unknown) => {
          this.ctx.log.error({ path: `/${n.relPath}`, err: (err as Error).message }, 'could not remove a file whose staged bytes are gone');
        });
      }
    }
    if (lost.length) this.ctx.log.warn({ files: lost.slice(0, 20), count: lost.length }, 'staged files lost with the cache were removed from the namespace');
    await this.objects.sweep();
    return { lost, unclosed };
  }

  private readOnlyMount(): void {
    if (this.ctx.readOnly) throw new NamespaceError('READ_ONLY_MOUNT', 'The mount is read-only');
  }

  /** A live node, or NODE_NOT_FOUND. */
  private async node(id: string): Promise<NodeRecord> {
    const n = await this.ctx.control.lookupById(this.ctx.mountId, id);
    if (!n) throw new NamespaceError('NODE_NOT_FOUND', `Node ${id} does not exist`);
    return n;
  }

  /** Whether this node holds the file's bytes locally as a staged file. */
  private staged(n: NodeRecord): boolean {
    return this.ctx.index.hasStaged(n.id);
  }

  // ---- Reads of the namespace --------------------------------------------------------

  /** LOOKUP: the child `name` of a folder, with its attributes. One metadata query. */
  async lookup(parentId: string, name: string): Promise<Entry> {
    const n = await this.ctx.control.lookupChild(parentId, name);
    if (!n) throw new NamespaceError('NODE_NOT_FOUND', `${name} does not exist`);
    return { nodeId: n.id, stat: await this.statOf(n) };
  }

  /**
   * GETATTR. Through a handle (`fh`), or for a node some handle still holds open, an
   * unlinked file answers from the bytes the handle holds. One metadata query.
   */
  async getattr(id: string, fh?: number): Promise<Stat> {
    const n = await this.ctx.control.lookupById(this.ctx.mountId, id);
    if (n) return this.statOf(n);
    const h = fh ? this.ctx.handles.get(fh) : this.ctx.handles.openFor(id).find((o) => o.fd >= 0);
    if (h && h.fd >= 0 && h.nodeId === id) return this.orphanStat(h);
    throw new NamespaceError('NODE_NOT_FOUND', `Node ${id} does not exist`);
  }

  /** Attributes of an unlinked file that a handle keeps open: nlink 0, from its fd. */
  private orphanStat(h: Handle): Stat {
    const st = fsSync.fstatSync(h.fd, { bigint: true });
    const o = h.orphan;
    return {
      mode: C.S_IFREG | ((o?.mode ?? (h.writable ? 0o644 : 0o444)) & 0o7777), size: Number(st.size), nlink: 0, uid: o?.uid ?? 0, gid: o?.gid ?? 0,
      ino: h.nodeId ? this.ctx.index.ino(h.nodeId) : 0, blksize: 4096, blocks: Number(st.blocks),
      atime: o?.atime ?? tsOfNs(st.atimeNs), mtime: tsOfNs(st.mtimeNs), ctime: tsOfNs(st.ctimeNs),
    };
  }

  private async statOf(n: NodeRecord): Promise<Stat> {
    const base = { uid: n.uid, gid: n.gid, ino: this.ctx.index.ino(n.id), blksize: 4096, atime: n.atime, ctime: n.ctime };
    if (n.type === 'folder') {
      const mode = n.state === 'staging' && !this.ctx.readOnly ? n.mode : n.mode & ~0o222;
      const subfolders = n.subfolders ?? await this.ctx.control.countSubfolders(n.id);
      return { ...base, mode: C.S_IFDIR | (mode & 0o7777), size: 4096, nlink: 2 + subfolders, blocks: 8, mtime: n.mtime };
    }
    let size = n.size;
    let mtime = n.mtime;
    let ctime = n.ctime;
    if (n.state !== 'committed' && this.staged(n)) {
      // Staged bytes are the truth for size while a file is written; for mtime too,
      // unless the node's recorded mtime is within a millisecond of the file's: then it
      // is the exact value a utimens set (the staged file keeps only microseconds).
      const st = await fs.stat(stagingPath(this.ctx, n.id), { bigint: true }).catch(() => null);
      if (st) {
        size = Number(st.size);
        const fileMtime = tsOfNs(st.mtimeNs);
        if (Math.abs((fileMtime.sec - n.mtime.sec) * 1e9 + fileMtime.nsec - n.mtime.nsec) >= 1e6) mtime = fileMtime;
        ctime = maxTs(ctime, tsOfNs(st.ctimeNs));
      }
    }
    // Committed files are immutable: show them without write permission.
    const mode = n.state === 'committed' || this.ctx.readOnly ? n.mode & ~0o222 : n.mode;
    return { ...base, mode: C.S_IFREG | (mode & 0o7777), size, nlink: 1, blocks: Math.ceil(size / 512), mtime, ctime };
  }

  /**
   * A folder's children with their inode numbers and types (d_ino, d_type), and its
   * parent (for `..`; the root is its own parent).
   */
  async readdir(id: string): Promise<{ parentId: string; entries: Array<{ name: string; ino: number; folder: boolean }> }> {
    const n = await this.node(id);
    if (n.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', `${n.name} is not a folder`);
    const entries = (await this.ctx.control.children(n.id)).map((c) => ({ name: c.name, ino: this.ctx.index.ino(c.id), folder: c.type === 'folder' }));
    return { parentId: n.parentId ?? n.id, entries };
  }

  /** The inode number of a node (stable, from the staging index). */
  inoOf(nodeId: string): number {
    return this.ctx.index.ino(nodeId);
  }

  // ---- Namespace changes: one transactional control-plane call each --------------------

  async mkdir(parentId: string, name: string, mode: number, caller: Caller): Promise<Entry> {
    this.readOnlyMount();
    const n = await this.ctx.control.createChild({
      mountId: this.ctx.mountId, parentId, name, type: 'folder', mode: C.S_IFDIR | (mode & 0o7777), uid: caller.uid, gid: caller.gid, ownerAgent: null,
    });
    return { nodeId: n.id, stat: await this.statOf({ ...n, subfolders: 0 }) };
  }

  async rmdir(parentId: string, name: string): Promise<void> {
    this.readOnlyMount();
    await this.ctx.control.removeChild(this.ctx.mountId, parentId, name, 'folder');
  }

  async unlink(parentId: string, name: string): Promise<void> {
    this.readOnlyMount();
    const n = await this.ctx.control.removeChild(this.ctx.mountId, parentId, name, 'file');
    await this.dropStaged(n);
  }

  async rename(parentId: string, name: string, newParentId: string, newName: string, flags = 0): Promise<void> {
    this.readOnlyMount();
    if (flags & RENAME_EXCHANGE) throw new NamespaceError('UNSUPPORTED_FLAG', 'rename with RENAME_EXCHANGE is not supported');
    if (flags & ~RENAME_NOREPLACE) throw new NamespaceError('UNSUPPORTED_FLAG', `rename flags ${flags} are not supported`);
    const { node, replaced } = await this.ctx.control.moveChild({
      mountId: this.ctx.mountId, srcParentId: parentId, srcName: name, dstParentId: newParentId, dstName: newName, noReplace: (flags & RENAME_NOREPLACE) !== 0,
    });
    if (replaced && replaced.type === 'file') await this.dropStaged(replaced);
    if (node.type === 'file') this.ctx.onFileReady?.(node.id);
  }

  /**
   * CREATE: a new staged file, open for writing. The handle is registered (under its
   * parent) before the node exists, so a seal starting now waits for this create.
   */
  async create(parentId: string, name: string, mode: number, flags: number, caller: Caller): Promise<{ fh: number; entry: Entry }> {
    this.readOnlyMount();
    const h = this.ctx.handles.add({ nodeId: null, parentId, fd: -1, writable: true, append: (flags & C.O_APPEND) !== 0, dirty: false, sha: newWriteHash() });
    try {
      const n = await this.ctx.control.createChild({
        mountId: this.ctx.mountId, parentId, name, type: 'file', mode: C.S_IFREG | (mode & 0o7777), uid: caller.uid, gid: caller.gid, ownerAgent: this.ctx.agentId,
      });
      h.nodeId = n.id;
      try {
        h.fd = fsSync.openSync(stagingPath(this.ctx, n.id), C.O_RDWR | C.O_CREAT | C.O_TRUNC, 0o600);
        // The staged file starts with the node's times, so the two agree (see statOf).
        fsSync.futimesSync(h.fd, secondsOf(n.mtime), secondsOf(n.mtime));
      } catch (err) {
        if (h.fd >= 0) fsSync.closeSync(h.fd);
        h.fd = -1;
        await this.ctx.control.removeChild(this.ctx.mountId, parentId, name, 'file');
        throw localError(err, `create ${name}`);
      }
      this.ctx.index.addStagedWriter(n.id, this.ctx.mountId);
      return { fh: h.fh, entry: { nodeId: n.id, stat: await this.statOf(n) } };
    } catch (err) {
      this.ctx.handles.remove(h.fh);
      throw err;
    }
  }

  /**
   * OPEN. A read costs one metadata query; so does an open for writing: the node and
   * the barrier above it are read together, after the handle is registered as a writer.
   */
  async open(id: string, flags: number): Promise<number> {
    const wantsWrite = (flags & O_ACCMODE) !== C.O_RDONLY || (flags & C.O_TRUNC) !== 0;
    if (!wantsWrite) {
      const n = await this.node(id);
      if (n.type === 'folder') throw new NamespaceError('IS_A_FOLDER', `${n.name} is a folder`);
      return this.openForRead(n);
    }
    this.readOnlyMount();
    const h = this.ctx.handles.add({ nodeId: id, parentId: null, fd: -1, writable: true, append: (flags & C.O_APPEND) !== 0, dirty: false });
    try {
      const r = await this.ctx.control.nodeForWrite(this.ctx.mountId, id);
      if (!r) throw new NamespaceError('NODE_NOT_FOUND', `Node ${id} does not exist`);
      const n = r.node;
      if (n.type === 'folder') throw new NamespaceError('IS_A_FOLDER', `${n.name} is a folder`);
      if (r.barrier) throw await this.ctx.control.barrierError(r.barrier);
      if (n.ownerAgent !== this.ctx.agentId) throw new NamespaceError('CONFLICT', `${n.name} is staged by another node`, { name: n.name });
      if (!this.staged(n)) throw new CacheError('STAGED_DATA_LOST', `The staged bytes of ${n.name} are missing from this node's cache`);
      // Unset (always, outside race tests), no await: no extra turn on every write-open.
      const delay = delayPoint('open.after-check', this.ctx.log);
      if (delay) await delay;
      let f = C.O_RDWR;
      if (flags & C.O_TRUNC) f |= C.O_TRUNC;
      this.changing(n.id);
      h.fd = fsSync.openSync(stagingPath(this.ctx, n.id), f);
      // Hashed while written only from an empty file, by its one writer.
      const alone = !this.ctx.handles.openFor(n.id).some((o) => o.writable && o.fh !== h.fh);
      if (alone && fsSync.fstatSync(h.fd).size === 0) h.sha = newWriteHash();
      this.ctx.index.addWriters(n.id, 1);
      if (flags & C.O_TRUNC) h.dirty = true;
      return h.fh;
    } catch (err) {
      this.ctx.handles.remove(h.fh);
      throw localError(err, `open ${id}`);
    }
  }

  private async openForRead(n: NodeRecord): Promise<number> {
    if (n.state !== 'committed' && n.type === 'file' && n.ownerAgent && n.ownerAgent !== this.ctx.agentId) {
      // Its bytes are on the node that writes it until a commit puts them in the bucket;
      // serving anything else could be wrong bytes.
      throw new NamespaceError('STAGED_ON_OTHER_NODE', `${n.name} is staged on another node; it is readable here once committed`, { name: n.name, agentId: n.ownerAgent });
    }
    if (n.state === 'committed' && this.streamingReads && !this.staged(n)) return this.openStreaming(n);
    const local = n.state !== 'committed' || this.staged(n) ? stagingPath(this.ctx, n.id) : await this.objects.localPath(n.sha256!, n.size, n.commitId, this.onMiss(n));
    try {
      const fd = fsSync.openSync(local, C.O_RDONLY);
      return this.ctx.handles.add({ nodeId: n.id, parentId: null, fd, writable: false, append: false, dirty: false }).fh;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && n.state === 'committed' && n.sha256) {
        // The staged copy was evicted after the commit: serve it from the store.
        const fd = fsSync.openSync(await this.objects.localPath(n.sha256, n.size, n.commitId, this.onMiss(n)), C.O_RDONLY);
        return this.ctx.handles.add({ nodeId: n.id, parentId: null, fd, writable: false, append: false, dirty: false }).fh;
      }
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new CacheError('STAGED_DATA_LOST', `The staged bytes of ${n.name} are missing from this node's cache`, {}, { cause: err });
      }
      throw localError(err, `open ${n.name}`);
    }
  }

  /** What a cold open of committed file `n` sets off beside its own download: sibling prefetch, when on. */
  private onMiss(n: NodeRecord): (() => void) | undefined {
    const siblings = this.siblings;
    return siblings ? () => siblings.coldRead(n) : undefined;
  }

  /**
   * A committed file from the object cache, opened before its download completes: the
   * handle's gate holds every read until its blocks verified (`waitRead`).
   */
  private async openStreaming(n: NodeRecord): Promise<number> {
    const { path: file, gate } = await this.objects.openStreaming(n.sha256!, n.size, n.commitId, this.onMiss(n));
    let fd: number;
    try {
      fd = fsSync.openSync(file, C.O_RDONLY);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw localError(err, `open ${n.name}`);
      // The download completed (renamed into the cache) or failed (removed) meanwhile,
      // or the cached copy was evicted: the whole-object path says which, and fetches
      // it again if need be.
      fd = fsSync.openSync(await this.objects.localPath(n.sha256!, n.size, n.commitId), C.O_RDONLY);
      return this.ctx.handles.add({ nodeId: n.id, parentId: null, fd, writable: false, append: false, dirty: false }).fh;
    }
    return this.ctx.handles.add({ nodeId: n.id, parentId: null, fd, writable: false, append: false, dirty: false, gate }).fh;
  }

  /**
   * For a binding with `streamingReads`: resolves once the bytes [offset, offset +
   * length) of the handle's file are verified and readable on its fd (at once for any
   * handle without a gate); true when no read through it will need to wait again.
   * Rejects with the download's failure (INTEGRITY_ERROR: EIO), and then no byte of the
   * range is served.
   */
  async waitRead(fh: number, offset: number, length: number): Promise<boolean> {
    const h = this.handle(fh);
    const gate = h.gate;
    if (!gate) return true;
    await gate.wait(offset, length);
    if (!gate.complete) return false;
    h.gate = null;
    return true;
  }

  // ---- Data through handles ------------------------------------------------------------

  private handle(fh: number): Handle {
    const h = this.ctx.handles.get(fh);
    if (!h || h.fd < 0) throw new CacheError('INTERNAL', `Bad file handle ${fh}`);
    return h;
  }

  read(fh: number, buf: Buffer, length: number, position: number): number {
    const h = this.handle(fh);
    // A partial download: only verified blocks, and only after `waitRead` said so.
    if (h.gate && !h.gate.readable(position, length)) throw new CacheError('INTERNAL', `read of unverified bytes through handle ${fh} (waitRead first)`);
    try {
      return fsSync.readSync(h.fd, buf, 0, length, position);
    } catch (err) {
      throw localError(err, `read ${h.nodeId}`);
    }
  }

  write(fh: number, buf: Buffer, length: number, position: number): number {
    const h = this.handle(fh);
    if (!h.writable) throw new NamespaceError('NOT_OPEN_FOR_WRITING', 'The file handle is not open for writing');
    try {
      const pos = h.append ? fsSync.fstatSync(h.fd).size : position;
      h.dirty = true;
      const n = fsSync.writeSync(h.fd, buf, 0, length, pos);
      if (h.sha?.kind === 'running' && pos === h.sha.bytes) {
        h.sha.hash.update(buf.subarray(0, n));
        h.sha.bytes += n;
        if (h.nodeId) this.uploader.writing(fh, h.nodeId, h.sha.bytes);
      } else {
        h.sha = null;
      }
      return n;
    } catch (err) {
      throw localError(err, `write ${h.nodeId}`);
    }
  }

  async fsync(fh: number): Promise<void> {
    const h = this.handle(fh);
    // On the thread pool: flushing a large staged file takes the disk's time, and the
    // event loop answers every other metadata request of the mount meanwhile.
    await new Promise<void>((resolve, reject) => fsSync.fsync(h.fd, (err) => (err ? reject(localError(err, `fsync ${h.nodeId}`)) : resolve())));
  }

  /**
   * close(2) waits for FLUSH (RELEASE comes later, asynchronously), so the size and
   * mtime the API reports are published here: right after close() returns they are
   * current.
   */
  async flush(fh: number): Promise<void> {
    const h = this.ctx.handles.get(fh);
    if (!h || !h.writable || !h.nodeId || !h.dirty || h.fd < 0) return;
    await this.publishAttrs(h);
  }

  /**
   * Records the staged file's size and mtime on its node. A handle opened before a
   * seal may do so while the folder seals. An unlinked file has no node left: nothing
   * to record, and not an error (its handle keeps working).
   */
  private async publishAttrs(h: Handle): Promise<void> {
    const st = fsSync.fstatSync(h.fd, { bigint: true });
    try {
      await this.ctx.control.setNodeAttrs(this.ctx.mountId, h.nodeId!, { size: Number(st.size), mtime: tsOfNs(st.mtimeNs) }, 'not-committed');
    } catch (err) {
      if (!(err instanceof RosetError && err.rosetCode === 'NODE_NOT_FOUND' && h.orphan)) throw err;
    }
    h.dirty = false;
  }

  async release(fh: number): Promise<void> {
    const h = this.ctx.handles.get(fh);
    if (!h) return;
    let upload = false;
    try {
      if (h.writable && h.nodeId) {
        // Normally FLUSH published these already. Nobody waits on a release (close(2)
        // has returned), so a failure is logged.
        if (h.fd >= 0 && h.dirty) {
          await this.publishAttrs(h).catch((err: unknown) => {
            this.ctx.log.warn({ nodeId: h.nodeId, err: (err as Error).message }, 'could not publish size and mtime at release');
          });
        }
        if (h.fd >= 0 && !h.orphan) upload = this.closedWriter(h);
        // Can fail on a full cache disk (SQLite cannot write): the error is the
        // release's, but the fd still closes below, or its bytes could never be freed.
        if (!h.orphan) this.ctx.index.addWriters(h.nodeId, -1);
      }
    } finally {
      if (h.fd >= 0) fsSync.closeSync(h.fd);
      // Removing the handle is what lets a waiting seal proceed, so it always happens.
      this.ctx.handles.remove(fh);
    }
    if (h.orphan?.forgetOnClose && !this.ctx.handles.openFor(h.nodeId!).some((o) => o.fd >= 0)) this.forgetStaged(h.nodeId!);
    // Only now: the uploader skips a file that still has a writable handle.
    if (upload) {
      this.uploader.schedule(h.nodeId!);
      this.ctx.onFileReady?.(h.nodeId!);
    }
  }

  /**
   * The node's staged bytes may change (a writable open, a truncate): its uploads and
   * every hash taken through its handles no longer describe it.
   */
  private changing(nodeId: string): void {
    this.uploader.touch(nodeId);
    for (const o of this.ctx.handles.openFor(nodeId)) o.sha = null;
  }

  /**
   * A writer is closing: remembers a hash taken while writing; true when it is the last
   * writer, so the file can upload once its handle is gone.
   */
  private closedWriter(h: Handle): boolean {
    const nodeId = h.nodeId!;
    const st = fsSync.fstatSync(h.fd);
    const sha256 = h.sha && h.sha.bytes === st.size ? digestOf(h.sha) : null;
    // Only a saving (the upload hashes the file itself without it), written with the
    // next batch of records; a failed write is logged there.
    if (sha256) this.uploader.remember({ nodeId, size: st.size, mtimeMs: Math.floor(st.mtimeMs), sha256, state: 'hashed' });
    this.uploader.writerClosed(h.fh, sha256, st.size);
    h.sha = null;
    return !this.ctx.handles.openFor(nodeId).some((o) => o.writable && o.fh !== h.fh);
  }

  private async dropStaged(n: NodeRecord): Promise<void> {
    // Open handles keep their fd, as POSIX allows; the bytes go when the last fd closes.
    // They keep what stat needs of the node, which is gone from the namespace.
    for (const o of this.ctx.handles.openFor(n.id)) o.orphan = { mode: n.mode, uid: n.uid, gid: n.gid, atime: n.atime };
    // The file goes first: on a full disk, that frees the space the index needs.
    this.uploader.bump(n.id);
    await fs.rm(stagingPath(this.ctx, n.id), { force: true });
    try {
      this.forgetStaged(n.id);
    } catch (err) {
      // A handle still open on the file (a RELEASE the kernel has not sent yet) holds
      // its blocks, so a full cache disk may not have room for the index yet. The node
      // is already gone from the namespace; the last handle's release forgets the rest.
      const open = this.ctx.handles.openFor(n.id).filter((o) => o.fd >= 0);
      if (open.length === 0) throw localError(err, `unlink ${n.name}`);
      for (const o of open) o.orphan!.forgetOnClose = true;
      this.ctx.log.warn({ nodeId: n.id, err: (err as Error).message }, 'staged file removed; its index row goes when its last handle closes');
    }
  }

  private forgetStaged(nodeId: string): void {
    this.ctx.index.removeStaged(nodeId);
    this.uploader.forget(nodeId);
  }

  // ---- Attributes ------------------------------------------------------------------------

  /**
   * SETATTR: size, mode, owner and times, through a handle (`fh`) or not. Returns the
   * attributes after the change.
   *
   * - Without a handle, a change of bytes (size) or of the staged file's times counts
   *   as a writer for as long as it runs (see the header), and the barrier is checked
   *   in the transaction that records it.
   * - Through a handle opened for writing, size and times follow the handle's rule: a
   *   handle opened before the seal may finish (the kernel sets times itself when it
   *   writes back under the writeback cache), but nothing changes a committed file.
   * - mode, uid and gid are metadata only: one guarded transaction.
   */
  async setattr(id: string, fh: number | undefined, req: AttrRequest): Promise<Stat> {
    const h = fh ? this.ctx.handles.get(fh) : undefined;
    const viaHandle = !!(h && h.writable && h.fd >= 0 && h.nodeId === id);
    const now = nowTimespec();
    const atime = req.atime === 'now' ? now : req.atime;
    const mtime = req.mtime === 'now' ? now : req.mtime;
    const touchesBytes = req.size !== undefined || mtime !== undefined || atime !== undefined;
    const meta: AttrChange = {};
    if (req.mode !== undefined) meta.mode = req.mode;
    if (req.uid !== undefined) meta.uid = req.uid;
    if (req.gid !== undefined) meta.gid = req.gid;
    if (atime) meta.atime = atime;
    if (mtime) meta.mtime = mtime;

    // An unlinked file (only its open handles know it): the change applies to their bytes.
    const orphan = this.ctx.handles.openFor(id).find((o) => o.orphan && o.fd >= 0 && (o.writable || req.size === undefined));
    if (orphan) return this.setattrOrphan(orphan, req.size, atime, mtime);
    // Nothing Roset stores (a ctime-only SETATTR from the kernel's writeback): attributes as they are.
    if (!touchesBytes && Object.keys(meta).length === 0) return this.getattr(id, fh);
    this.readOnlyMount();
    const timesOnly = !viaHandle && req.size === undefined && req.mode === undefined && req.uid === undefined && req.gid === undefined;
    if (timesOnly && this.ctx.flushing?.has(id)) {
      // The seal's own write-back: it makes the kernel send the times it kept for writes
      // made before the seal (the writeback cache), right before the snapshot. They are
      // recorded; the staged file's mtime, which the snapshot records, is left alone.
      // Refused, the kernel would report EIO at the file's next close, a reader's too.
      return this.statOf(await this.ctx.control.setNodeAttrs(this.ctx.mountId, id, meta, 'not-committed'));
    }
    if (!touchesBytes) {
      const n = await this.ctx.control.setNodeAttrs(this.ctx.mountId, id, meta, 'writable');
      return this.statOf(n);
    }
    if (viaHandle) {
      // This handle is a writer, so no seal can finish while it is open: its folder is
      // staging or sealing, never committed, and size and times may change (a handle
      // opened before the seal may finish). Owner and mode may not while sealing: a
      // request that also carries them is checked before any byte changes.
      if (req.mode !== undefined || req.uid !== undefined || req.gid !== undefined) await this.ctx.control.assertWritable(this.ctx.mountId, id);
      this.changeBytes(h!.fd, id, req.size, atime, mtime);
      if (req.size !== undefined) h!.dirty = true;
      // The bytes changed while this handle, a writer, was open: a seal that began
      // meanwhile waits for it, so the change is before the seal and is recorded.
      const n = await this.ctx.control.setNodeAttrs(this.ctx.mountId, id, this.withSize(meta, h!.fd, req.size), 'not-committed');
      return this.statOf(n);
    }
    // A path operation on the bytes: a writer until it is recorded.
    const op = this.ctx.handles.add({ nodeId: id, parentId: null, fd: -1, writable: true, append: false, dirty: false });
    try {
      const r = await this.ctx.control.nodeForWrite(this.ctx.mountId, id);
      if (!r) throw new NamespaceError('NODE_NOT_FOUND', `Node ${id} does not exist`);
      const n = r.node;
      if (r.barrier) {
        // The times the node already has change nothing, so the barrier refuses nothing.
        // The kernel sends them while a rename(2) of the file (a DCP marker: the rename
        // that starts its auto-commit) returns, to write back the new ctime; refused, it
        // would report EIO at the file's next close(2), a reader's too.
        if (timesOnly && sameTs(n.mtime, mtime) && sameTs(n.atime, atime)) return this.statOf(n);
        throw await this.ctx.control.barrierError(r.barrier);
      }
      if (n.type === 'folder') {
        if (req.size !== undefined) throw new NamespaceError('IS_A_FOLDER', `${n.name} is a folder`);
        return this.statOf(await this.ctx.control.setNodeAttrs(this.ctx.mountId, id, meta, 'writable'));
      }
      if (req.size !== undefined && n.ownerAgent !== this.ctx.agentId) throw new NamespaceError('CONFLICT', `${n.name} is staged by another node`);
      let fd = -1;
      if (this.staged(n)) {
        try {
          fd = fsSync.openSync(stagingPath(this.ctx, n.id), C.O_RDWR);
          this.changeBytes(fd, id, req.size, atime, mtime);
          if (req.size !== undefined) meta.size = fsSync.fstatSync(fd).size;
        } finally {
          if (fd >= 0) fsSync.closeSync(fd);
        }
      } else if (req.size !== undefined) {
        throw new CacheError('STAGED_DATA_LOST', `The staged bytes of ${n.name} are missing from this node's cache`);
      }
      if (req.size !== undefined && !mtime) meta.mtime = now;
      // Past the barrier check as a registered writer: a seal that began since waits for
      // this operation, so what it changed is before the seal and is recorded as such.
      const out = await this.ctx.control.setNodeAttrs(this.ctx.mountId, id, meta, fd >= 0 ? 'not-committed' : 'writable');
      if (req.size !== undefined && !this.ctx.handles.openFor(id).some((o) => o.writable && o.fd >= 0)) this.uploader.schedule(id);
      return this.statOf(out);
    } finally {
      this.ctx.handles.remove(op.fh);
    }
  }

  private withSize(meta: AttrChange, fd: number, size: number | undefined): AttrChange {
    return size === undefined ? meta : { ...meta, size: fsSync.fstatSync(fd).size };
  }

  /** Truncates and sets the times of a staged file's bytes. */
  private changeBytes(fd: number, id: string, size: number | undefined, atime: Timespec | undefined, mtime: Timespec | undefined): void {
    try {
      if (size !== undefined) {
        this.changing(id);
        fsSync.ftruncateSync(fd, size);
      }
      if (atime || mtime) {
        const st = fsSync.fstatSync(fd);
        const a = atime ? secondsOf(atime) : st.atimeMs / 1000;
        const m = mtime ? secondsOf(mtime) : st.mtimeMs / 1000;
        fsSync.futimesSync(fd, a, m);
      }
    } catch (err) {
      throw localError(err, `setattr ${id}`);
    }
  }

  private setattrOrphan(h: Handle, size: number | undefined, atime: Timespec | undefined, mtime: Timespec | undefined): Stat {
    // A read-only fd cannot have its times set; the kernel's times of the unlinked
    // file are then only kept in the handle (atime) or dropped (mtime of nothing).
    if (h.writable || size !== undefined) this.changeBytes(h.fd, h.nodeId!, size, atime, mtime);
    if (atime && h.orphan) h.orphan.atime = atime;
    return this.orphanStat(h);
  }

  async statfs(): Promise<StatFs> {
    const s = await fs.statfs(this.ctx.cacheDir);
    return {
      bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, namemax: 255,
    };
  }

  // ---- For bindings that serve data themselves (src/fuse/native.ts) -----------------------

  /**
   * What a binding that serves data itself needs of an open handle: its fd, its mode,
   * and whether it should hash the bytes written through it (the file is empty and this
   * is its only writer), reporting the digest with `noteDigest`.
   */
  handleInfo(fh: number): { fd: number; writable: boolean; nodeId: string | null; hash: boolean; gated: boolean } | null {
    const h = this.ctx.handles.get(fh);
    return h && h.fd >= 0 ? { fd: h.fd, writable: h.writable, nodeId: h.nodeId, hash: h.writable && h.sha?.kind === 'running' && h.sha.bytes === 0, gated: !!h.gate } : null;
  }

  /**
   * Bytes reached the staged file through `fh` without passing through `write` (a
   * binding that writes in C): the handle is dirty, as after a write. Unless the
   * binding is still hashing them in order (`hashedThere`), no hash covers them.
   */
  noteWritten(fh: number, hashedThere = false): void {
    const h = this.ctx.handles.get(fh);
    if (!h || !h.writable) return;
    h.dirty = true;
    if (!hashedThere) h.sha = null;
  }

  /**
   * The binding that writes in C reports how far the bytes written through `fh` are a
   * final prefix of the file (written once, in order from byte 0, and hashed there),
   * for the upload while writing. Ignored unless the core still counts on that hash.
   */
  writtenPrefix(fh: number, bytes: number): void {
    const h = this.ctx.handles.get(fh);
    if (!h || !h.writable || !h.nodeId || h.sha?.kind !== 'running' || h.sha.bytes !== 0) return;
    this.uploader.writing(fh, h.nodeId, bytes);
  }

  /** The binding's sha256 of the first `bytes` bytes, written in order through `fh`. */
  noteDigest(fh: number, sha256: string, bytes: number): void {
    const h = this.ctx.handles.get(fh);
    if (!h || !h.writable || h.sha?.kind !== 'running' || h.sha.bytes !== 0 || !/^[0-9a-f]{64}$/.test(sha256)) return;
    h.sha = { kind: 'taken', digest: sha256, bytes };
  }

  /** Resolves once every download into the read cache, prefetches included, is on disk and recorded. */
  async settle(): Promise<void> {
    await this.siblings?.idle();
    await this.objects.settled();
  }

  /** For shutdown: no sibling prefetch starts any more; resolves once those running ended. */
  async stopPrefetch(): Promise<void> {
    await this.siblings?.stop();
  }

  /** Count of writable handles: the daemon drains these before unmounting. */
  get openWriters(): number {
    return this.ctx.handles.all().filter((h) => h.writable).length;
  }
}

function digestOf(s: WriteHash): string {
  switch (s.kind) {
    case 'running':
      return s.hash.digest('hex');
    case 'taken':
      return s.digest;
    default: {
      const never: never = s;
      throw new Error(`Unknown hash state ${String(never)}`);
    }
  }
}

/** Time helpers for the bindings, which see the core and not the metadata layer. */
export { msOf, timespecFromMs, type Timespec };
