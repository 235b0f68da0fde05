/**
 * Bounded retries for any ObjectStore: the one retry layer between Roset and storage.
 *
 * Owns: which failures are transient, the backoff (exponential, full jitter), the
 * per-request attempt limit and total deadline, and the error an exhausted request
 * ends with.
 *
 * Invariants:
 * - This is the only layer that retries. Stores never retry by themselves (the S3
 *   client makes one attempt per request), so attempts never multiply.
 * - Retries are per request. A single-request operation (put, get, head, one part) is
 *   sent again as it is; a multi-request one (`putFile`, `abortOwnUploads`) is given a
 *   request runner and sends each request through it, so a failed part is sent again
 *   alone, never the whole file.
 * - Only transient failures are retried: network errors (no HTTP status), 5xx, 429, S3
 *   throttling codes, and failures the backend marks `retryable` (a conditional write
 *   answered 409 ConditionalRequestConflict did not take effect). Preconditions,
 *   missing objects, bad requests, a full disk and a file that changed under its upload
 *   (FILE_CHANGED, or any error a caller's hook threw) are answers, not accidents, and
 *   surface at once, after one attempt.
 * - A request never runs past its deadline by more than one attempt, and an exhausted
 *   one fails with STORAGE_ERROR naming the request, the key, the number of attempts
 *   and the last error. Nothing is swallowed.
 * - A conditional write that loses (412) after a transient failure of its own earlier
 *   attempt is checked against the stored bytes: that attempt may have landed with its
 *   answer lost, and if the object holds exactly these bytes the write is reported as
 *   won. Other callers that care (manifests, objects) compare content themselves.
 */
import { StoreError } from '../errors/index.js';
import { sleep } from '../util/sleep.js';
import { storeOperation, storeRequestsTotal, storeRetriesTotal } from '../metrics/index.js';
import type {
  ByteRange, FileUpload, FileUploadOptions, ListPage, MultipartUploadInfo, ObjectInfo, ObjectStore, PartResult, PutFileOptions, PutResult, RequestRunner, StoreCapabilities,
} from './types.js';

export interface RetryPolicy {
  /** Attempts per request, the first included. */
  attempts: number;
  /** Total time a request may take across attempts. */
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
  if (err.details.retryable === true) return true;
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

  /** Sends each request of a multi-request operation through this layer. */
  private readonly request: RequestRunner = (op, key, fn) => this.retry(op, key, fn);

  /**
   * Runs `fn` until it succeeds, fails with an answer, or runs out of attempts or time.
   * `landed`, for conditional writes, turns a loss after a failed attempt into the win
   * of that earlier attempt when the stored bytes prove it.
   */
  private async retry<T>(op: string, key: string, fn: () => Promise<T>, landed?: (err: unknown) => Promise<T | null>): Promise<T> {
    const started = Date.now();
    const operation = storeOperation(op);
    for (let attempt = 1; ; attempt++) {
      try {
        const v = await fn();
        storeRequestsTotal.inc({ operation, outcome: 'ok' });
        return v;
      } catch (err) {
        storeRequestsTotal.inc({ operation, outcome: 'error' });
        if (!isTransient(err)) {
          const won = attempt > 1 && landed ? await landed(err) : null;
          if (won !== null) return won;
          throw err;
        }
        const elapsed = Date.now() - started;
        const cap = Math.min(this.policy.maxDelayMs, this.policy.baseDelayMs * 2 ** (attempt - 1));
        const delayMs = Math.random() * cap;
        if (attempt >= this.policy.attempts || elapsed + delayMs >= this.policy.deadlineMs) {
          const e = err as StoreError;
          throw new StoreError('STORAGE_ERROR',
            `${op} of ${key || '(prefix)'} failed after ${attempt} attempt(s) in ${(elapsed / 1000).toFixed(1)} s: ${e.message}`,
            { ...e.details, key, op, attempts: attempt }, { cause: err });
        }
        storeRetriesTotal.inc({ operation });
        this.onRetry?.({ op, key, attempt, delayMs: Math.round(delayMs), error: (err as Error).message });
        await sleep(delayMs);
      }
    }
  }

  /**
   * After a lost answer, a retried conditional write can lose (412) against the object
   * its own earlier attempt wrote. If the object holds exactly `body`, it is ours.
   */
  private ownWriteLanded(key: string, body: Buffer | string): (err: unknown) => Promise<PutResult | null> {
    return async (err) => {
      if (!(err instanceof StoreError) || err.rosetCode !== 'PRECONDITION_FAILED') return null;
      try {
        const before = await this.inner.head(key);
        if (!before) return null;
        const current = await this.inner.get(key);
        const after = await this.inner.head(key);
        if (after?.etag !== before.etag) return null;
        return current.equals(typeof body === 'string' ? Buffer.from(body) : body) ? { etag: before.etag } : null;
      } catch {
        return null;
      }
    };
  }

  put(key: string, body: Buffer | string): Promise<PutResult> { return this.retry('put', key, () => this.inner.put(key, body)); }
  putIfAbsent(key: string, body: Buffer | string): Promise<PutResult> {
    return this.retry('put-if-absent', key, () => this.inner.putIfAbsent(key, body), this.ownWriteLanded(key, body));
  }
  putIfMatch(key: string, body: Buffer | string, etag: string): Promise<PutResult> {
    return this.retry('put-if-match', key, () => this.inner.putIfMatch(key, body, etag), this.ownWriteLanded(key, body));
  }
  /** Not retried as a whole: each of its requests (the PUT, or each part) is. */
  putFile(key: string, filePath: string, options: PutFileOptions = {}): Promise<PutResult> {
    return this.inner.putFile(key, filePath, { ...options, request: this.request });
  }
  /** Not retried as a whole: each of its requests (each part, the completion, the copy) is. */
  startFileUpload(filePath: string, options: FileUploadOptions = {}): FileUpload {
    return this.inner.startFileUpload(filePath, { ...options, request: this.request });
  }
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
  /** Not retried as a whole: each of its requests (each list page, each abort) is. */
  abortOwnUploads(): Promise<MultipartUploadInfo[]> { return this.inner.abortOwnUploads({ request: this.request }); }
  close(): Promise<void> { return this.inner.close(); }
}
