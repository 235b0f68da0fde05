/**
 * The filesystem core: every POSIX operation the mount supports, on mount-relative
 * paths, testable without FUSE. The FUSE adapter only translates arguments and errno.
 *
 * Owns: staged bytes in `<cacheDir>/staging/<nodeId>`, open handles, and the
 * enforcement half of the write barrier (the control plane holds folder states).
 *
 * Invariants:
 * - Anything that changes a file or folder first checks `assertWritable` on the
 *   control plane: inside a sealing or committed folder it fails with EROFS
 *   (SEALED / COMMITTED). Writes through a handle opened before the seal may finish.
 * - Committed files are read from the staged copy when this node wrote them, else from
 *   the object cache, which verifies sha256 before it serves a byte.
 * - Data writes are synchronous `pwrite`s into the staged file, done before the FUSE
 *   reply, so the kernel's buffer is never used after the call returns.
 */
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import type { NodeRecord } from '../meta/types.js';
import { baseName, normalizePath, parentOf } from '../meta/paths.js';
import { CacheError, NamespaceError, RosetError } from '../errors/index.js';
import { StagingAgent } from './agent.js';
import { stagingPath, type CoreContext } from './context.js';
import { ObjectCache } from './object-cache.js';
import { Uploader } from './uploader.js';
import { newWriteHash, type Handle, type WriteHash } from './handles.js';

export interface Stat {
  mode: number;
  size: number;
  nlink: number;
  uid: number;
  gid: number;
  ino: number;
  blksize: number;
  blocks: number;
  atime: Date;
  mtime: Date;
  ctime: Date;
}

export interface StatFs {
  bsize: number; frsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number; favail: number; namemax: number;
}

const O_ACCMODE = 3;
const C = fsSync.constants;

/** Turns a local syscall failure into a RosetError the adapter can map to errno. */
function localError(err: unknown, what: string): RosetError {
  if (err instanceof RosetError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOSPC' || e.code === 'EDQUOT') return new CacheError('NO_SPACE', `The cache disk is full (${what})`, {}, { cause: err });
  return new CacheError('INTERNAL', `${what}: ${e.message}`, {}, { cause: err });
}

export class RosetFilesystem {
  readonly agent: StagingAgent;
  readonly uploader: Uploader;
  private readonly objects: ObjectCache;
  private readonly uid = process.getuid?.() ?? 0;
  private readonly gid = process.getgid?.() ?? 0;

  constructor(private readonly ctx: CoreContext, mountpoint: string | null) {
    this.uploader = new Uploader(ctx);
    this.objects = new ObjectCache(ctx, { maxBytes: ctx.cacheMaxBytes ?? 0, ...ctx.readCache });
    this.agent = new StagingAgent(ctx, mountpoint, this.uploader, this.objects);
  }

  static async prepareCacheDir(cacheDir: string): Promise<void> {
    for (const d of ['staging', 'objects', 'tmp']) await fs.mkdir(path.join(cacheDir, d), { recursive: true });
    for (const f of await fs.readdir(path.join(cacheDir, 'tmp'))) await fs.rm(path.join(cacheDir, 'tmp', f), { force: true, recursive: true });
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
    const root = await this.ctx.control.lookup(this.ctx.mountId, '/');
    if (!root) return { lost, unclosed };
    for (const n of await this.ctx.control.stagedFiles(this.ctx.mountId, '/', this.ctx.agentId)) {
      if (!this.ctx.index.hasStaged(n.id) || !fsSync.existsSync(stagingPath(this.ctx, n.id))) {
        lost.push(n.path);
        await this.ctx.control.removeNode(this.ctx.mountId, n.path, 'file').catch((err: unknown) => {
          this.ctx.log.error({ path: n.path, err: (err as Error).message }, 'could not remove a file whose staged bytes are gone');
        });
      }
    }
    if (lost.length) this.ctx.log.warn({ files: lost.slice(0, 20), count: lost.length }, 'staged files lost with the cache were removed from the namespace');
    await this.objects.sweep();
    return { lost, unclosed };
  }

  private async node(p: string): Promise<NodeRecord> {
    const n = await this.ctx.control.lookup(this.ctx.mountId, normalizePath(p));
    if (!n) throw new NamespaceError('NODE_NOT_FOUND', `${p} does not exist`);
    return n;
  }

  private async writable(p: string): Promise<void> {
    if (this.ctx.readOnly) throw new NamespaceError('READ_ONLY_MOUNT', 'The mount is read-only');
    await this.ctx.control.assertWritable(this.ctx.mountId, p);
  }

  /** Whether this node holds the file's bytes locally as a staged file. */
  private staged(n: NodeRecord): boolean {
    return this.ctx.index.hasStaged(n.id);
  }

  async getattr(p: string): Promise<Stat> {
    return this.statOf(await this.node(p));
  }

  private async statOf(n: NodeRecord): Promise<Stat> {
    const base = {
      uid: this.uid, gid: this.gid, ino: this.ctx.index.ino(n.id), blksize: 4096,
      ctime: new Date(n.updatedAt), atime: new Date(n.mtimeMs),
    };
    if (n.type === 'folder') {
      const mode = n.state === 'staging' && !this.ctx.readOnly ? n.mode : n.mode & ~0o222;
      return { ...base, mode: C.S_IFDIR | (mode & 0o7777), size: 4096, nlink: 2, blocks: 8, mtime: new Date(n.mtimeMs) };
    }
    let size = n.size;
    let mtime = new Date(n.mtimeMs);
    if (n.state !== 'committed' && this.staged(n)) {
      // Staged bytes are the truth while a file is being written.
      const st = await fs.stat(stagingPath(this.ctx, n.id)).catch(() => null);
      if (st) { size = st.size; mtime = st.mtime; }
    }
    // Committed files are immutable: show them without write permission.
    const mode = n.state === 'committed' || this.ctx.readOnly ? n.mode & ~0o222 : n.mode;
    return { ...base, mode: C.S_IFREG | (mode & 0o7777), size, nlink: 1, blocks: Math.ceil(size / 512), mtime };
  }

  async readdir(p: string): Promise<string[]> {
    const n = await this.node(p);
    if (n.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', `${p} is not a folder`);
    return (await this.ctx.control.children(n.id)).map((c) => c.name);
  }

  async mkdir(p: string, mode: number): Promise<void> {
    const np = normalizePath(p);
    await this.writable(np);
    await this.ctx.control.createNode({ mountId: this.ctx.mountId, parentPath: parentOf(np), name: baseName(np), type: 'folder', mode: C.S_IFDIR | (mode & 0o7777) });
  }

  async rmdir(p: string): Promise<void> {
    await this.writable(normalizePath(p));
    await this.ctx.control.removeNode(this.ctx.mountId, normalizePath(p), 'folder');
  }

  async create(p: string, mode: number, flags: number): Promise<number> {
    const np = normalizePath(p);
    // Registered before the node exists, so a seal starting now waits for this create.
    const h = this.ctx.handles.add({ nodeId: null, path: np, fd: -1, writable: true, append: (flags & C.O_APPEND) !== 0, dirty: false, sha: newWriteHash() });
    try {
      await this.writable(np);
      const n = await this.ctx.control.createNode({
        mountId: this.ctx.mountId, parentPath: parentOf(np), name: baseName(np), type: 'file', mode: C.S_IFREG | (mode & 0o7777), ownerAgent: this.ctx.agentId,
      });
      h.nodeId = n.id;
      try {
        h.fd = fsSync.openSync(stagingPath(this.ctx, n.id), fsSync.constants.O_RDWR | fsSync.constants.O_CREAT | fsSync.constants.O_TRUNC, 0o600);
      } catch (err) {
        await this.ctx.control.removeNode(this.ctx.mountId, np, 'file');
        throw localError(err, `create ${np}`);
      }
      this.ctx.index.addStaged(n.id, this.ctx.mountId);
      this.ctx.index.addWriters(n.id, 1);
      return h.fh;
    } catch (err) {
      this.ctx.handles.remove(h.fh);
      throw err;
    }
  }

  async open(p: string, flags: number): Promise<number> {
    const np = normalizePath(p);
    const wantsWrite = (flags & O_ACCMODE) !== C.O_RDONLY || (flags & C.O_TRUNC) !== 0;
    const n = await this.node(np);
    if (n.type === 'folder') throw new NamespaceError('IS_A_FOLDER', `${np} is a folder`);
    if (!wantsWrite) {
      const local = n.state !== 'committed' || this.staged(n) ? stagingPath(this.ctx, n.id) : await this.objects.localPath(n.sha256!, n.size);
      try {
        const fd = fsSync.openSync(local, fsSync.constants.O_RDONLY);
        return this.ctx.handles.add({ nodeId: n.id, path: np, fd, writable: false, append: false, dirty: false }).fh;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && n.state === 'committed' && n.sha256) {
          // The staged copy was evicted after the commit: serve it from the store.
          const fd = fsSync.openSync(await this.objects.localPath(n.sha256, n.size), fsSync.constants.O_RDONLY);
          return this.ctx.handles.add({ nodeId: n.id, path: np, fd, writable: false, append: false, dirty: false }).fh;
        }
        throw localError(err, `open ${np}`);
      }
    }
    const h = this.ctx.handles.add({ nodeId: n.id, path: np, fd: -1, writable: true, append: (flags & C.O_APPEND) !== 0, dirty: false });
    try {
      await this.writable(np);
      if (n.ownerAgent !== this.ctx.agentId) {
        throw new NamespaceError('CONFLICT', `${np} is staged by another node`, { path: np });
      }
      if (!this.staged(n)) throw new CacheError('INTERNAL', `The staged bytes of ${np} are missing from the cache`);
      let f = fsSync.constants.O_RDWR;
      if (flags & C.O_TRUNC) f |= fsSync.constants.O_TRUNC;
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
      throw localError(err, `open ${np}`);
    }
  }

  private handle(fh: number): Handle {
    const h = this.ctx.handles.get(fh);
    if (!h || h.fd < 0) throw new CacheError('INTERNAL', `Bad file handle ${fh}`);
    return h;
  }

  read(fh: number, buf: Buffer, length: number, position: number): number {
    const h = this.handle(fh);
    try {
      return fsSync.readSync(h.fd, buf, 0, length, position);
    } catch (err) {
      throw localError(err, `read ${h.path}`);
    }
  }

  write(fh: number, buf: Buffer, length: number, position: number): number {
    const h = this.handle(fh);
    if (!h.writable) throw new NamespaceError('READ_ONLY_MOUNT', `${h.path} is not open for writing`);
    try {
      const pos = h.append ? fsSync.fstatSync(h.fd).size : position;
      h.dirty = true;
      const n = fsSync.writeSync(h.fd, buf, 0, length, pos);
      if (h.sha?.kind === 'running' && pos === h.sha.bytes) {
        h.sha.hash.update(buf.subarray(0, n));
        h.sha.bytes += n;
      } else {
        h.sha = null;
      }
      return n;
    } catch (err) {
      throw localError(err, `write ${h.path}`);
    }
  }

  async fsync(fh: number): Promise<void> {
    const h = this.handle(fh);
    // On the thread pool: flushing a large staged file takes the disk's time, and the
    // event loop answers every other metadata request of the mount meanwhile.
    await new Promise<void>((resolve, reject) => fsSync.fsync(h.fd, (err) => (err ? reject(localError(err, `fsync ${h.path}`)) : resolve())));
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

  private async publishAttrs(h: Handle): Promise<void> {
    const st = fsSync.fstatSync(h.fd);
    await this.ctx.control.setAttrs(this.ctx.mountId, h.path, { size: st.size, mtimeMs: Math.floor(st.mtimeMs) });
    h.dirty = false;
  }

  async release(fh: number): Promise<void> {
    const h = this.ctx.handles.get(fh);
    if (!h) return;
    let upload = false;
    try {
      if (h.writable && h.nodeId) {
        // Normally FLUSH published these already. Nobody waits on a release (close(2)
        // has returned), so a failure is logged; an unlinked file has no node to update.
        if (h.fd >= 0 && h.dirty) {
          await this.publishAttrs(h).catch((err: unknown) => {
            if (!(err instanceof RosetError && err.rosetCode === 'NODE_NOT_FOUND')) {
              this.ctx.log.warn({ path: h.path, err: (err as Error).message }, 'could not publish size and mtime at release');
            }
          });
        }
        if (h.fd >= 0) upload = this.closedWriter(h);
        // Can fail on a full cache disk (SQLite cannot write): the error is the
        // release's, but the fd still closes below, or its bytes could never be freed.
        this.ctx.index.addWriters(h.nodeId, -1);
      }
    } finally {
      if (h.fd >= 0) fsSync.closeSync(h.fd);
      // Removing the handle is what lets a waiting seal proceed, so it always happens.
      this.ctx.handles.remove(fh);
    }
    // Only now: the uploader skips a file that still has a writable handle.
    if (upload) this.uploader.schedule(h.nodeId!);
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
    if (sha256) {
      try {
        this.ctx.index.setUpload({ nodeId, size: st.size, mtimeMs: Math.floor(st.mtimeMs), sha256, state: 'hashed' });
      } catch (err) {
        // Only a saving (the upload hashes the file itself without it); e.g. a full disk.
        this.ctx.log.debug({ nodeId, err: (err as Error).message }, 'could not keep the hash taken while writing');
      }
    }
    h.sha = null;
    return !this.ctx.handles.openFor(nodeId).some((o) => o.writable && o.fh !== h.fh);
  }

  async truncate(p: string, size: number): Promise<void> {
    const np = normalizePath(p);
    const n = await this.node(np);
    if (n.type === 'folder') throw new NamespaceError('IS_A_FOLDER', `${np} is a folder`);
    await this.writable(np);
    if (n.ownerAgent !== this.ctx.agentId) throw new NamespaceError('CONFLICT', `${np} is staged by another node`);
    this.changing(n.id);
    try {
      await fs.truncate(stagingPath(this.ctx, n.id), size);
    } catch (err) {
      throw localError(err, `truncate ${np}`);
    }
    if (!this.ctx.handles.openFor(n.id).some((o) => o.writable)) this.uploader.schedule(n.id);
    await this.ctx.control.setAttrs(this.ctx.mountId, np, { size, mtimeMs: Date.now() });
  }

  async ftruncate(fh: number, size: number): Promise<void> {
    const h = this.handle(fh);
    if (!h.writable) {
      await this.truncate(h.path, size);
      return;
    }
    await this.writable(h.path).catch((err: unknown) => {
      // A handle opened before the seal may keep writing, but not change the size
      // of a folder that is already committed.
      if (err instanceof RosetError && err.rosetCode === 'COMMITTED') throw err;
    });
    try {
      if (h.nodeId) this.changing(h.nodeId);
      fsSync.ftruncateSync(h.fd, size);
      h.dirty = true;
      h.sha = null;
    } catch (err) {
      throw localError(err, `truncate ${h.path}`);
    }
  }

  async unlink(p: string): Promise<void> {
    const np = normalizePath(p);
    await this.writable(np);
    const n = await this.ctx.control.removeNode(this.ctx.mountId, np, 'file');
    await this.dropStaged(n.id);
  }

  private async dropStaged(nodeId: string): Promise<void> {
    // Open handles keep their fd, as POSIX allows; the bytes go when the last fd closes.
    // The file goes first: on a full disk, that frees the space the index needs.
    this.uploader.bump(nodeId);
    await fs.rm(stagingPath(this.ctx, nodeId), { force: true });
    this.ctx.index.removeStaged(nodeId);
    this.ctx.index.dropUpload(nodeId);
  }

  async rename(from: string, to: string): Promise<void> {
    const src = normalizePath(from);
    const dst = normalizePath(to);
    await this.writable(src);
    await this.writable(dst);
    const { replaced } = await this.ctx.control.rename(this.ctx.mountId, src, dst);
    if (replaced && replaced.type === 'file') await this.dropStaged(replaced.id);
    this.ctx.handles.renamed(src, dst);
  }

  async chmod(p: string, mode: number): Promise<void> {
    const np = normalizePath(p);
    const n = await this.node(np);
    await this.writable(np);
    await this.ctx.control.setAttrs(this.ctx.mountId, np, { mode: (n.mode & ~0o7777) | (mode & 0o7777) });
  }

  async utimens(p: string, _atime: Date, mtime: Date): Promise<void> {
    const np = normalizePath(p);
    const n = await this.node(np);
    await this.writable(np);
    if (n.type === 'file' && this.staged(n)) await fs.utimes(stagingPath(this.ctx, n.id), mtime, mtime).catch(() => undefined);
    await this.ctx.control.setAttrs(this.ctx.mountId, np, { mtimeMs: mtime.getTime() });
  }

  async statfs(): Promise<StatFs> {
    const s = await fs.statfs(this.ctx.cacheDir);
    return {
      bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, namemax: 255,
    };
  }

  // ---- For inode-based bindings (src/fuse/native.ts): additive, same rules as above ----

  /** The node at `p` with its attributes: what a FUSE LOOKUP answers. */
  async lookupEntry(p: string): Promise<{ nodeId: string; stat: Stat }> {
    const n = await this.node(p);
    return { nodeId: n.id, stat: await this.statOf(n) };
  }

  /** The current path of a node (renames included), or null once it is gone. */
  async pathOfNode(nodeId: string): Promise<string | null> {
    return (await this.ctx.control.lookupById(this.ctx.mountId, nodeId))?.path ?? null;
  }

  /** Children with their inode numbers and types, for a readdir that needs d_ino/d_type. */
  async readdirEntries(p: string): Promise<Array<{ name: string; ino: number; folder: boolean }>> {
    const n = await this.node(p);
    if (n.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', `${p} is not a folder`);
    return (await this.ctx.control.children(n.id)).map((c) => ({ name: c.name, ino: this.ctx.index.ino(c.id), folder: c.type === 'folder' }));
  }

  /**
   * What a binding that serves data itself needs of an open handle: its fd, its mode,
   * and whether it should hash the bytes written through it (the file is empty and this
   * is its only writer), reporting the digest with `noteDigest`.
   */
  handleInfo(fh: number): { fd: number; writable: boolean; nodeId: string | null; hash: boolean } | null {
    const h = this.ctx.handles.get(fh);
    return h && h.fd >= 0 ? { fd: h.fd, writable: h.writable, nodeId: h.nodeId, hash: h.writable && h.sha?.kind === 'running' && h.sha.bytes === 0 } : null;
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

  /** The binding's sha256 of the first `bytes` bytes, written in order through `fh`. */
  noteDigest(fh: number, sha256: string, bytes: number): void {
    const h = this.ctx.handles.get(fh);
    if (!h || !h.writable || h.sha?.kind !== 'running' || h.sha.bytes !== 0 || !/^[0-9a-f]{64}$/.test(sha256)) return;
    h.sha = { kind: 'taken', digest: sha256, bytes };
  }

  /**
   * Attributes through an open handle: those of its node, or, once the file was
   * unlinked while open, of the bytes the handle still holds.
   */
  async fgetattr(fh: number): Promise<Stat> {
    const h = this.handle(fh);
    const n = await this.ctx.control.lookup(this.ctx.mountId, h.path);
    if (n && n.id === h.nodeId) return this.statOf(n);
    const st = fsSync.fstatSync(h.fd);
    return {
      mode: C.S_IFREG | (h.writable ? 0o644 : 0o444), size: st.size, nlink: 0, uid: this.uid, gid: this.gid,
      ino: h.nodeId ? this.ctx.index.ino(h.nodeId) : 0, blksize: 4096, blocks: Math.ceil(st.size / 512), atime: st.atime, mtime: st.mtime, ctime: st.ctime,
    };
  }

  /**
   * Sets times through an open handle. The kernel does this itself when it writes back
   * a file under the writeback cache, so a handle opened for writing before a seal may
   * do it while sealing, as it may write (same rule as ftruncate).
   */
  async futimens(fh: number, _atime: Date, mtime: Date): Promise<void> {
    const h = this.handle(fh);
    if (!h.writable) {
      await this.utimens(h.path, _atime, mtime);
      return;
    }
    await this.writable(h.path).catch((err: unknown) => {
      if (err instanceof RosetError && err.rosetCode === 'COMMITTED') throw err;
    });
    try {
      fsSync.futimesSync(h.fd, mtime, mtime);
    } catch (err) {
      throw localError(err, `utimens ${h.path}`);
    }
    // An unlinked file keeps its handle but has no node left to update.
    await this.ctx.control.setAttrs(this.ctx.mountId, h.path, { mtimeMs: mtime.getTime() }).catch((err: unknown) => {
      if (!(err instanceof RosetError && err.rosetCode === 'NODE_NOT_FOUND')) throw err;
    });
  }

  /** Resolves once every download into the read cache is on disk and recorded. */
  async settle(): Promise<void> {
    await this.objects.settled();
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
