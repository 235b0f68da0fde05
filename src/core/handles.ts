/**
 * Open file handles and the waiting half of the write barrier.
 *
 * Owns: the table of open handles (fh → node, path, fd, mode) and the wait for
 * writable handles under a folder to close.
 *
 * Invariants:
 * - A writable handle is registered *before* the barrier is checked for it (and a
 *   create registers a placeholder before the node exists), so a seal that starts at
 *   any moment either sees the handle or the handle's check sees the seal.
 * - Paths of open handles follow renames (`renamed`).
 */
import { createHash, type Hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { isWithin } from '../meta/paths.js';

export interface Handle {
  fh: number;
  nodeId: string | null;
  path: string;
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

  writersUnder(folder: string): Handle[] {
    return this.all().filter((h) => h.writable && isWithin(h.path, folder));
  }

  openFor(nodeId: string): Handle[] {
    return this.all().filter((h) => h.nodeId === nodeId);
  }

  renamed(from: string, to: string): void {
    for (const h of this.handles.values()) {
      if (isWithin(h.path, from)) h.path = to + h.path.slice(from.length);
    }
  }

  /** Resolves once no writable handle is open under `folder`; false on timeout. */
  waitForWriters(folder: string, timeoutMs: number): Promise<boolean> {
    if (this.writersUnder(folder).length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onClose = (): void => {
        if (this.writersUnder(folder).length === 0) done(true);
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
