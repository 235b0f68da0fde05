/**
 * S3 object store: AWS S3 and the S3-compatible servers (Cloudflare R2, MinIO, Ceph
 * RGW, GCS through its interoperability endpoint). See docs/STORAGE.md.
 *
 * Owns: every object under `s3://<bucket>/<prefix>`. Keys given to and returned by
 * this class are relative to the prefix. `<prefix>.roset/` is this store's own work
 * area (the capability probe, and the owner tags of multipart uploads under
 * `.roset/uploads/<owner>/<base64url(uploadId)>`); callers cannot name it and `list`
 * never shows it, as with LocalStore's `.roset/`.
 *
 * Invariants:
 * - Credentials come only from the SDK's default chain (env vars, shared config and
 *   credentials files, profiles, SSO, IMDS), and never appear in a message, a detail
 *   or a cause: S3 errors are rebuilt from their code, status and request id, and the
 *   SDK's error object (which carries the raw response) is not kept.
 * - ETags are returned unquoted, and `putIfMatch` sends them unquoted (Ceph RGW
 *   matches only that form; AWS accepts both).
 * - `capabilities.conditionalWrites` is measured (`probeCapabilities`) unless the
 *   caller states it, never assumed: servers that ignore If-None-Match exist.
 * - All `putFile` calls running at once hold at most `concurrency` × `partSize` bytes
 *   of part buffers between them (a shared byte budget), whatever the file sizes;
 *   part buffers are reused, filled with pread.
 * - The SDK makes one attempt per request: the retry layer (retry.ts) is the only one.
 *   `putFile` sends each request (the PUT, the creation, each part, the completion)
 *   through the runner it is given, so a failed part is sent again alone.
 * - With an upload owner, every multipart upload is tagged (its tag object written)
 *   before its first part, and the tag is deleted once the upload is completed or
 *   aborted; `abortOwnUploads` aborts exactly the uploads tagged with this owner. An
 *   upload whose creation answered but whose tag could not be written is aborted at
 *   once; only a crash between the two leaves an untagged upload, and it holds no part.
 * - A multipart upload that fails is aborted; if even the abort fails, the upload is
 *   left for its owner's start-up sweep (`abortOwnUploads`), never completed.
 * - A conditional write answered 409 ConditionalRequestConflict did not take effect:
 *   the error is marked `retryable`, and the retry layer sends it again.
 * - `putFile(..., {ifAbsent})` above `partSize` checks for the key first and completes
 *   with If-None-Match: *. AWS, R2 and MinIO enforce that on completion; Ceph RGW 16
 *   ignores it there, so on RGW a create-only multipart upload is only best effort.
 *   Small create-only writes (manifests) are single PUTs and enforced everywhere the
 *   probe says `conditionalWrites`.
 * - Every PUT and UploadPart carries a checksum of its body that the server verifies,
 *   so a body corrupted on the way is refused (400) and never published; nothing
 *   hashes a byte twice for it (docs/STORAGE.md, "Integrity of uploads"):
 *   - a single PUT whose sha256 the caller knows (`putFile(..., {sha256})`, the content
 *     address) sends it as `x-amz-checksum-sha256` with an unsigned payload, but only
 *     where the probe saw the server refuse a wrong one (AWS does; Ceph RGW 16 ignores it);
 *   - otherwise the body is hashed once: SigV4's signed payload hash (SHA-256), or, in
 *     `md5` mode, `Content-MD5` with an unsigned payload. `auto` uses MD5 only where the
 *     CPU lacks SHA instructions (else SHA-256 is the cheaper hash) and the probe saw
 *     the server refuse a wrong Content-MD5; SHA-256 until then.
 *   A refused digest is marked `retryable`: the bytes in hand are right, the copy on
 *   the wire was not, so the retry layer sends the request again.
 */
import { createHash, randomUUID } from 'node:crypto';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import { ByteBudget } from '../util/byte-budget.js';
import { sleep } from '../util/sleep.js';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { RosetError, StoreError } from '../errors/index.js';
import {
  checkUploadOwner,
  runOnce,
  type ByteRange, type FileUpload, type FileUploadOptions, type ListPage, type MultipartUploadInfo, type ObjectInfo, type ObjectStore, type PartResult, type PutFileOptions, type PutResult,
  type RequestRunner, type StoreCapabilities,
} from './types.js';
import type { StoreOptions } from './index.js';
import { assertValidKey, WORK_DIR } from './keys.js';
import { S3FileUpload, type PartSink } from './s3-file-upload.js';

const MiB = 1024 * 1024;
/** S3's floor for every part but the last. */
const MIN_PART_SIZE = 5 * MiB;
const MAX_PARTS = 10_000;
export const DEFAULT_PART_SIZE = 32 * MiB;
export const DEFAULT_UPLOAD_CONCURRENCY = 4;
const DEFAULT_LIST_LIMIT = 1000;
/** Owner tags of multipart uploads: `<UPLOAD_TAGS><owner>/<base64url(uploadId)>`. */
const UPLOAD_TAGS = `${WORK_DIR}/uploads/`;
/** Temporary objects of files uploaded while written: `<PARTIAL><owner>/<uuid>` (s3-file-upload.ts). */
const PARTIAL = `${WORK_DIR}/partial/`;
/** The largest object one CopyObject copies; a larger one is copied in parts. */
const MAX_COPY = 5 * 1024 * MiB;
/** Part size of a copy in parts. */
const COPY_PART = 1024 * MiB;

export interface S3StoreConfig {
  bucket: string;
  /** Key prefix, '' or ending in '/'. */
  prefix?: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  /** Shared-config profile; otherwise AWS_PROFILE or `default`, as the SDK decides. */
  profile?: string;
  partSize?: number;
  uploadConcurrency?: number;
  /** Tag for the multipart uploads this store starts (the agent id); none: untagged. */
  uploadOwner?: string;
  /** Idle time after which a request fails (and the retry layer may send it again). */
  requestTimeoutMs?: number;
  /** Measured by `probeCapabilities` when absent. */
  capabilities?: StoreCapabilities;
  /**
   * How a body the server must verify is hashed when no known sha256 can stand in:
   * `sha256` (SigV4 signed payload), `md5` (Content-MD5, unsigned payload), or `auto`
   * (default): MD5 on CPUs without SHA instructions where the probe saw the server
   * verify Content-MD5, SHA-256 otherwise.
   */
  payloadChecksum?: PayloadChecksum;
  /** Tests only: whether the CPU hashes SHA-256 in hardware; read from /proc/cpuinfo when absent. */
  shaInstructions?: boolean;
  /** Tests only: fixed credentials instead of the default chain. */
  credentials?: S3ClientConfig['credentials'];
}

export type PayloadChecksum = 'auto' | 'sha256' | 'md5';

/** The S3 error codes of a body whose checksum did not match what arrived. */
const DIGEST_MISMATCH = new Set(['BadDigest', 'XAmzContentSHA256Mismatch', 'XAmzContentChecksumMismatch', 'InvalidDigest']);

/**
 * Whether this CPU hashes SHA-256 in hardware (x86 `sha_ni`, arm64 `sha2`): then
 * SHA-256 is faster than MD5 (measured with OpenSSL on an EPYC with SHA-NI: about
 * 2.0 GB/s against 0.9 GB/s), and without, MD5 is the cheaper of the two.
 */
export function cpuHasShaInstructions(): boolean {
  try {
    const info = fsSync.readFileSync('/proc/cpuinfo', 'utf8');
    return /^(flags|Features)\s*:.*\b(sha_ni|sha2)\b/m.test(info);
  } catch {
    // Not Linux: SHA-256, the SDK's own default; it costs a hash either way.
    return true;
  }
}


type S3Failure = Error & { name: string; $metadata?: { httpStatusCode?: number; requestId?: string }; Code?: string };

function statusOf(err: unknown): number | undefined {
  return (err as S3Failure | undefined)?.$metadata?.httpStatusCode;
}

function nameOf(err: unknown): string {
  const e = err as S3Failure | undefined;
  return e?.Code ?? e?.name ?? 'Error';
}

function isNotFound(err: unknown): boolean {
  const n = nameOf(err);
  return n === 'NoSuchKey' || n === 'NotFound' || (statusOf(err) === 404 && n !== 'NoSuchBucket' && n !== 'NoSuchUpload');
}

function isPreconditionFailed(err: unknown): boolean {
  return statusOf(err) === 412 || nameOf(err) === 'PreconditionFailed';
}

function isConditionalConflict(err: unknown): boolean {
  return statusOf(err) === 409 && nameOf(err) !== 'BucketAlreadyExists' && nameOf(err) !== 'BucketAlreadyOwnedByYou';
}

function isNotImplemented(err: unknown): boolean {
  return statusOf(err) === 501 || nameOf(err) === 'NotImplemented';
}

/**
 * A 4xx or 501 to a checksum probe: the server will not take the header (or an
 * unsigned payload) this way, so it is not used; the earlier probe steps already
 * proved the credentials can write.
 */
function refusedRequest(err: unknown): boolean {
  const status = statusOf(err);
  return isNotImplemented(err) || (status !== undefined && status >= 400 && status < 500);
}

function unquote(etag: string | undefined): string {
  return (etag ?? '').replace(/"/g, '');
}

// The SDK warns on every start under Node 20 that *future* SDK releases will need
// Node 22. The version in package-lock.json supports Node 20, and the warning would
// land in roset-mount's logs on every start; an operator can still turn it back on.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** `s3://bucket/some/prefix` → bucket and a prefix that is '' or ends in '/'. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!m) throw new StoreError('BAD_REQUEST', `Invalid S3 URL ${JSON.stringify(url)}: use s3://BUCKET/PREFIX`);
  const bucket = m[1]!;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/.test(bucket)) {
    throw new StoreError('BAD_REQUEST', `Invalid bucket name ${JSON.stringify(bucket)} in ${JSON.stringify(url)}`);
  }
  const parts = (m[2] ?? '').split('/').filter((p) => p !== '');
  if (parts.some((p) => p === '.' || p === '..' || p.includes('\0'))) {
    throw new StoreError('BAD_REQUEST', `Invalid prefix in ${JSON.stringify(url)}`);
  }
  return { bucket, prefix: parts.length ? `${parts.join('/')}/` : '' };
}

export class S3Store implements ObjectStore {
  readonly description: string;
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  private caps: StoreCapabilities;
  private readonly partSize: number;
  private readonly concurrency: number;
  /** Part buffers of every putFile running at once share this (concurrency × partSize). */
  private readonly partBuffers: ByteBudget;
  private readonly freeParts: Buffer[] = [];
  /** Tag of the multipart uploads this store starts. */
  readonly uploadOwner: string | undefined;
  /** As configured; `auto` is settled by the probe. */
  private readonly payloadMode: PayloadChecksum;
  private payload: 'sha256' | 'md5';
  private readonly shaInstructions: boolean;
  /** The probe saw the server refuse a wrong `x-amz-checksum-sha256`; false until then. */
  private verifiesChecksumSha256 = false;

  get capabilities(): StoreCapabilities {
    return this.caps;
  }

  constructor(config: S3StoreConfig) {
    this.bucket = config.bucket;
    this.prefix = config.prefix ?? '';
    if (this.prefix && !this.prefix.endsWith('/')) this.prefix += '/';
    this.partSize = Math.max(MIN_PART_SIZE, config.partSize ?? DEFAULT_PART_SIZE);
    this.concurrency = Math.max(1, Math.floor(config.uploadConcurrency ?? DEFAULT_UPLOAD_CONCURRENCY));
    this.partBuffers = new ByteBudget(this.concurrency * this.partSize);
    this.uploadOwner = checkUploadOwner(config.uploadOwner);
    // Until probed, claim nothing we have not seen.
    this.caps = config.capabilities ?? { conditionalWrites: false, multipart: true };
    const endpoint = config.endpoint;
    this.client = new S3Client({
      endpoint,
      region: config.region,
      // Custom endpoints (MinIO, RGW, a bare IP) rarely resolve <bucket>.<host>.
      forcePathStyle: config.forcePathStyle ?? Boolean(endpoint),
      profile: config.profile,
      credentials: config.credentials,
      // One attempt per request: retries belong to the retry layer alone (retry.ts),
      // which retries each part, not the file, and never multiplies with this one.
      maxAttempts: 1,
      followRegionRedirects: !endpoint,
      // The SDK's default adds CRC32 checksum headers to every PUT and part; several
      // S3-compatible servers (older RGW, GCS interop) reject or mishandle them. Roset
      // checks sha256 end to end itself.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        // Idle-socket timeout: a stalled server fails the request (and the retry layer
        // sends it again) instead of hanging a commit or a read forever. It is
        // `socketTimeout`: the handler's `requestTimeout` only logs a warning (unless
        // told to throw), and would time whole requests, which a large part may outlast.
        socketTimeout: config.requestTimeoutMs ?? 120_000,
        connectionTimeout: 10_000,
        httpAgent: { keepAlive: true, maxSockets: Math.max(50, this.concurrency * 2) },
        httpsAgent: { keepAlive: true, maxSockets: Math.max(50, this.concurrency * 2) },
      },
    });
    let where = '';
    if (endpoint) {
      try {
        const u = new URL(endpoint);
        where = ` at ${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
      } catch {
        where = ' at a custom endpoint';
      }
    }
    this.description = `s3://${this.bucket}/${this.prefix}${where}`;
    this.payloadMode = config.payloadChecksum ?? 'auto';
    this.shaInstructions = config.shaInstructions ?? cpuHasShaInstructions();
    // SHA-256 (the signed payload) until the probe has seen Content-MD5 verified.
    this.payload = this.payloadMode === 'md5' ? 'md5' : 'sha256';
    // A PUT or part that carries a checksum the server verifies (Content-MD5, or an
    // x-amz-checksum-sha256 the probe saw verified) is signed without hashing its body
    // again: the checksum already protects it, and SigV4 signs that header.
    this.client.middlewareStack.add((next, context) => async (args) => {
      const req = args.request as { headers?: Record<string, string> };
      const op = (context as { commandName?: string }).commandName;
      if ((op === 'PutObjectCommand' || op === 'UploadPartCommand') && req.headers
        && (req.headers['content-md5'] !== undefined || req.headers['x-amz-checksum-sha256'] !== undefined)) {
        req.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      }
      return next(args);
    }, { step: 'build', priority: 'low', name: 'rosetUnsignedVerifiedPayload' });
  }

  /** How a body is hashed for the server when no known sha256 can stand in. */
  get payloadChecksum(): 'sha256' | 'md5' {
    return this.payload;
  }

  /** Whether single PUTs with a known sha256 have it verified by the server instead of hashing again. */
  get sendsKnownSha256(): boolean {
    return this.verifiesChecksumSha256;
  }

  /**
   * The checksum header a body goes with: its known sha256 where the server verifies
   * that, else Content-MD5 in `md5` mode, else none (the signed payload hash covers it).
   */
  private integrity(body: Buffer | string, sha256Hex?: string): { ContentMD5?: string; ChecksumSHA256?: string } {
    if (sha256Hex && this.verifiesChecksumSha256) return { ChecksumSHA256: Buffer.from(sha256Hex, 'hex').toString('base64') };
    if (this.payload === 'md5') return { ContentMD5: createHash('md5').update(body).digest('base64') };
    return {};
  }

  /**
   * Opens `s3://bucket/prefix`. Unless `options.s3ConditionalWrites` states the answer,
   * it probes the bucket to learn whether conditional writes are enforced.
   */
  static async fromUrl(url: string, options: StoreOptions = {}): Promise<S3Store> {
    const { bucket, prefix } = parseS3Url(url);
    const stated = options.s3ConditionalWrites;
    const base: S3StoreConfig = {
      bucket,
      prefix,
      endpoint: options.s3Endpoint,
      region: options.s3Region,
      forcePathStyle: options.s3ForcePathStyle,
      profile: options.s3Profile,
      partSize: options.partSize,
      uploadConcurrency: options.uploadConcurrency,
      uploadOwner: options.uploadOwner,
      requestTimeoutMs: options.s3RequestTimeoutMs,
      payloadChecksum: options.s3PayloadChecksum,
      capabilities: typeof stated === 'boolean' ? { conditionalWrites: stated, multipart: true } : undefined,
    };
    let store = new S3Store(base);
    if (!base.region) {
      // No region from flags, AWS_REGION or the profile. Custom endpoints mostly ignore
      // it, and AWS redirects are followed, so us-east-1 is a safe signing default.
      try {
        await store.client.config.region();
      } catch {
        store.client.destroy();
        store = new S3Store({ ...base, region: 'us-east-1' });
      }
    }
    if (typeof stated !== 'boolean') {
      try {
        await store.probeCapabilities();
      } catch (err) {
        await store.close();
        throw err;
      }
    }
    return store;
  }

  /**
   * Measures what the server enforces, with a throw-away key under `<prefix>.roset/`:
   * creates it with If-None-Match: *, tries that again (must be 412), tries If-Match
   * with a wrong ETag (must be 412), then deletes it; and lists multipart uploads
   * (501 means no multipart management). Sets and returns `capabilities`. Also proves
   * that the credentials can write and delete under the prefix, so a bad setup fails
   * at start-up rather than at the first commit.
   */
  async probeCapabilities(): Promise<StoreCapabilities> {
    const key = `${WORK_DIR}/probe/${randomUUID()}`;
    const full = this.prefix + key;
    let conditionalWrites = true;
    try {
      try {
        await this.send('probe', key, () => new PutObjectCommand({ Bucket: this.bucket, Key: full, Body: 'probe', IfNoneMatch: '*' }));
      } catch (err) {
        // Servers without conditional writes either ignore the header or refuse it.
        if (!(err instanceof StoreError && (err.details.status === 501 || err.details.status === 400))) throw err;
        conditionalWrites = false;
        await this.send('probe', key, () => new PutObjectCommand({ Bucket: this.bucket, Key: full, Body: 'probe' }));
      }
      if (conditionalWrites) conditionalWrites = await this.refused(key, { IfNoneMatch: '*' });
      if (conditionalWrites) conditionalWrites = await this.refused(key, { IfMatch: 'roset-probe-0000000000000000' });
      this.verifiesChecksumSha256 = await this.verifiesChecksum(key, 'ChecksumSHA256', 'sha256');
      if (this.payloadMode === 'auto' && !this.shaInstructions && await this.verifiesChecksum(key, 'ContentMD5', 'md5')) this.payload = 'md5';
    } finally {
      await this.send('probe cleanup', key, () => new DeleteObjectCommand({ Bucket: this.bucket, Key: full })).catch(() => {});
    }
    let multipart = true;
    try {
      await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix + WORK_DIR, MaxUploads: 1 }));
    } catch (err) {
      if (!isNotImplemented(err)) throw this.mapError('list multipart uploads', WORK_DIR, err);
      multipart = false;
    }
    this.caps = { conditionalWrites, multipart };
    return this.caps;
  }

  /** True when a conditional overwrite of the existing probe key is refused. */
  private async refused(key: string, cond: { IfNoneMatch?: string; IfMatch?: string }): Promise<boolean> {
    try {
      await this.conditional('probe', key, () => new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Body: 'overwritten', ...cond }));
      return false;
    } catch (err) {
      if (err instanceof StoreError && err.rosetCode === 'PRECONDITION_FAILED') return true;
      if (err instanceof StoreError && (err.details.status === 501 || err.details.status === 400)) return false;
      throw err;
    }
  }

  /**
   * True when the server refuses a PUT whose checksum header (x-amz-checksum-sha256 or
   * Content-MD5) does not match its body, and takes one whose checksum does. A server
   * that ignores the header (Ceph RGW 16 ignores the SHA-256 one), or refuses it
   * whatever its value, is never trusted with it.
   */
  private async verifiesChecksum(key: string, header: 'ChecksumSHA256' | 'ContentMD5', algorithm: 'sha256' | 'md5'): Promise<boolean> {
    const full = this.prefix + key;
    const body = 'checksum probe';
    const wrong = createHash(algorithm).update('not the body').digest('base64');
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: full, Body: body, [header]: wrong }));
      return false;
    } catch (err) {
      if (!DIGEST_MISMATCH.has(nameOf(err))) {
        if (refusedRequest(err)) return false;
        throw this.mapError('probe', key, err);
      }
    }
    const right = createHash(algorithm).update(body).digest('base64');
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: full, Body: body, [header]: right }));
      return true;
    } catch (err) {
      if (refusedRequest(err)) return false;
      throw this.mapError('probe', key, err);
    }
  }

  private fullKey(key: string): string {
    assertValidKey(key);
    return this.prefix + key;
  }

  /**
   * A StoreError that says what failed and where, with no trace of the request's
   * signature or credentials: only the S3 error code, status and request id survive.
   */
  private mapError(op: string, key: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const status = statusOf(err);
    const code = nameOf(err);
    const meta = (err as S3Failure | undefined)?.$metadata as { requestId?: string; attempts?: number } | undefined;
    const details: Record<string, unknown> = { key, op, status, s3Code: code, requestId: meta?.requestId, attempts: meta?.attempts };
    const summary = new Error(`${code}${status ? ` (HTTP ${status})` : ''}: ${(err as Error | undefined)?.message ?? String(err)}`);
    if (isPreconditionFailed(err)) {
      return new StoreError('PRECONDITION_FAILED', `Conditional ${op} of ${key} lost: the object exists or changed`, details, { cause: summary });
    }
    if (isNotFound(err)) return new StoreError('OBJECT_NOT_FOUND', `No such object: ${key}`, details, { cause: summary });
    if (code === 'NoSuchUpload') return new StoreError('OBJECT_NOT_FOUND', `No such multipart upload for ${key}`, details, { cause: summary });
    if (DIGEST_MISMATCH.has(code)) {
      // The body that arrived is not the one sent: sent again, it arrives whole.
      details.retryable = true;
      return new StoreError('STORAGE_ERROR', `S3 ${op} of ${this.prefix}${key} refused: the body arrived corrupted (${code})`, details, { cause: summary });
    }
    const where = code === 'NoSuchBucket' ? ` (bucket ${this.bucket} does not exist)` : '';
    return new StoreError('STORAGE_ERROR', `S3 ${op} of ${this.prefix}${key} in bucket ${this.bucket} failed${where}: ${summary.message}`, details, { cause: summary });
  }

  private async send<T>(op: string, key: string, make: () => { input: unknown } & object): Promise<T> {
    try {
      return (await this.client.send(make() as never)) as T;
    } catch (err) {
      throw this.mapError(op, key, err);
    }
  }

  /**
   * A conditional write. RGW (and AWS, under contention) answers 409
   * ConditionalRequestConflict when another conditional write on the key is in flight;
   * it did not take effect, so the error is marked `retryable`: the retry layer sends it
   * again and gets the real answer, 200 or 412.
   */
  private async conditional<T>(op: string, key: string, make: () => { input: unknown } & object): Promise<T> {
    try {
      return (await this.client.send(make() as never)) as T;
    } catch (err) {
      const mapped = this.mapError(op, key, err);
      if (isConditionalConflict(err)) mapped.details.retryable = true;
      throw mapped;
    }
  }

  async put(key: string, body: Buffer | string): Promise<PutResult> {
    return this.putWith(key, body);
  }

  async putIfAbsent(key: string, body: Buffer | string): Promise<PutResult> {
    return this.putWith(key, body, { ifAbsent: true });
  }

  /** One PUT, with the checksum the server verifies; `sha256` is the body's, when known. */
  private async putWith(key: string, body: Buffer | string, options: { ifAbsent?: boolean; sha256?: string } = {}): Promise<PutResult> {
    const Key = this.fullKey(key);
    const check = this.integrity(body, options.sha256);
    const res = options.ifAbsent
      ? await this.conditional<{ ETag?: string }>('put-if-absent', key,
        () => new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, IfNoneMatch: '*', ...check }))
      : await this.send<{ ETag?: string }>('put', key, () => new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ...check }));
    return { etag: unquote(res.ETag) };
  }

  async putIfMatch(key: string, body: Buffer | string, etag: string): Promise<PutResult> {
    const Key = this.fullKey(key);
    try {
      const res = await this.conditional<{ ETag?: string }>('put-if-match', key,
        () => new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, IfMatch: unquote(etag), ...this.integrity(body) }));
      return { etag: unquote(res.ETag) };
    } catch (err) {
      // AWS answers If-Match on a missing key with 404: for the caller the object it
      // read has changed (it is gone), the same loss as a 412.
      if (err instanceof StoreError && err.rosetCode === 'OBJECT_NOT_FOUND') {
        throw new StoreError('PRECONDITION_FAILED', `Conditional put-if-match of ${key} lost: the object is gone`, err.details, { cause: err.cause });
      }
      throw err;
    }
  }

  async putFile(key: string, filePath: string, options: PutFileOptions = {}): Promise<PutResult> {
    const Key = this.fullKey(key);
    const run: RequestRunner = options.request ?? runOnce;
    let partSize = Math.max(MIN_PART_SIZE, options.partSize ?? this.partSize);
    const concurrency = Math.max(1, Math.floor(options.concurrency ?? this.concurrency));
    const fh = await fs.open(filePath, 'r').catch((err: NodeJS.ErrnoException) => {
      throw new StoreError('STORAGE_ERROR', `Cannot read ${filePath} to upload as ${key}: ${err.code ?? err.message}`, { key }, { cause: err });
    });
    try {
      const size = (await fh.stat()).size;
      if (size <= partSize) {
        const give = await this.partBuffers.take(size);
        try {
          const buf = Buffer.allocUnsafe(size);
          await readFully(fh, buf, size, 0, key);
          await options.beforeComplete?.();
          const sha256 = options.sha256;
          const result = options.ifAbsent
            ? await run('put-if-absent', key, () => this.putWith(key, buf, { ifAbsent: true, sha256 }))
            : await run('put', key, () => this.putWith(key, buf, { sha256 }));
          options.onProgress?.(size);
          return result;
        } finally {
          give();
        }
      }
      // 10,000 parts at most: grow the parts (to whole MiB) for very large files.
      if (Math.ceil(size / partSize) > MAX_PARTS) partSize = Math.ceil(size / MAX_PARTS / MiB) * MiB;
      const partCount = Math.ceil(size / partSize);
      if (options.ifAbsent && await run('head', key, () => this.head(key))) {
        // Lose before sending gigabytes. This check alone is racy; the If-None-Match
        // on completion below is what AWS, R2 and MinIO enforce (Ceph RGW 16 ignores
        // it there, see docs/STORAGE.md).
        throw new StoreError('PRECONDITION_FAILED', `Object already exists: ${key}`, { key });
      }
      const uploadId = await run('create-multipart', key, () => this.createMultipartUpload(key));
      const abort = (): Promise<void> => run('abort-multipart', key, () => this.abortMultipartUpload(key, uploadId)).catch(() => undefined);
      const parts: PartResult[] = new Array(partCount);
      let next = 0;
      let uploaded = 0;
      let failed: unknown;
      const worker = async (): Promise<void> => {
        // A part's buffer is taken from the budget all uploads share, so memory stays
        // bounded by concurrency × partSize however many files upload at once.
        let own: Buffer | undefined; // this worker's buffer for a part size not the store's
        while (failed === undefined && next < partCount) {
          options.beforePart?.();
          const index = next++;
          const offset = index * partSize;
          const length = Math.min(partSize, size - offset);
          const give = await this.partBuffers.take(length);
          // Buffers of the store's part size are pooled (the budget bounds how many
          // exist); a worker uploading other sizes keeps and reuses one of its own.
          const buf = partSize === this.partSize ? this.freeParts.pop() ?? Buffer.allocUnsafeSlow(partSize) : (own ??= Buffer.allocUnsafeSlow(partSize));
          try {
            const body = buf.subarray(0, length);
            await readFully(fh, body, length, offset, key);
            // The retry layer sends this part again if it fails: the part, not the file.
            parts[index] = await run('upload-part', key, () => this.uploadPart(key, uploadId, index + 1, body));
          } finally {
            if (buf !== own && this.freeParts.length < this.concurrency) this.freeParts.push(buf);
            give();
          }
          uploaded += length;
          options.onProgress?.(uploaded);
        }
      };
      const workers = Array.from({ length: Math.min(concurrency, partCount) }, () => worker().catch((err) => { failed ??= err; }));
      await Promise.all(workers);
      if (failed !== undefined) {
        await abort();
        // The caller's own error (beforePart) goes back as it is.
        throw failed instanceof RosetError ? failed : new StoreError('STORAGE_ERROR', `Upload of ${key} failed: ${(failed as Error).message}`, { key }, { cause: failed });
      }
      try {
        await options.beforeComplete?.();
      } catch (err) {
        await abort();
        throw err;
      }
      let sent = 0;
      try {
        return await run('complete-multipart', key, () => {
          sent++;
          return this.completeMultipartUpload(key, uploadId, parts, { ifAbsent: options.ifAbsent });
        });
      } catch (err) {
        // A completion sent again after a lost answer finds its upload gone: if the
        // object is there, whole, the first one completed it.
        if (sent > 1 && err instanceof StoreError && err.rosetCode === 'OBJECT_NOT_FOUND') {
          const info = await run('head', key, () => this.head(key)).catch(() => null);
          if (info && info.size === size) {
            await this.untag(uploadId).catch(() => undefined);
            return { etag: info.etag };
          }
        }
        await abort();
        throw err;
      }
    } finally {
      await fh.close();
    }
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    const Key = this.fullKey(key);
    if (range && range.length <= 0) return Buffer.alloc(0);
    const Range = range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range }));
      return await readBody(res.Body as unknown as AsyncIterable<Uint8Array>, res.ContentLength, range?.into);
    } catch (err) {
      // A range that starts at or past the end: empty, as a short read of a file is.
      if (range && (statusOf(err) === 416 || nameOf(err) === 'InvalidRange')) {
        if (await this.head(key)) return Buffer.alloc(0);
      }
      throw this.mapError('get', key, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const Key = this.fullKey(key);
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return { key, size: res.ContentLength ?? 0, etag: unquote(res.ETag), lastModified: res.LastModified ?? new Date(0) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.mapError('head', key, err);
    }
  }

  async list(prefix: string, options: { cursor?: string; limit?: number } = {}): Promise<ListPage> {
    const res = await this.send<{
      Contents?: { Key?: string; Size?: number; ETag?: string; LastModified?: Date }[];
      IsTruncated?: boolean; NextContinuationToken?: string;
    }>('list', prefix, () => new ListObjectsV2Command({
      Bucket: this.bucket,
      Prefix: this.prefix + prefix,
      ContinuationToken: options.cursor,
      MaxKeys: Math.min(1000, Math.max(1, options.limit ?? DEFAULT_LIST_LIMIT)),
    }));
    const objects: ObjectInfo[] = [];
    for (const o of res.Contents ?? []) {
      if (!o.Key?.startsWith(this.prefix)) continue;
      const key = o.Key.slice(this.prefix.length);
      if (key === WORK_DIR || key.startsWith(`${WORK_DIR}/`)) continue;
      objects.push({ key, size: o.Size ?? 0, etag: unquote(o.ETag), lastModified: o.LastModified ?? new Date(0) });
    }
    return res.IsTruncated && res.NextContinuationToken ? { objects, cursor: res.NextContinuationToken } : { objects };
  }

  async delete(key: string): Promise<void> {
    const Key = this.fullKey(key);
    await this.send('delete', key, () => new DeleteObjectCommand({ Bucket: this.bucket, Key }));
  }

  /** Key of the owner tag of an upload, relative to the prefix. */
  private tagKey(owner: string, uploadId: string): string {
    return `${UPLOAD_TAGS}${owner}/${Buffer.from(uploadId).toString('base64url')}`;
  }

  /** Deletes an owner's tag of an upload (default: this store's); a missing tag is no error. */
  private async untag(uploadId: string, owner = this.uploadOwner): Promise<void> {
    if (!owner) return;
    const tag = this.tagKey(owner, uploadId);
    await this.send('untag multipart upload', tag, () => new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + tag }));
  }

  /** Every owner tag under `.roset/uploads/` (or one owner's), as upload id → owner. */
  private async uploadTags(owner?: string): Promise<Map<string, string>> {
    const base = `${this.prefix}${UPLOAD_TAGS}`;
    const tags = new Map<string, string>();
    let ContinuationToken: string | undefined;
    do {
      const res = await this.send<{ Contents?: { Key?: string }[]; IsTruncated?: boolean; NextContinuationToken?: string }>(
        'list upload tags', UPLOAD_TAGS, () => new ListObjectsV2Command({ Bucket: this.bucket, Prefix: owner ? `${base}${owner}/` : base, ContinuationToken }));
      for (const o of res.Contents ?? []) {
        const [tagOwner, encoded, ...rest] = (o.Key ?? '').slice(base.length).split('/');
        if (!tagOwner || !encoded || rest.length) continue;
        tags.set(Buffer.from(encoded, 'base64url').toString(), tagOwner);
      }
      ContinuationToken = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (ContinuationToken);
    return tags;
  }

  createMultipartUpload(key: string): Promise<string> {
    return this.createAt(key, this.fullKey(key));
  }

  /** `key` for messages and the owner tag; `Key` the full key (a caller's, or a work-area one). */
  private async createAt(key: string, Key: string): Promise<string> {
    const res = await this.send<{ UploadId?: string }>('create multipart upload', key,
      () => new CreateMultipartUploadCommand({ Bucket: this.bucket, Key }));
    if (!res.UploadId) throw new StoreError('STORAGE_ERROR', `S3 returned no upload id for ${key}`, { key });
    const uploadId = res.UploadId;
    if (this.uploadOwner) {
      // The tag, before any part: ListMultipartUploads shows keys, not metadata, and a
      // content-addressed key cannot carry the owner, so the owner's sweep finds its
      // uploads by these tags.
      const tag = this.tagKey(this.uploadOwner, uploadId);
      const body = JSON.stringify({ key, uploadId, owner: this.uploadOwner, initiated: new Date().toISOString() });
      try {
        await this.send('tag multipart upload', tag, () => new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + tag, Body: body, ContentType: 'application/json' }));
      } catch (err) {
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: uploadId })).catch(() => undefined);
        throw err;
      }
    }
    return uploadId;
  }

  uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<PartResult> {
    return this.partAt(key, this.fullKey(key), uploadId, partNumber, body);
  }

  private async partAt(key: string, Key: string, uploadId: string, partNumber: number, body: Buffer): Promise<PartResult> {
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) {
      throw new StoreError('BAD_REQUEST', `Invalid part number ${partNumber}`);
    }
    const res = await this.send<{ ETag?: string }>('upload part', key, () => new UploadPartCommand({
      Bucket: this.bucket, Key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length, ...this.integrity(body),
    }));
    return { partNumber, etag: unquote(res.ETag) };
  }

  async completeMultipartUpload(key: string, uploadId: string, parts: PartResult[], options: { ifAbsent?: boolean } = {}): Promise<PutResult> {
    const etag = await this.completeAt(key, this.fullKey(key), uploadId, parts, options);
    if (etag) return { etag };
    // Ceph RGW 16 answers CompleteMultipartUpload with an empty <ETag>.
    const info = await this.head(key);
    if (!info) throw new StoreError('STORAGE_ERROR', `Multipart upload of ${key} completed but the object is missing`, { key, uploadId });
    return { etag: info.etag };
  }

  /** Completes an upload; its ETag, or '' when the server gave none (Ceph RGW 16). */
  private async completeAt(key: string, Key: string, uploadId: string, parts: PartResult[], options: { ifAbsent?: boolean } = {}): Promise<string> {
    const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber);
    const make = () => new CompleteMultipartUploadCommand({
      Bucket: this.bucket,
      Key,
      UploadId: uploadId,
      MultipartUpload: { Parts: sorted.map((p) => ({ PartNumber: p.partNumber, ETag: `"${unquote(p.etag)}"` })) },
      IfNoneMatch: options.ifAbsent ? '*' : undefined,
    });
    const res = options.ifAbsent
      ? await this.conditional<{ ETag?: string }>('complete multipart upload', key, make)
      : await this.send<{ ETag?: string }>('complete multipart upload', key, make);
    // The upload is gone: so is the need for its tag. A tag left behind (this delete
    // failed) names no upload, and the owner's next sweep deletes it.
    await this.untag(uploadId).catch(() => undefined);
    return res.ETag ? unquote(res.ETag) : '';
  }

  abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    return this.abortAt(key, this.fullKey(key), uploadId);
  }

  private async abortAt(key: string, Key: string, uploadId: string): Promise<void> {
    try {
      await this.send('abort multipart upload', key, () => new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: uploadId }));
    } catch (err) {
      // No such upload: gone already, and so is the need for its tag.
      if (err instanceof StoreError && err.rosetCode === 'OBJECT_NOT_FOUND') await this.untag(uploadId).catch(() => undefined);
      throw err;
    }
    await this.untag(uploadId).catch(() => undefined);
  }

  async listMultipartUploads(prefix: string): Promise<MultipartUploadInfo[]> {
    const out = await this.listUploads(prefix);
    if (out.length) {
      const owners = await this.uploadTags();
      for (const u of out) u.owner = owners.get(u.uploadId) ?? null;
    }
    return out;
  }

  /** The unfinished uploads under `prefix`, sorted by key, their owners not looked up. */
  private async listUploads(prefix: string): Promise<MultipartUploadInfo[]> {
    const out: MultipartUploadInfo[] = [];
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    for (;;) {
      const res = await this.send<{
        Uploads?: { Key?: string; UploadId?: string; Initiated?: Date }[];
        IsTruncated?: boolean; NextKeyMarker?: string; NextUploadIdMarker?: string;
      }>('list multipart uploads', prefix, () => new ListMultipartUploadsCommand({
        Bucket: this.bucket, Prefix: this.prefix + prefix, KeyMarker, UploadIdMarker,
      }));
      for (const u of res.Uploads ?? []) {
        if (!u.Key?.startsWith(this.prefix) || !u.UploadId) continue;
        out.push({ key: u.Key.slice(this.prefix.length), uploadId: u.UploadId, initiated: u.Initiated ?? new Date(0), owner: null });
      }
      if (!res.IsTruncated || (!res.NextKeyMarker && !res.NextUploadIdMarker)) break;
      KeyMarker = res.NextKeyMarker;
      UploadIdMarker = res.NextUploadIdMarker;
    }
    return out.sort((a, b) => a.key.localeCompare(b.key));
  }

  startFileUpload(filePath: string, options: FileUploadOptions = {}): FileUpload {
    return new S3FileUpload(this.partSink(), filePath, options);
  }

  private sink: PartSink | null = null;
  private partSink(): PartSink {
    const full = (k: string): string => this.prefix + k;
    this.sink ??= {
      partSize: this.partSize,
      concurrency: this.concurrency,
      tempKey: () => `${PARTIAL}${this.uploadOwner ?? 'unowned'}/${randomUUID()}`,
      create: (k) => this.createAt(k, full(k)),
      part: (k, id, n, body) => this.partAt(k, full(k), id, n, body),
      complete: async (k, id, parts) => { await this.completeAt(k, full(k), id, parts); },
      abort: (k, id) => this.abortAt(k, full(k), id),
      copy: (k, key, size) => this.copyTo(k, full(k), key, size),
      remove: async (k) => { await this.send('delete', k, () => new DeleteObjectCommand({ Bucket: this.bucket, Key: full(k) })); },
      buffer: async (length) => {
        const give = await this.partBuffers.take(length);
        const buf = length <= this.partSize ? this.freeParts.pop() ?? Buffer.allocUnsafeSlow(this.partSize) : Buffer.allocUnsafeSlow(length);
        return {
          buf,
          give: () => {
            if (buf.length === this.partSize && this.freeParts.length < this.concurrency) this.freeParts.push(buf);
            give();
          },
        };
      },
    };
    return this.sink;
  }

  /**
   * Copies an object of this bucket (`from`, a full key) to a caller's key on the
   * server: one CopyObject up to 5 GiB, else a multipart upload of part copies.
   */
  private async copyTo(fromKey: string, from: string, key: string, size: number): Promise<PutResult> {
    const Key = this.fullKey(key);
    const CopySource = encodeURI(`${this.bucket}/${from}`);
    if (size <= MAX_COPY) {
      const res = await this.send<{ CopyObjectResult?: { ETag?: string } }>('copy', key, () => new CopyObjectCommand({ Bucket: this.bucket, Key, CopySource }));
      const etag = unquote(res.CopyObjectResult?.ETag);
      if (etag) return { etag };
      const info = await this.head(key);
      if (!info) throw new StoreError('STORAGE_ERROR', `Copy of ${fromKey} to ${key} answered but the object is missing`, { key });
      return { etag: info.etag };
    }
    const uploadId = await this.createAt(key, Key);
    try {
      const parts: PartResult[] = [];
      for (let i = 0, at = 0; at < size; i++, at += COPY_PART) {
        const end = Math.min(size, at + COPY_PART) - 1;
        const res = await this.send<{ CopyPartResult?: { ETag?: string } }>('copy part', key, () => new UploadPartCopyCommand({
          Bucket: this.bucket, Key, UploadId: uploadId, PartNumber: i + 1, CopySource, CopySourceRange: `bytes=${at}-${end}`,
        }));
        parts.push({ partNumber: i + 1, etag: unquote(res.CopyPartResult?.ETag) });
      }
      return await this.completeMultipartUpload(key, uploadId, parts);
    } catch (err) {
      await this.abortAt(key, Key, uploadId).catch(() => undefined);
      throw err;
    }
  }

  async abortOwnUploads(options: { request?: RequestRunner } = {}): Promise<MultipartUploadInfo[]> {
    const owner = this.uploadOwner;
    if (!owner) return [];
    const run = options.request ?? runOnce;
    // Temporary objects of files uploaded while written whose publish a crash cut short.
    const partial = `${this.prefix}${PARTIAL}${owner}/`;
    let ContinuationToken: string | undefined;
    do {
      const res = await run('list partial uploads', PARTIAL, () => this.send<{ Contents?: { Key?: string }[]; IsTruncated?: boolean; NextContinuationToken?: string }>(
        'list partial uploads', PARTIAL, () => new ListObjectsV2Command({ Bucket: this.bucket, Prefix: partial, ContinuationToken })));
      for (const Key of (res.Contents ?? []).map((o) => o.Key).filter((k): k is string => !!k)) {
        await run('delete', Key, () => this.send('delete', Key, () => new DeleteObjectCommand({ Bucket: this.bucket, Key })));
      }
      ContinuationToken = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (ContinuationToken);
    const mine = await run('list upload tags', UPLOAD_TAGS, () => this.uploadTags(owner));
    if (mine.size === 0) return [];
    const aborted: MultipartUploadInfo[] = [];
    for (const u of await run('list multipart uploads', '', () => this.listUploads(''))) {
      // Only what this owner tagged: another owner's uploads, and untagged ones, stay.
      if (!mine.has(u.uploadId)) continue;
      u.owner = owner;
      await run('abort multipart upload', u.key, async () => {
        try {
          // A key of this store's work area (an upload of a file while it was written) too.
          await this.abortAt(u.key, this.prefix + u.key, u.uploadId);
        } catch (err) {
          // Gone between the list and the abort (an earlier attempt took it): done.
          if (!(err instanceof StoreError && err.rosetCode === 'OBJECT_NOT_FOUND')) throw err;
        }
      });
      aborted.push(u);
    }
    // Tags of uploads that are gone (completed or aborted, their tag's delete lost).
    const done = new Set(aborted.map((u) => u.uploadId));
    for (const uploadId of mine.keys()) {
      if (!done.has(uploadId)) await run('untag multipart upload', this.tagKey(owner, uploadId), () => this.untag(uploadId, owner));
    }
    return aborted;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

/** pread until `length` bytes are in `buf`; a file that shrank is FILE_CHANGED, not zeros. */
async function readFully(fh: fs.FileHandle, buf: Buffer, length: number, position: number, key: string): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    // The file was truncated under its upload: not a storage failure, nothing to retry.
    if (bytesRead === 0) throw new StoreError('FILE_CHANGED', `File shrank while uploading ${key} (short read at ${position + done})`, { key });
    done += bytesRead;
  }
}

/**
 * A response body in one buffer that owns its ArrayBuffer. With a Content-Length it is
 * allocated once and filled as the socket delivers, instead of collecting the chunks
 * and concatenating them (the SDK's way): one copy instead of two, and less garbage, on
 * the cold-read path where every byte of a checkpoint passes; the block cache then
 * moves the buffer to a hash worker without a copy (src/util/block-hash.ts). A body
 * shorter than its length comes back short (the caller checks the length it asked
 * for); one longer, or one without a length, is collected whole. `into`: the caller's
 * buffer to fill instead (ByteRange.into).
 */
async function readBody(body: AsyncIterable<Uint8Array>, length: number | undefined, into?: Buffer): Promise<Buffer> {
  if (length === undefined || !Number.isSafeInteger(length) || length < 0) {
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
    return Buffer.concat(chunks);
  }
  let out = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafeSlow(length);
  let at = 0;
  for await (const c of body) {
    if (at + c.byteLength > out.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(at + c.byteLength, out.length * 2));
      out.copy(bigger, 0, 0, at);
      out = bigger;
    }
    out.set(c, at);
    at += c.byteLength;
  }
  return at === out.length ? out : out.subarray(0, at);
}
