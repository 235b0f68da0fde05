/**
 * Upload of a large staged file while it is still being written: its parts go to the
 * store as soon as the bytes they cover are final, so that the file is in the bucket
 * soon after its close instead of one upload's time later (docs/SEMANTICS.md, "Upload
 * while writing").
 *
 * Owns: for each writable handle that writes its file in order from byte 0, alone
 * (its in-order SHA-256 runs: `Handle.sha`), the store's FileUpload of the file and its
 * block hashes, taken as the final prefix grows; once that handle closed with the
 * digest of the whole file, the same per node, until the uploader takes it.
 *
 * Invariants:
 * - The prefix a handle reports is final: the in-order hash that vouches for it ends
 *   at the first write into it (and then the close brings no digest), and every other
 *   change of the file (another writable open, a truncate, an unlink) reaches `drop`
 *   through the uploader's `touch` or `bump`. Either way the upload is aborted, so its
 *   parts never become an object.
 * - Only the uploader publishes one (`take`), under the SHA-256 the hash gave for
 *   exactly the bytes sent, after its pin, as for any upload; nothing is visible under
 *   an object key before that (the store keeps the parts under a temporary key).
 * - A file whose prefix never reaches START_BYTES uploads at its close as before: a
 *   multipart upload and a server-side copy cost more than they save on it.
 * - Memory: the store's shared part budget; the block hashes are read back from the
 *   staged file on the hash pool, off the main thread.
 * - An abort never throws (what is left goes to the owner's start-up sweep); a failed
 *   early upload costs only the upload at close the file would have had anyway.
 */
import type { FileUpload, ObjectStore } from '../store/types.js';
import { GrowingBlockHashes, type BlockHashes } from '../util/block-hash.js';
import type { Logger } from 'pino';

/** The final prefix past which a file starts uploading while written. */
export const START_BYTES = 64 << 20;

interface Writing {
  nodeId: string;
  upload: FileUpload;
  blocks: GrowingBlockHashes;
}

/** A file whose writer closed with the digest of all of it: ready to publish. */
export interface ClosedEarlyUpload {
  sha256: string;
  size: number;
  upload: FileUpload;
  /** Every block hash of the file (waits for the last ones). */
  blocks(): Promise<BlockHashes>;
}

export class EarlyUploads {
  private readonly writing = new Map<number, Writing>();
  private readonly closed = new Map<string, ClosedEarlyUpload>();

  constructor(private readonly store: ObjectStore, private readonly log: Logger, private readonly fileOf: (nodeId: string) => string) {}

  /** The first `bytes` bytes written through `fh`, in order and alone, are final. */
  grew(fh: number, nodeId: string, bytes: number): void {
    let w = this.writing.get(fh);
    if (!w) {
      if (bytes < START_BYTES || !this.store.capabilities.multipart) return;
      const file = this.fileOf(nodeId);
      w = { nodeId, upload: this.store.startFileUpload(file), blocks: new GrowingBlockHashes(file) };
      this.writing.set(fh, w);
      this.log.debug({ nodeId, bytes }, 'uploading a file while it is written');
    }
    w.upload.grow(bytes);
    w.blocks.grew(bytes);
  }

  /**
   * The handle closed: with the digest of the whole file (`sha256` of `size` bytes) its
   * upload waits for the uploader; without one (a rewrite, a hole) it is aborted.
   */
  writerClosed(fh: number, sha256: string | null, size: number): void {
    const w = this.writing.get(fh);
    if (!w) return;
    this.writing.delete(fh);
    if (!sha256) {
      this.abort(w.nodeId, w.upload, 'its bytes were not written once, in order');
      return;
    }
    this.abortClosed(w.nodeId, 'a newer version closed');
    w.upload.grow(size);
    w.blocks.grew(size);
    const blocks = w.blocks;
    this.closed.set(w.nodeId, { sha256, size, upload: w.upload, blocks: () => blocks.finish(size) });
  }

  /** The node's bytes may change, or are gone: every upload of it stops. */
  drop(nodeId: string): void {
    for (const [fh, w] of this.writing) {
      if (w.nodeId !== nodeId) continue;
      this.writing.delete(fh);
      this.abort(nodeId, w.upload, 'the file changed');
    }
    this.abortClosed(nodeId, 'the file changed');
  }

  /** The node's upload, if it has one of exactly these bytes; the caller publishes or aborts it. */
  take(nodeId: string, sha256: string, size: number): ClosedEarlyUpload | null {
    const c = this.closed.get(nodeId);
    if (!c) return null;
    this.closed.delete(nodeId);
    if (c.sha256 === sha256 && c.size === size) return c;
    this.abort(nodeId, c.upload, 'it does not match the file any more');
    return null;
  }

  /** Stops every upload (the daemon is stopping). */
  async close(): Promise<void> {
    const all = [...[...this.writing.values()].map((w) => w.upload), ...[...this.closed.values()].map((c) => c.upload)];
    this.writing.clear();
    this.closed.clear();
    await Promise.all(all.map((u) => u.abort()));
  }

  private abortClosed(nodeId: string, why: string): void {
    const c = this.closed.get(nodeId);
    if (!c) return;
    this.closed.delete(nodeId);
    this.abort(nodeId, c.upload, why);
  }

  private abort(nodeId: string, upload: FileUpload, why: string): void {
    this.log.debug({ nodeId, sent: upload.sentBytes, why }, 'upload while writing stopped');
    void upload.abort();
  }
}
