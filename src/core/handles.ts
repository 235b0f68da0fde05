/**
 * Open file handles and the waiting half of the write barrier.
 *
 * Owns: the table of open handles (fh → node id, fd, mode) and the wait for writers
 * inside a folder to finish.
 *
 * Invariants:
 * - A writer is registered *before* the barrier is checked for it (a create registers
 *   a placeholder under its parent before the node exists; a truncate or utimens
 *   without a handle registers for as long as it runs), so a seal that starts at any
 *   moment either sees the writer or the writer's check sees the seal.
 * - Handles are keyed by node id, never by path: a rename changes nothing here.
 */
import { createHash, type Hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Timespec } from '../meta/types.js';
import type { RangeGate } from './object-cache.js';

export interface Handle {
  fh: number;
  /** The node; null for a create whose node does not exist yet. */
  nodeId: string | null;
  /** The folder a create is creating in (set while `nodeId` is null). */
  parentId: string | null;
  /** -1 for a placeholder (a create not done yet, or a path operation on the bytes). */
  fd: number;
  writable: boolean;
  append: boolean;
  /** Bytes were written through this handle since it was opened. */
  dirty: boolean;
  /**
   * sha256 of the bytes written through this handle, kept while they came in order
   * from byte 0 and no other handle could change them (then the upload need not read
   * the file again); null or absent once that is not so.
   */
  sha?: WriteHash | null;
  /**
   * Set when the file was unlinked while this handle was open: what stat needs of the
   * node, which is gone from the namespace. The handle keeps working on its fd.
   */
  orphan?: { mode: number; uid: number; gid: number; atime: Timespec; forgetOnClose?: boolean };
  /**
   * A read-only handle on a committed object still downloading (`streamingReads`): its
   * fd is on the partial file, and a byte may be read only after `gate.wait` resolved
   * for it. Cleared once the download completed.
   */
  gate?: RangeGate | null;
}

/**
 * `running`: hashed here, `bytes` so far (the fuse-native binding writes through the
 * core); `taken`: the digest of the first `bytes` bytes, reported by a binding that
 * writes in C (native).
 */
export type WriteHash = { kind: 'running'; hash: Hash; bytes: number } | { kind: 'taken'; digest: string; bytes: number };

export const newWriteHash = (): WriteHash => ({ kind: 'running', hash: createHash('sha256'), bytes: 0 });

export class HandleTable {
  private readonly handles = new Map<number, Handle>();
  private readonly events = new EventEmitter();
  private nextFh = 1;

  constructor() {
    this.events.setMaxListeners(0);
  }

  add(h: Omit<Handle, 'fh'>): Handle {
    const handle: Handle = { ...h, fh: this.nextFh++ };
    this.handles.set(handle.fh, handle);
    return handle;
  }

  get(fh: number): Handle | undefined {
    return this.handles.get(fh);
  }

  remove(fh: number): void {
    const h = this.handles.get(fh);
    if (!h) return;
    this.handles.delete(fh);
    if (h.writable) this.events.emit('writer-closed');
  }

  all(): Handle[] {
    return [...this.handles.values()];
  }

  /** Writers on the nodes in `ids`, or creating into one of them. */
  writersIn(ids: ReadonlySet<string>): Handle[] {
    return this.all().filter((h) => h.writable && (h.nodeId !== null ? ids.has(h.nodeId) : h.parentId !== null && ids.has(h.parentId)));
  }

  openFor(nodeId: string): Handle[] {
    return this.all().filter((h) => h.nodeId === nodeId);
  }

  /**
   * Resolves once no writer is left on the nodes in `ids` (a folder and everything in
   * it); false on timeout. Under the barrier no writer can join, so the set is fixed.
   */
  waitForWriters(ids: ReadonlySet<string>, timeoutMs: number): Promise<boolean> {
    if (this.writersIn(ids).length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onClose = (): void => {
        if (this.writersIn(ids).length === 0) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        this.events.off('writer-closed', onClose);
        resolve(ok);
      };
      this.events.on('writer-closed', onClose);
    });
  }
}
