/**
 * The filesystem core by path, for callers that speak paths: the fuse-native binding
 * (libfuse 2's high-level API hands it paths) and tests. Each call resolves its path
 * once, here at the edge, then calls the id-based core (`filesystem.ts`); nothing
 * below this file sees a path.
 *
 * Invariant: a path names a node only for the instant it is resolved; what happens next
 * is decided by id, in the core's transactions. A rename racing a path operation can
 * make the operation act on the node the path named when it was resolved, as with any
 * path-based system call.
 */
import { baseName, normalizePath, parentOf } from '../meta/paths.js';
import { CacheError, NamespaceError } from '../errors/index.js';
import type { ControlApi } from '../control/service.js';
import type { AttrRequest, Caller, RosetFilesystem, Stat, StatFs } from './filesystem.js';
import type { Timespec } from '../meta/types.js';

export class PathFilesystem {
  /** Who owns what is created through paths: fuse-native does not tell who asks. */
  private readonly owner: Caller = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

  constructor(readonly core: RosetFilesystem, private readonly control: ControlApi, private readonly mountId: string) {}

  /** The node id at `p` (NODE_NOT_FOUND if there is none). */
  async resolve(p: string): Promise<string> {
    const n = await this.control.resolvePath(this.mountId, normalizePath(p));
    if (!n) throw new NamespaceError('NODE_NOT_FOUND', `${p} does not exist`);
    return n.id;
  }

  /** The parent folder's id and the last name of `p`. */
  private async split(p: string): Promise<[string, string]> {
    const np = normalizePath(p);
    if (np === '/') throw new NamespaceError('CROSS_DEVICE', 'The root folder cannot be changed this way');
    return [await this.resolve(parentOf(np)), baseName(np)];
  }

  get uploader(): RosetFilesystem['uploader'] {
    return this.core.uploader;
  }

  get agent(): RosetFilesystem['agent'] {
    return this.core.agent;
  }

  reconcile(): ReturnType<RosetFilesystem['reconcile']> {
    return this.core.reconcile();
  }

  settle(): Promise<void> {
    return this.core.settle();
  }

  /** Through a handle, the handle names the node (which may be unlinked): no path is resolved. */
  async getattr(p: string, fh?: number): Promise<Stat> {
    const nodeId = fh ? this.core.handleInfo(fh)?.nodeId : undefined;
    return this.core.getattr(nodeId ?? await this.resolve(p), fh);
  }

  async readdir(p: string): Promise<string[]> {
    return (await this.core.readdir(await this.resolve(p))).entries.map((e) => e.name);
  }

  async mkdir(p: string, mode: number, caller: Caller = this.owner): Promise<void> {
    const [parent, name] = await this.split(p);
    await this.core.mkdir(parent, name, mode, caller);
  }

  async rmdir(p: string): Promise<void> {
    const [parent, name] = await this.split(p);
    await this.core.rmdir(parent, name);
  }

  async create(p: string, mode: number, flags: number, caller: Caller = this.owner): Promise<number> {
    const [parent, name] = await this.split(p);
    return (await this.core.create(parent, name, mode, flags, caller)).fh;
  }

  async open(p: string, flags: number): Promise<number> {
    return this.core.open(await this.resolve(p), flags);
  }

  read(fh: number, buf: Buffer, length: number, position: number): number {
    return this.core.read(fh, buf, length, position);
  }

  write(fh: number, buf: Buffer, length: number, position: number): number {
    return this.core.write(fh, buf, length, position);
  }

  flush(fh: number): Promise<void> {
    return this.core.flush(fh);
  }

  fsync(fh: number): Promise<void> {
    return this.core.fsync(fh);
  }

  release(fh: number): Promise<void> {
    return this.core.release(fh);
  }

  async setattr(p: string, fh: number | undefined, req: AttrRequest): Promise<Stat> {
    return this.core.setattr(await this.resolve(p), fh, req);
  }

  async truncate(p: string, size: number): Promise<void> {
    await this.setattr(p, undefined, { size });
  }

  /** Truncates through a handle: the handle names the node, no path is resolved. */
  async ftruncate(fh: number, size: number): Promise<void> {
    const h = this.core.handleInfo(fh);
    if (!h || !h.nodeId) throw new CacheError('INTERNAL', `Bad file handle ${fh}`);
    await this.core.setattr(h.nodeId, fh, { size });
  }

  async chmod(p: string, mode: number): Promise<void> {
    await this.setattr(p, undefined, { mode });
  }

  async chown(p: string, uid: number, gid: number): Promise<void> {
    // -1 (as an unsigned 32-bit number from libfuse) leaves that id as it is.
    const keep = (v: number): number | undefined => (v === -1 || v === 0xffffffff ? undefined : v);
    await this.setattr(p, undefined, { uid: keep(uid), gid: keep(gid) });
  }

  async utimens(p: string, atime: Timespec, mtime: Timespec): Promise<void> {
    await this.setattr(p, undefined, { atime, mtime });
  }

  async unlink(p: string): Promise<void> {
    const [parent, name] = await this.split(p);
    await this.core.unlink(parent, name);
  }

  async rename(from: string, to: string, flags = 0): Promise<void> {
    const [srcParent, srcName] = await this.split(from);
    const [dstParent, dstName] = await this.split(to);
    await this.core.rename(srcParent, srcName, dstParent, dstName, flags);
  }

  statfs(): Promise<StatFs> {
    return this.core.statfs();
  }
}
