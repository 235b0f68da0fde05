/**
 * A plain in-memory reference model of a Roset mount: the namespace (folders, files
 * with their bytes), each folder's state (STAGING, SEALING, COMMITTED), open handles,
 * the commits in flight and what each one must capture, and the errno of every
 * operation (docs/SEMANTICS.md; where it is silent, what ext4 does).
 *
 * Nothing here knows Roset's code. The model answers with what may happen:
 * - an operation either succeeds (with a value: stat, names, bytes, a new handle) or
 *   fails with one errno of a set. POSIX lets a call that fails for several reasons
 *   report any of them ("the order of detection is undefined"), so when, say, a mkdir
 *   names an existing entry inside a sealing folder, both EEXIST and EROFS are right;
 * - the end of a commit (completed, or failed with a code) is an event the runner
 *   observes; `settle` says whether that outcome is allowed in the model's state and,
 *   if so, applies it (the folder becomes COMMITTED with its whole subtree, or returns
 *   to STAGING with its data).
 *
 * Semantic choices the docs leave open are marked "DECISION" and listed in the test's
 * header (test/core/model.property.test.ts).
 */
import { createHash } from 'node:crypto';

export type FolderState = 'staging' | 'sealing' | 'committed';
/** Where the operations arrive: the core's path-based methods, or a real FUSE mount. */
export type Layer = 'core' | 'mount';

export interface FolderNode {
  kind: 'folder';
  id: number;
  name: string;
  parent: number | null;
  /** Permission bits only (& 0o7777). */
  mode: number;
  /** Known after utimens; null once anything may have changed it. */
  mtimeMs: number | null;
  state: FolderState;
  children: Map<string, number>;
}

export interface FileNode {
  kind: 'file';
  id: number;
  name: string;
  /** null once unlinked (kept while a handle holds it). */
  parent: number | null;
  mode: number;
  mtimeMs: number | null;
  /** 'staging' or, once a commit around it completed, 'committed'. */
  state: FolderState;
  data: Buffer;
}

export type ModelNode = FolderNode | FileNode;

export interface ModelHandle {
  id: number;
  file: number;
  writable: boolean;
  readable: boolean;
  append: boolean;
  /**
   * The path the handle was opened at, moved along by renames of it or of a folder
   * above it (as an open file's path follows `mv`). For a file unlinked while open it
   * stays where the file was.
   */
  path: string;
}

/** Wall-clock bounds (ms) of an instant the runner cannot see exactly. */
export interface Instant { lo: number; hi: number }

export interface ModelCommit {
  id: number;
  folder: number;
  /** The commit call: the seal's timer started inside it. */
  started: Instant;
  /** When the last writer under the folder that the seal must wait for closed; null while one is open. */
  mustFree: Instant | null;
  /** The same, counting handles of files unlinked while open (whose path is under the folder). */
  allFree: Instant | null;
  sawStoreUp: boolean;
  sawStoreDown: boolean;
}

export interface Stat { type: 'file' | 'folder'; perm: number; size?: number; mtimeMs?: number }

/** `okToo`: success is right as well (the kernel would have answered 0 without asking). */
export type Expect<T = unknown> = { ok: true; value?: T } | { ok: false; errs: string[]; okToo?: boolean };

export interface ManifestEntry { path: string; size: number; mode: number; sha256: string }

export interface SettleOutcome {
  completed: boolean;
  /** The commit's error code and message when it failed. */
  code?: string;
  message?: string;
  /** The manifest's files, when it completed. */
  files?: ManifestEntry[];
  /** Wall-clock time the runner saw the outcome. */
  at: number;
}

export interface SealTiming {
  /** The seal timeout the target runs with. */
  timeoutMs: number;
  /** How late the seal's timer may start after the commit call returned. */
  slackMs: number;
}

const ok = <T>(value?: T): Expect<T> => ({ ok: true, value });
const fail = (...errs: string[]): Expect<never> => ({ ok: false, errs: [...new Set(errs)] });

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Whether `p` is `dir` or below it (paths as strings, compared exactly). */
export function within(p: string, dir: string): boolean {
  return dir === '/' || p === dir || p.startsWith(`${dir}/`);
}

export function splitPath(p: string): string[] {
  return p.split('/').filter((s) => s !== '');
}

export function joinPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

/** Byte order of UTF-8, the order names have on disk. */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

interface Resolved {
  /** Set when the path cannot be walked: a component before the last is missing or a file. */
  walkErr?: 'ENOENT' | 'ENOTDIR';
  /** The last folder reached (the parent when the walk succeeded). */
  dir: FolderNode;
  node?: ModelNode;
  name: string;
}

export class FsModel {
  nodes = new Map<number, ModelNode>();
  handles = new Map<number, ModelHandle>();
  commits = new Map<number, ModelCommit>();
  storeUp = true;
  private nextNode = 1;
  private nextHandle = 1;
  private nextCommit = 1;

  constructor(readonly layer: Layer, readonly timing: SealTiming) {
    this.nodes.set(0, { kind: 'folder', id: 0, name: '', parent: null, mode: 0o755, mtimeMs: null, state: 'staging', children: new Map() });
  }

  clone(): FsModel {
    const m = new FsModel(this.layer, this.timing);
    m.nodes = new Map([...this.nodes].map(([k, n]) => [k, n.kind === 'folder' ? { ...n, children: new Map(n.children) } : { ...n }]));
    m.handles = new Map([...this.handles].map(([k, h]) => [k, { ...h }]));
    m.commits = new Map([...this.commits].map(([k, c]) => [k, { ...c }]));
    m.storeUp = this.storeUp;
    m.nextNode = this.nextNode;
    m.nextHandle = this.nextHandle;
    m.nextCommit = this.nextCommit;
    return m;
  }

  // ---- Namespace helpers ----------------------------------------------------------

  get root(): FolderNode {
    return this.nodes.get(0) as FolderNode;
  }

  node(id: number): ModelNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`model: no node ${id}`);
    return n;
  }

  folder(id: number): FolderNode {
    const n = this.node(id);
    if (n.kind !== 'folder') throw new Error(`model: node ${id} is not a folder`);
    return n;
  }

  pathOf(id: number): string {
    const parts: string[] = [];
    for (let n = this.node(id); n.parent !== null; n = this.node(n.parent)) parts.unshift(n.name);
    return `/${parts.join('/')}`;
  }

  /** Every linked node below the root, with its path, in byte order of paths. */
  listNodes(): Array<{ path: string; node: ModelNode }> {
    const out: Array<{ path: string; node: ModelNode }> = [];
    const walk = (f: FolderNode, p: string): void => {
      for (const name of [...f.children.keys()].sort(byteOrder)) {
        const c = this.node(f.children.get(name)!);
        const cp = joinPath(p, name);
        out.push({ path: cp, node: c });
        if (c.kind === 'folder') walk(c, cp);
      }
    };
    walk(this.root, '/');
    return out;
  }

  lookup(p: string): ModelNode | undefined {
    const r = this.resolve(p);
    return r.walkErr ? undefined : r.node;
  }

  resolve(p: string): Resolved {
    const parts = splitPath(p);
    if (parts.length === 0) return { dir: this.root, node: this.root, name: '' };
    let dir = this.root;
    for (const part of parts.slice(0, -1)) {
      const id = dir.children.get(part);
      if (id === undefined) return { walkErr: 'ENOENT', dir, name: parts[parts.length - 1]! };
      const c = this.node(id);
      if (c.kind !== 'folder') return { walkErr: 'ENOTDIR', dir, name: parts[parts.length - 1]! };
      dir = c;
    }
    const name = parts[parts.length - 1]!;
    const id = dir.children.get(name);
    return { dir, node: id === undefined ? undefined : this.node(id), name };
  }

  /** Errnos of a walk failure; on the core a walk through a file may end in ENOENT (the kernel answers ENOTDIR before asking). */
  private walkErrs(r: Resolved, rename = false): string[] {
    if (!r.walkErr) return [];
    if (r.walkErr === 'ENOTDIR' && this.layer === 'core') return rename ? ['ENOTDIR', 'ENOENT', 'EINVAL'] : ['ENOTDIR', 'ENOENT'];
    return [r.walkErr];
  }

  /** The first non-STAGING state on `id` or any folder above it (docs: effective state). */
  effective(id: number): FolderState {
    for (let n: ModelNode | undefined = this.node(id); n; n = n.parent === null ? undefined : this.node(n.parent)) {
      if (n.state !== 'staging') return n.state;
    }
    return 'staging';
  }

  /** Whether a change at this node (or, for a missing name, in this folder) is behind the write barrier. */
  private blocked(id: number): boolean {
    return this.effective(id) !== 'staging';
  }

  /** EROFS when the place `r` names (the node, else the last folder reached) is behind the barrier. */
  private barrier(r: Resolved): string[] {
    return this.blocked(r.node ? r.node.id : r.dir.id) ? ['EROFS'] : [];
  }

  private subtree(id: number): ModelNode[] {
    const out: ModelNode[] = [];
    const walk = (n: ModelNode): void => {
      out.push(n);
      if (n.kind === 'folder') for (const c of n.children.values()) walk(this.node(c));
    };
    walk(this.node(id));
    return out;
  }

  private isAncestorOrSelf(anc: number, id: number): boolean {
    for (let n: ModelNode | undefined = this.node(id); n; n = n.parent === null ? undefined : this.node(n.parent)) {
      if (n.id === anc) return true;
    }
    return false;
  }

  private touchDir(id: number): void {
    // A folder's mtime moves when its entries change (ext4); the docs do not say, so
    // the model stops asserting it (DECISION: folder mtimes are compared only when set
    // by utimens and untouched since).
    this.node(id).mtimeMs = null;
  }

  private detach(n: ModelNode): void {
    const parent = this.folder(n.parent!);
    parent.children.delete(n.name);
    this.touchDir(parent.id);
    n.parent = null;
    if (n.kind === 'folder' || ![...this.handles.values()].some((h) => h.file === n.id)) this.nodes.delete(n.id);
  }

  private attach(n: ModelNode, dir: FolderNode, name: string): void {
    n.name = name;
    n.parent = dir.id;
    dir.children.set(name, n.id);
    this.touchDir(dir.id);
  }

  // ---- Attributes -------------------------------------------------------------------

  statOf(n: ModelNode): Stat {
    // Committed files show without write bits (docs). DECISION: a folder shows without
    // write bits while its own state is SEALING or COMMITTED (the code's choice; the
    // docs only speak of files).
    const perm = n.state === 'staging' ? n.mode : n.mode & ~0o222;
    if (n.kind === 'folder') return { type: 'folder', perm, ...(n.mtimeMs !== null ? { mtimeMs: n.mtimeMs } : {}) };
    return { type: 'file', perm, size: n.data.length, ...(n.mtimeMs !== null ? { mtimeMs: n.mtimeMs } : {}) };
  }

  getattr(p: string): Expect<Stat> {
    const r = this.resolve(p);
    if (r.walkErr) return fail(...this.walkErrs(r));
    if (!r.node) return fail('ENOENT');
    return ok(this.statOf(r.node));
  }

  readdir(p: string): Expect<string[]> {
    const r = this.resolve(p);
    if (r.walkErr) return fail(...this.walkErrs(r));
    if (!r.node) return fail('ENOENT');
    if (r.node.kind !== 'folder') return fail('ENOTDIR');
    return ok([...r.node.children.keys()].sort(byteOrder));
  }

  // ---- Namespace operations -----------------------------------------------------------

  mkdir(p: string, mode: number): Expect {
    const r = this.resolve(p);
    if (r.walkErr) return fail(...this.walkErrs(r), ...this.barrier(r));
    // DECISION: an existing name that is itself behind the barrier (a committed folder)
    // may be refused with EROFS as well as EEXIST.
    if (r.node) return fail('EEXIST', ...this.barrier(r));
    if (this.blocked(r.dir.id)) return fail('EROFS');
    const id = this.nextNode++;
    const f: FolderNode = { kind: 'folder', id, name: r.name, parent: null, mode: mode & 0o7777, mtimeMs: null, state: 'staging', children: new Map() };
    this.nodes.set(id, f);
    this.attach(f, r.dir, r.name);
    return ok();
  }

  rmdir(p: string): Expect {
    noRoot(p, 'rmdir');
    const r = this.resolve(p);
    if (r.walkErr) return fail(...this.walkErrs(r), ...this.barrier(r));
    if (!r.node) return fail('ENOENT', ...this.barrier(r));
    // Docs ("Removing committed folders"): rmdir of a committed folder itself (the
    // folder its commit sealed, in a STAGING folder) takes it out of the namespace as a
    // whole, empty or not. Handles open on its files keep reading them, like unlinked files.
    if (r.node.kind === 'folder' && r.node.state === 'committed' && !this.blocked(r.dir.id)) {
      for (const n of this.subtree(r.node.id)) {
        if (n.id === r.node.id) continue;
        if (n.kind === 'file' && [...this.handles.values()].some((h) => h.file === n.id)) n.parent = null;
        else this.nodes.delete(n.id);
      }
      r.node.children.clear();
      this.detach(r.node);
      return ok();
    }
    const errs = this.barrier(r);
    if (r.node.kind !== 'folder') return fail('ENOTDIR', ...errs);
    if (r.node.children.size > 0) errs.push('ENOTEMPTY');
    if (errs.length) return fail(...errs);
    this.detach(r.node);
    return ok();
  }

  unlink(p: string): Expect {
    noRoot(p, 'unlink');
    const r = this.resolve(p);
    if (r.walkErr) return fail(...this.walkErrs(r), ...this.barrier(r));
    if (!r.node) return fail('ENOENT', ...this.barrier(r));
    const errs = this.barrier(r);
    // Linux answers EISDIR for unlink(2) of a directory (POSIX allows EPERM too).
    if (r.node.kind === 'folder') return fail('EISDIR', ...errs);
    if (errs.length) return fail(...errs);
    this.detach(r.node);
    return ok();
  }

  rename(from: string, to: string): Expect {
    noRoot(from, 'rename');
    noRoot(to, 'rename');
    const s = this.resolve(from);
    const d = this.resolve(to);
    const errs = [...this.walkErrs(s, true), ...this.walkErrs(d, true)];
    if (!s.walkErr && !s.node) errs.push('ENOENT');
    if (from === to && s.node && !errs.length) {
      // The kernel sees the same inode on both sides and answers 0 without asking the
      // file system (DECISION for the core, which the kernel never asks: 0, EINVAL, or
      // EROFS behind the barrier).
      return this.layer === 'core' ? { ok: false, errs: ['EINVAL', ...this.barrier(s)], okToo: true } : ok();
    }
    const src = s.node;
    if (src && src.kind === 'folder' && from !== to && within(to, from)) errs.push('EINVAL');
    errs.push(...this.barrier(s), ...this.barrier(d));
    // Docs: a folder holding SEALING or COMMITTED folders cannot move (EBUSY, CONTAINS_COMMITS).
    if (src && src.kind === 'folder' && this.subtree(src.id).some((n) => n.kind === 'folder' && n.state !== 'staging')) errs.push('EBUSY');
    const dst = d.node;
    if (src && dst && dst.id !== src.id) {
      if (dst.kind === 'folder' && src.kind !== 'folder') errs.push('EISDIR');
      if (dst.kind !== 'folder' && src.kind === 'folder') errs.push('ENOTDIR');
      if (dst.kind === 'folder' && src.kind === 'folder' && dst.children.size > 0) errs.push('ENOTEMPTY');
      // Linux: a target that is an ancestor of the source is ENOTEMPTY, whatever the source.
      if (dst.kind === 'folder' && this.isAncestorOrSelf(dst.id, src.id)) errs.push('ENOTEMPTY');
    }
    if (errs.length) return fail(...errs);
    if (!src || d.walkErr) throw new Error('model: rename without a source or a destination folder');
    if (dst) this.detach(dst);
    this.detach(src);
    this.nodes.set(src.id, src);
    this.attach(src, d.dir, d.name);
    // Open handles follow the move (and a handle of a file replaced at `to` stays at `to`).
    for (const h of this.handles.values()) if (within(h.path, from)) h.path = to + h.path.slice(from.length);
    return ok();
  }

  truncate(p: string, size: number): Expect {
    const r = this.resolve(p);
    if (r.walkErr) return fail(...this.walkErrs(r), ...this.barrier(r));
    if (!r.node) return fail('ENOENT', ...this.barrier(r));
    const errs = this.barrier(r);
    if (r.node.kind === 'folder') return fail('EISDIR', ...errs);
    if (errs.length) return fail(...errs);
    r.node.data = resize(r.node.data, size);
    r.node.mtimeMs = null;
    return ok();
  }

  chmod(p: string, mode: number): Expect {
    const r = this.resolve(p);
    if (r.walkErr) return fail(...this.walkErrs(r), ...this.barrier(r));
    if (!r.node) return fail('ENOENT', ...this.barrier(r));
    if (this.blocked(r.node.id)) return fail('EROFS');
    r.node.mode = mode & 0o7777;
    return ok();
  }

  utimens(p: string, mtimeMs: number): Expect {
    const r = this.resolve(p);
    if (r.walkErr) return fail(...this.walkErrs(r), ...this.barrier(r));
    if (!r.node) return fail('ENOENT', ...this.barrier(r));
    if (this.blocked(r.node.id)) return fail('EROFS');
    r.node.mtimeMs = mtimeMs;
    return ok();
  }

  // ---- Handles ------------------------------------------------------------------------

  /** open(O_CREAT|O_EXCL|O_WRONLY): the core's `create`. Value: the new handle's id. */
  create(p: string, mode: number, append: boolean): Expect<number> {
    const r = this.resolve(p);
    if (r.walkErr) return fail(...this.walkErrs(r), ...this.barrier(r));
    if (r.node) return fail('EEXIST', ...this.barrier(r));
    if (this.blocked(r.dir.id)) return fail('EROFS');
    const id = this.nextNode++;
    const f: FileNode = { kind: 'file', id, name: r.name, parent: null, mode: mode & 0o7777, mtimeMs: null, state: 'staging', data: Buffer.alloc(0) };
    this.nodes.set(id, f);
    this.attach(f, r.dir, r.name);
    return ok(this.addHandle({ file: id, writable: true, readable: false, append, path: p }));
  }

  /** open(2) of an existing file: 'r' O_RDONLY, 'rw' O_RDWR, 'w' O_WRONLY, 'wt' O_WRONLY|O_TRUNC, 'a' O_WRONLY|O_APPEND. */
  open(p: string, flags: OpenFlags): Expect<number> {
    const r = this.resolve(p);
    const writing = flags !== 'r';
    if (r.walkErr) return fail(...this.walkErrs(r), ...(writing ? this.barrier(r) : []));
    if (!r.node) return fail('ENOENT', ...(writing ? this.barrier(r) : []));
    // DECISION: open(O_RDONLY) of a folder is EISDIR on the core; on a mount it is an
    // opendir, which the mount target reports as EISDIR as well (it never reads it).
    if (r.node.kind === 'folder') return fail('EISDIR', ...(writing ? this.barrier(r) : []));
    if (writing && this.blocked(r.node.id)) return fail('EROFS');
    if (flags === 'wt') {
      r.node.data = Buffer.alloc(0);
      r.node.mtimeMs = null;
    }
    return ok(this.addHandle({ file: r.node.id, writable: writing, readable: flags === 'r' || flags === 'rw', append: flags === 'a', path: p }));
  }

  private addHandle(h: Omit<ModelHandle, 'id'>): number {
    const id = this.nextHandle++;
    this.handles.set(id, { ...h, id });
    return id;
  }

  handle(id: number): ModelHandle {
    const h = this.handles.get(id);
    if (!h) throw new Error(`model: no handle ${id}`);
    return h;
  }

  write(hid: number, data: Buffer, pos: number): Expect<number> {
    const h = this.handle(hid);
    // Docs: a write through a read-only handle is EBADF (NOT_OPEN_FOR_WRITING); on a
    // mount the kernel refuses it first, with the same errno.
    if (!h.writable) return fail('EBADF');
    const f = this.node(h.file) as FileNode;
    // A write of 0 bytes changes no byte and no size, wherever it points.
    if (data.length === 0) {
      f.mtimeMs = null;
      return ok(0);
    }
    const at = h.append ? f.data.length : pos;
    const out = Buffer.alloc(Math.max(f.data.length, at + data.length));
    f.data.copy(out);
    data.copy(out, at);
    f.data = out;
    f.mtimeMs = null;
    return ok(data.length);
  }

  read(hid: number, len: number, pos: number): Expect<Buffer> {
    const h = this.handle(hid);
    const f = this.node(h.file) as FileNode;
    return ok(Buffer.from(f.data.subarray(Math.min(pos, f.data.length), Math.min(pos + len, f.data.length))));
  }

  /** ftruncate(2) through a writable handle: allowed while sealing (a handle opened before the seal may finish its file), EROFS once committed. */
  ftruncate(hid: number, size: number): Expect {
    const h = this.handle(hid);
    if (!h.writable) throw new Error('model: ftruncate through a read-only handle is not generated');
    const f = this.node(h.file) as FileNode;
    if (f.parent !== null && this.effective(f.id) === 'committed') return fail('EROFS');
    f.data = resize(f.data, size);
    f.mtimeMs = null;
    return ok();
  }

  /** close(2): flush, then release. Always 0 (nothing here can fail to reach the staged file). `at`: when the close ran. */
  close(hid: number, at: Instant): Expect {
    const h = this.handle(hid);
    this.handles.delete(hid);
    const f = this.nodes.get(h.file) as FileNode | undefined;
    if (f && f.parent === null && ![...this.handles.values()].some((o) => o.file === f.id)) this.nodes.delete(f.id);
    if (h.writable) {
      for (const c of this.commits.values()) {
        if (c.mustFree === null && this.mustWait(c).length === 0) c.mustFree = at;
        if (c.allFree === null && this.mayWait(c).length === 0) c.allFree = at;
      }
    }
    return ok();
  }

  /** Writable handles of files inside the commit's folder: the seal waits for them. */
  private mustWait(c: ModelCommit): ModelHandle[] {
    return [...this.handles.values()].filter((h) => {
      const f = this.nodes.get(h.file);
      return h.writable && f && f.parent !== null && this.isAncestorOrSelf(c.folder, f.id);
    });
  }

  /**
   * DECISION: a file unlinked (or replaced by a rename) while open for writing is in no
   * folder, so the docs do not say whether a seal waits for its handle. The code waits
   * when the handle's path is under the folder; a seal that goes by ancestry would not.
   * Both are accepted.
   */
  private mayWait(c: ModelCommit): ModelHandle[] {
    const dir = this.pathOf(c.folder);
    return [...this.handles.values()].filter((h) => h.writable && (this.mustWait(c).includes(h) || (this.nodes.get(h.file)?.parent === null && within(h.path, dir))));
  }

  // ---- Commits ------------------------------------------------------------------------

  /** Whether a commit of this folder would be accepted: nothing SEALING or COMMITTED on it, above it or inside it. */
  committable(id: number): boolean {
    return this.effective(id) === 'staging' && !this.subtree(id).some((d) => d.kind === 'folder' && d.state !== 'staging');
  }

  /** `cp.commit` of the node at `p` (the runner found its id). Value: the model's commit id. */
  commit(p: string, started: Instant): Expect<number> {
    const n = this.lookup(p);
    if (!n) throw new Error('model: commit of a missing path is not sent');
    if (n.kind !== 'folder') return fail('ENOTDIR');
    const errs: string[] = [];
    for (let a: ModelNode | undefined = n; a; a = a.parent === null ? undefined : this.node(a.parent)) {
      if (a.state === 'committed') errs.push('EROFS');
      if (a.state === 'sealing') errs.push('EBUSY');
    }
    if (this.subtree(n.id).some((d) => d.id !== n.id && d.kind === 'folder' && d.state === 'sealing')) errs.push('EBUSY');
    if (errs.length) return fail(...errs);
    n.state = 'sealing';
    const id = this.nextCommit++;
    const c: ModelCommit = { id, folder: n.id, started, mustFree: null, allFree: null, sawStoreUp: this.storeUp, sawStoreDown: !this.storeUp };
    if (this.mustWait(c).length === 0) c.mustFree = started;
    if (this.mayWait(c).length === 0) c.allFree = started;
    this.commits.set(id, c);
    return ok(id);
  }

  /** What a completed commit must hold: exactly the folder's subtree, as it is now (nothing in it can change while it seals). */
  expectedManifest(c: ModelCommit): ManifestEntry[] {
    const dir = this.pathOf(c.folder);
    return this.subtree(c.folder).filter((n): n is FileNode => n.kind === 'file').map((f) => {
      const p = this.pathOf(f.id);
      return { path: p.slice(dir === '/' ? 1 : dir.length + 1), size: f.data.length, mode: f.mode, sha256: sha256(f.data) };
    }).sort((a, b) => byteOrder(a.path, b.path));
  }

  /**
   * The commit ended as `out` says. Returns why that is not allowed here, or null after
   * applying it: COMMITTED for the folder and its subtree, or STAGING for the folder.
   */
  settle(cid: number, out: SettleOutcome): string | null {
    const c = this.commits.get(cid);
    if (!c) return `commit #${cid} is not in flight`;
    const folder = this.folder(c.folder);
    const { timeoutMs, slackMs } = this.timing;
    // The seal's timer fired somewhere in [started.lo + T, started.hi + T + slack].
    const timerEarliest = c.started.lo + timeoutMs;
    const timerLatest = c.started.hi + timeoutMs + slackMs;
    if (out.completed) {
      if (c.mustFree === null) return 'completed while a writer inside the folder is still open';
      if (c.mustFree.lo >= timerLatest) return `completed although its last writer closed ${c.mustFree.lo - c.started.hi} ms after the commit began (seal timeout ${timeoutMs} ms)`;
      if (!c.sawStoreUp) return 'completed although the store failed every request all along';
      const want = this.expectedManifest(c);
      const got = [...(out.files ?? [])].map((f) => ({ path: f.path, size: f.size, mode: f.mode & 0o7777, sha256: f.sha256 })).sort((a, b) => byteOrder(a.path, b.path));
      if (JSON.stringify(want) !== JSON.stringify(got)) {
        return `manifest differs from the folder's subtree:\n      want ${describeManifest(want)}\n      got  ${describeManifest(got)}`;
      }
      for (const n of this.subtree(folder.id)) n.state = 'committed';
    } else {
      switch (out.code) {
        case 'OPEN_HANDLES':
          // The release may reach the file system up to `slack` after close(2) returned (a mount's RELEASE).
          if (c.allFree !== null && c.allFree.hi + slackMs <= timerEarliest) return 'OPEN_HANDLES although every writer closed before the seal timed out';
          break;
        case 'STORAGE_ERROR':
          if (!c.sawStoreDown) return 'STORAGE_ERROR although the store never failed';
          break;
        default:
          return `nothing in the model explains this failure (${out.code ?? 'no code'}: ${out.message ?? 'no message'})`;
      }
      folder.state = 'staging';
    }
    this.commits.delete(cid);
    return null;
  }

  setStore(up: boolean): void {
    this.storeUp = up;
    for (const c of this.commits.values()) {
      if (up) c.sawStoreUp = true;
      else c.sawStoreDown = true;
    }
  }

  pathOfCommit(cid: number): string {
    const c = this.commits.get(cid);
    return c && this.nodes.has(c.folder) ? this.pathOf(c.folder) : '?';
  }

  /** In-flight commits in id order. */
  inFlight(): ModelCommit[] {
    return [...this.commits.values()].sort((a, b) => a.id - b.id);
  }

  openHandles(): ModelHandle[] {
    return [...this.handles.values()].sort((a, b) => a.id - b.id);
  }
}

export type OpenFlags = 'r' | 'rw' | 'w' | 'wt' | 'a';

/**
 * The root is never removed or moved by a generated command: the answer differs by layer
 * (the docs give EXDEV; the kernel EBUSY for a mount point), and on a mount the model's
 * root is a plain folder.
 */
function noRoot(p: string, op: string): void {
  if (p === '/') throw new Error(`model: ${op} of the root is not generated`);
}

function resize(b: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size);
  b.copy(out, 0, 0, Math.min(size, b.length));
  return out;
}

function describeManifest(files: ManifestEntry[]): string {
  return files.length ? files.map((f) => `${JSON.stringify(f.path)}:${f.size}B:${f.mode.toString(8)}:${f.sha256.slice(0, 8)}`).join(', ') : '(no files)';
}
