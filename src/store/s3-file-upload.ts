/**
 * Upload of a file while it is written (ObjectStore.startFileUpload) on S3: a multipart
 * upload to a temporary key of the store's work area, whose parts go as soon as the
 * file's final bytes cover them; at `publish`, the rest is sent, the upload completed,
 * and the object copied on the server to its real key (a content address, known only
 * once the file is closed and hashed), then the temporary object deleted.
 *
 * Owns: `<prefix>.roset/partial/<owner>/<uuid>`, one per upload, and its multipart
 * upload (tagged with the owner like every multipart upload of the store).
 *
 * Invariants:
 * - Only bytes the caller declared final (`grow`) are read, each part once; the object
 *   under the caller's key appears only through the copy at `publish`, whole.
 * - Part buffers come from the store's shared budget, so memory stays bounded by the
 *   store's concurrency × part size across every upload at once, and at most
 *   `concurrency` parts of this upload are in flight.
 * - Every part is the store's part size except the last (S3 allows 10,000 parts): past
 *   PARTS_AT_BASE_SIZE parts, parts are GROWTH times larger, so a file of up to
 *   (5,000 + 5,000 × GROWTH) parts' worth of bytes fits (1.4 TiB at 32 MiB).
 * - A failure stops the upload; `publish` throws it and `abort` removes the temporary
 *   upload or object. A crash leaves an upload its owner's start-up sweep aborts, or a
 *   temporary object the same sweep deletes (`abortOwnUploads`).
 * - The server-side copy costs no bytes on the wire; on Ceph RGW it shares the data
 *   (a 1 GiB copy takes about 0.1 s), elsewhere it is the server's own copy.
 */
import { StoreError } from '../errors/index.js';
import type { FileUpload, FileUploadOptions, PartResult, PutResult, RequestRunner } from './types.js';
import { runOnce } from './types.js';
import * as fs from 'node:fs/promises';

const MAX_PARTS = 10_000;
const PARTS_AT_BASE_SIZE = 5_000;
const GROWTH = 8;

/** What the upload needs of the S3 store: requests on its work-area keys, and its part buffers. */
export interface PartSink {
  readonly partSize: number;
  readonly concurrency: number;
  /** A fresh temporary key in the work area, owned by this store's upload owner. */
  tempKey(): string;
  create(tempKey: string): Promise<string>;
  part(tempKey: string, uploadId: string, partNumber: number, body: Buffer): Promise<PartResult>;
  complete(tempKey: string, uploadId: string, parts: PartResult[]): Promise<void>;
  abort(tempKey: string, uploadId: string): Promise<void>;
  /** Server-side copy of the temporary object, `size` bytes, to the caller's key. */
  copy(tempKey: string, key: string, size: number): Promise<PutResult>;
  remove(tempKey: string): Promise<void>;
  /** A part buffer of at least `length` bytes from the shared budget; `give` returns it. */
  buffer(length: number): Promise<{ buf: Buffer; give: () => void }>;
}

/** Byte range of part `index` (0-based): see the header for the sizes. */
export function partRange(index: number, partSize: number): { offset: number; length: number } {
  if (index < PARTS_AT_BASE_SIZE) return { offset: index * partSize, length: partSize };
  const big = partSize * GROWTH;
  return { offset: PARTS_AT_BASE_SIZE * partSize + (index - PARTS_AT_BASE_SIZE) * big, length: big };
}

export class S3FileUpload implements FileUpload {
  private readonly key: string;
  private readonly run: RequestRunner;
  private uploadId: Promise<string> | null = null;
  private readonly parts: PartResult[] = [];
  /** Bytes the caller declared final; the whole file once `publish` set `size`. */
  private available = 0;
  private size: number | null = null;
  private next = 0;
  private readonly inflight = new Set<Promise<void>>();
  private failure: unknown;
  private stopped = false;
  private fh: Promise<fs.FileHandle> | null = null;
  sentBytes = 0;

  constructor(private readonly sink: PartSink, private readonly filePath: string, private readonly options: FileUploadOptions = {}) {
    this.key = sink.tempKey();
    this.run = options.request ?? runOnce;
  }

  grow(bytes: number): void {
    if (this.stopped || this.size !== null) return;
    this.available = Math.max(this.available, bytes);
    this.pump();
  }

  async publish(key: string, size: number, options: { beforeComplete?: () => void | Promise<void> } = {}): Promise<PutResult> {
    if (this.stopped) throw new StoreError('STORAGE_ERROR', `Upload of ${key} was aborted`, { key });
    this.size = size;
    this.available = size;
    try {
      if (this.next === 0 && size === 0) throw new StoreError('BAD_REQUEST', 'an empty file is not uploaded in parts', { key });
      this.pump();
      while (this.inflight.size > 0) await Promise.all([...this.inflight]);
      if (this.failure !== undefined) throw this.failure;
      if (this.sentBytes !== size) throw new StoreError('STORAGE_ERROR', `Upload of ${key} sent ${this.sentBytes} of ${size} bytes`, { key });
      await options.beforeComplete?.();
      const uploadId = await this.uploadId!;
      const parts = [...this.parts];
      await this.run('complete-multipart', this.key, () => this.sink.complete(this.key, uploadId, parts));
      this.uploadId = null;
      const result = await this.run('copy', key, () => this.sink.copy(this.key, key, size));
      this.stopped = true;
      // Left behind only if this fails: the owner's start-up sweep deletes it then.
      await this.run('delete', this.key, () => this.sink.remove(this.key)).catch(() => undefined);
      return result;
    } catch (err) {
      await this.abort();
      throw err;
    } finally {
      await this.closeFile();
    }
  }

  async abort(): Promise<void> {
    this.stopped = true;
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
    const pending = this.uploadId;
    this.uploadId = null;
    if (pending) {
      const uploadId = await pending.catch(() => null);
      if (uploadId) await this.run('abort-multipart', this.key, () => this.sink.abort(this.key, uploadId)).catch(() => undefined);
    } else {
      // Completed (publish failed at the copy): the temporary object goes.
      await this.run('delete', this.key, () => this.sink.remove(this.key)).catch(() => undefined);
    }
    await this.closeFile();
  }

  /** Starts every part the final bytes cover, up to `concurrency` at once. */
  private pump(): void {
    while (!this.stopped && this.failure === undefined && this.inflight.size < this.sink.concurrency) {
      const { offset, length } = partRange(this.next, this.sink.partSize);
      const end = this.size ?? Number.MAX_SAFE_INTEGER;
      if (offset >= end) return;
      const len = Math.min(length, end - offset);
      // A part ends where it should, or at the end of the file once its size is known.
      if (offset + len > this.available || (this.size === null && len < length)) return;
      if (this.next >= MAX_PARTS) {
        this.failure = new StoreError('FILE_TOO_LARGE', `File too large for a multipart upload (${MAX_PARTS} parts)`, { key: this.key });
        return;
      }
      const index = this.next++;
      const job: Promise<void> = this.send(index, offset, len)
        .catch((err: unknown) => { this.failure ??= err; })
        .finally(() => {
          this.inflight.delete(job);
          this.pump();
        });
      this.inflight.add(job);
    }
  }

  private async send(index: number, offset: number, length: number): Promise<void> {
    this.options.beforePart?.();
    this.uploadId ??= this.run('create-multipart', this.key, () => this.sink.create(this.key));
    const uploadId = await this.uploadId;
    const { buf, give } = await this.sink.buffer(length);
    try {
      const body = buf.subarray(0, length);
      const fh = await (this.fh ??= fs.open(this.filePath, 'r'));
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(body, done, length - done, offset + done);
        if (bytesRead === 0) throw new StoreError('FILE_CHANGED', `File shrank while uploading it (short read at ${offset + done})`, { key: this.key });
        done += bytesRead;
      }
      if (this.stopped) return;
      this.parts[index] = await this.run('upload-part', this.key, () => this.sink.part(this.key, uploadId, index + 1, body));
      this.sentBytes += length;
    } finally {
      give();
    }
  }

  private async closeFile(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    if (fh) await (await fh.catch(() => null))?.close().catch(() => undefined);
  }
}
