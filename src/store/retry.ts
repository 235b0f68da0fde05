/**
 * Bounded retries for any ObjectStore: the one retry layer between Roset and storage.
 *
 * Owns: which failures are transient, the backoff (exponential, full jitter), the
 * per-operation attempt limit and total deadline, and the error an exhausted operation
 * ends with.
 *
 * Invariants:
 * - Only transient failures are retried: network errors (no HTTP status), 5xx, 429,
 *   and S3 throttling codes. Preconditions, missing objects, bad requests and a full
 *   disk are answers, not accidents, and surface at once.
 * - An operation never runs past its deadline by more than one attempt, and an
 *   exhausted one fails with STORAGE_ERROR naming the operation, the key, the number
 *   of attempts and the last error. Nothing is swallowed.
 * - A retried conditional write can lose against its own earlier attempt whose answer
 *   was lost (412 for bytes it wrote itself); callers that care (manifests, objects)
 *   compare content, since only they know what "the same" means.
 */
import { StoreError } from '../errors/index.js';
import { sleep } from '../util/sleep.js';
import type {
  ByteRange, ListPage, MultipartUploadInfo, ObjectInfo, ObjectStore, PartResult, PutFileOptions, PutResult, StoreCapabilities,
} from './types.js';

export interface RetryPolicy {
  /** Attempts per operation, the first included. */
  attempts: number;
  /** Total time an operation may take across attempts. */
  deadlineMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { attempts: 8, deadlineMs: 120_000, baseDelayMs: 100, maxDelayMs: 5_000 };

const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestTimeout', 'RequestTimeTooSkewed', 'InternalError', 'ServiceUnavailable']);

export function isTransient(err: unknown): boolean {
  if (!(err instanceof StoreError) || err.rosetCode !== 'STORAGE_ERROR') return false;
  const status = err.details.status as number | undefined;
  const s3Code = err.details.s3Code as string | undefined;
  if (s3Code && THROTTLING.has(s3Code)) return true;
  if (status === undefined) return true;
  return status >= 500 || status === 429;
}

export class RetryingStore implements ObjectStore {
  readonly description: string;

  constructor(readonly inner: ObjectStore, private readonly policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    private readonly onRetry?: (info: { op: string; key: string; attempt: number; delayMs: number; error: string }) => void) {
    this.description = inner.description;
  }

  get capabilities(): StoreCapabilities {
    return this.inner.capabilities;
  }

  private async retry<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!isTransient(err)) throw err;
        const elapsed = Date.now() - started;
        const cap = Math.min(this.policy.maxDelayMs, this.policy.baseDelayMs * 2 ** (attempt - 1));
        const delayMs = Math.random() * cap;
        if (attempt >= this.policy.attempts || elapsed + delayMs >= this.policy.deadlineMs) {
          const e = err as StoreError;
          throw new StoreError('STORAGE_ERROR',
            `${op} of ${key || '(prefix)'} failed after ${attempt} attempt(s) in ${(elapsed / 1000).toFixed(1)} s: ${e.message}`,
            { ...e.details, key, op, attempts: attempt }, { cause: err });
        }
        this.onRetry?.({ op, key, attempt, delayMs: Math.round(delayMs), error: (err as Error).message });
        await sleep(delayMs);
      }
    }
  }

  put(key: string, body: Buffer | string): Promise<PutResult> { return this.retry('put', key, () => this.inner.put(key, body)); }
  putIfAbsent(key: string, body: Buffer | string): Promise<PutResult> { return this.retry('put-if-absent', key, () => this.inner.putIfAbsent(key, body)); }
  putIfMatch(key: string, body: Buffer | string, etag: string): Promise<PutResult> { return this.retry('put-if-match', key, () => this.inner.putIfMatch(key, body, etag)); }
  putFile(key: string, filePath: string, options?: PutFileOptions): Promise<PutResult> { return this.retry('upload', key, () => this.inner.putFile(key, filePath, options)); }
  get(key: string, range?: ByteRange): Promise<Buffer> { return this.retry('get', key, () => this.inner.get(key, range)); }
  head(key: string): Promise<ObjectInfo | null> { return this.retry('head', key, () => this.inner.head(key)); }
  list(prefix: string, options?: { cursor?: string; limit?: number }): Promise<ListPage> { return this.retry('list', prefix, () => this.inner.list(prefix, options)); }
  delete(key: string): Promise<void> { return this.retry('delete', key, () => this.inner.delete(key)); }
  createMultipartUpload(key: string): Promise<string> { return this.retry('create-multipart', key, () => this.inner.createMultipartUpload(key)); }
  uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<PartResult> {
    return this.retry('upload-part', key, () => this.inner.uploadPart(key, uploadId, partNumber, body));
  }
  completeMultipartUpload(key: string, uploadId: string, parts: PartResult[], options?: { ifAbsent?: boolean }): Promise<PutResult> {
    return this.retry('complete-multipart', key, () => this.inner.completeMultipartUpload(key, uploadId, parts, options));
  }
  abortMultipartUpload(key: string, uploadId: string): Promise<void> { return this.retry('abort-multipart', key, () => this.inner.abortMultipartUpload(key, uploadId)); }
  listMultipartUploads(prefix: string): Promise<MultipartUploadInfo[]> { return this.retry('list-multipart', prefix, () => this.inner.listMultipartUploads(prefix)); }
  close(): Promise<void> { return this.inner.close(); }
}
