/**
 * The object-store interface that every backend (local directory, S3) implements.
 *
 * Owns: the contract of put / put-if-absent / put-if-match / ranged get / head / list /
 * delete and multipart uploads. Backends are interchangeable: the store conformance
 * suite (test/store/conformance.ts) runs the same assertions against each.
 *
 * Invariants:
 * - A put is atomic: a reader sees the old object, the new one, or none; never a part.
 * - `putIfAbsent` and `putIfMatch` throw StoreError('PRECONDITION_FAILED') when they
 *   lose; exactly one of N concurrent `putIfAbsent` calls on a key wins, provided that
 *   `capabilities.conditionalWrites` is true.
 * - ETags are returned unquoted.
 * - `get` of a missing key throws StoreError('OBJECT_NOT_FOUND'); `head` returns null.
 * - A store never retries by itself. A multi-request operation (`putFile`,
 *   `abortOwnUploads`) sends each of its requests through the `request` runner it is
 *   given, so the retry layer above (src/store/retry.ts) sends a failed request (one
 *   part) again, never the whole operation.
 * - An error thrown by a caller's hook (`beforePart`, `beforeComplete`) comes back as it
 *   is: never wrapped into a storage error, so never retried.
 * - A store opened with an upload owner (the agent id) tags every multipart upload it
 *   starts with that owner before sending any part, and `abortOwnUploads` aborts only
 *   uploads with that tag: never another owner's, never an untagged one.
 */
import { StoreError } from '../errors/index.js';

export interface ObjectInfo {
  key: string;
  size: number;
  etag: string;
  lastModified: Date;
}

export interface PutResult {
  etag: string;
}

export interface ByteRange {
  /** First byte, inclusive. */
  offset: number;
  /** Number of bytes; the result is shorter only at the end of the object. */
  length: number;
  /**
   * A buffer of at least `length` bytes the store may fill and return a view of,
   * instead of allocating one: a reader of many ranges reuses a few buffers and leaves
   * no garbage per range. Its bytes are undefined until the result arrives.
   */
  into?: Buffer;
}

export interface ListPage {
  objects: ObjectInfo[];
  /** Pass back to `list` for the next page; absent on the last page. */
  cursor?: string;
}

export interface MultipartUploadInfo {
  key: string;
  uploadId: string;
  initiated: Date;
  /** The owner (agent id) of the store that started it; null when untagged. */
  owner: string | null;
}

/**
 * Runs one request of a multi-request operation, named by `op` (e.g. `upload-part`)
 * and the key it is about. The retry layer passes one that retries the request.
 */
export type RequestRunner = <T>(op: string, key: string, fn: () => Promise<T>) => Promise<T>;

/** Each request once: what a store uses when no retry layer gave it a runner. */
export const runOnce: RequestRunner = (_op, _key, fn) => fn();

/** Checks an upload owner, which becomes part of a key: 1-128 of [A-Za-z0-9._-]. */
export function checkUploadOwner(owner: string | undefined): string | undefined {
  if (owner !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(owner)) {
    throw new StoreError('BAD_REQUEST', `Invalid upload owner ${JSON.stringify(owner)}: 1-128 characters of [A-Za-z0-9._-]`);
  }
  return owner;
}

export interface PartResult {
  partNumber: number;
  etag: string;
}

export interface StoreCapabilities {
  /** `If-None-Match: *` and `If-Match` are enforced by the backend itself. */
  conditionalWrites: boolean;
  /** Multipart uploads can be listed and aborted. */
  multipart: boolean;
}

export interface PutFileOptions {
  /** Bytes per part for multipart uploads. */
  partSize?: number;
  /** Parts in flight at once. */
  concurrency?: number;
  /** Fail with PRECONDITION_FAILED instead of overwriting an existing key. */
  ifAbsent?: boolean;
  /** Called with the number of bytes uploaded so far. */
  onProgress?: (uploadedBytes: number) => void;
  /**
   * Called after every byte was sent and before the object is published (the single
   * PUT, or the multipart completion). Throwing aborts the upload: nothing is published.
   */
  beforeComplete?: () => void | Promise<void>;
  /**
   * Called before each part is read and sent (multipart), so an upload that no longer
   * matters (its file changed or was deleted) stops early. Throwing aborts the upload.
   */
  beforePart?: () => void;
  /**
   * The file's sha256 (hex), when the caller knows it (the content address). A store
   * whose server verifies a SHA-256 checksum sends it with a single PUT instead of
   * hashing the bytes again; the server then refuses bytes that do not match it.
   */
  sha256?: string;
  /** Runs each request of the upload (default `runOnce`); set by the retry layer. */
  request?: RequestRunner;
}

/**
 * A file uploaded while it is still being written (`ObjectStore.startFileUpload`): its
 * parts go as soon as the bytes they cover are final, and the object is published
 * under its key, which is not known yet (a content address), only at `publish`.
 *
 * Invariants: nothing is ever visible under a caller's key before `publish`, and then
 * only every byte of [0, size) of the file; `grow` promises that the first `bytes`
 * bytes of the file will not change (the caller aborts otherwise); after `abort`, or a
 * failed `publish`, nothing of the upload is left but what its owner's start-up sweep
 * (`abortOwnUploads`) removes.
 */
export interface FileUpload {
  /** The first `bytes` bytes of the file are final: the parts they cover may go now. */
  grow(bytes: number): void;
  /**
   * The file is whole at `size` bytes: sends the rest and publishes every byte under
   * `key`. `beforeComplete` throwing aborts (nothing published).
   */
  publish(key: string, size: number, options?: { beforeComplete?: () => void | Promise<void> }): Promise<PutResult>;
  /** Stops, and removes what was sent. Never throws: a leftover goes to the owner's sweep. */
  abort(): Promise<void>;
  /** Bytes of the file sent so far, in parts the store accepted. */
  readonly sentBytes: number;
}

export interface FileUploadOptions {
  /** Called before each part is read; throwing stops the upload (`publish` then throws it). */
  beforePart?: () => void;
  /** The retry layer's runner for each request (see RequestRunner). */
  request?: RequestRunner;
}

export interface ObjectStore {
  /** Human-readable location with no credentials in it, e.g. `file:///var/lib/roset/store`. */
  readonly description: string;
  readonly capabilities: StoreCapabilities;

  put(key: string, body: Buffer | string): Promise<PutResult>;
  putIfAbsent(key: string, body: Buffer | string): Promise<PutResult>;
  putIfMatch(key: string, body: Buffer | string, etag: string): Promise<PutResult>;
  /** Upload a local file, using multipart above `partSize`, with bounded memory. */
  putFile(key: string, filePath: string, options?: PutFileOptions): Promise<PutResult>;

  /**
   * Starts uploading a file that is still being written (see FileUpload). A store that
   * cannot send parts before it knows the key sends everything at `publish`.
   */
  startFileUpload(filePath: string, options?: FileUploadOptions): FileUpload;

  get(key: string, range?: ByteRange): Promise<Buffer>;
  head(key: string): Promise<ObjectInfo | null>;
  /** One page of keys under `prefix`, in lexicographic order. */
  list(prefix: string, options?: { cursor?: string; limit?: number }): Promise<ListPage>;
  delete(key: string): Promise<void>;

  createMultipartUpload(key: string): Promise<string>;
  uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<PartResult>;
  completeMultipartUpload(key: string, uploadId: string, parts: PartResult[], options?: { ifAbsent?: boolean }): Promise<PutResult>;
  abortMultipartUpload(key: string, uploadId: string): Promise<void>;
  listMultipartUploads(prefix: string): Promise<MultipartUploadInfo[]>;
  /**
   * Aborts every unfinished multipart upload tagged with this store's upload owner, and
   * forgets their tags; returns them. Another owner's uploads and untagged ones are
   * left alone; without an owner nothing is aborted.
   */
  abortOwnUploads(options?: { request?: RequestRunner }): Promise<MultipartUploadInfo[]>;

  close(): Promise<void>;
}

/** Every key under `prefix`, following pagination. */
export async function* listAll(store: ObjectStore, prefix: string): AsyncGenerator<ObjectInfo> {
  let cursor: string | undefined;
  do {
    const page = await store.list(prefix, { cursor });
    yield* page.objects;
    cursor = page.cursor;
  } while (cursor);
}
