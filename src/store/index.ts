/**
 * Store selection: turns a `--store` URL into an ObjectStore.
 *
 * Owns: parsing of store URLs (`file:///dir`, a bare directory, `s3://bucket/prefix`).
 * Invariant: the returned store's keys are relative to the prefix; callers never see
 * the prefix.
 */
import { StoreError } from '../errors/index.js';
import { LocalStore } from './local.js';
import { DEFAULT_RETRY_POLICY, RetryingStore, type RetryPolicy } from './retry.js';
import type { ObjectStore } from './types.js';
import type { PayloadChecksum } from './s3.js';

export type { ObjectStore } from './types.js';

export interface StoreOptions {
  /** S3 endpoint URL, e.g. `http://127.0.0.1:7480`; absent for AWS. */
  s3Endpoint?: string;
  s3Region?: string;
  /** Path-style requests (`endpoint/bucket/key`). Default: on with `s3Endpoint`, off for AWS. */
  s3ForcePathStyle?: boolean;
  /** Shared-config profile for credentials and region; default: AWS_PROFILE, then `default`. */
  s3Profile?: string;
  /**
   * Whether the server enforces If-None-Match / If-Match. Default `'probe'`: measured at
   * open with a throw-away key under the prefix. `true`/`false` skip the probe.
   */
  s3ConditionalWrites?: boolean | 'probe';
  /** Multipart part size in bytes. */
  partSize?: number;
  /** Parts in flight at once per upload. */
  uploadConcurrency?: number;
  /**
   * Tag for every multipart upload this store starts: the agent id, stable across
   * restarts of a node, so its start-up sweep aborts its own uploads and no one else's.
   */
  uploadOwner?: string;
  /**
   * S3: how a body is hashed for the server to verify when its known sha256 cannot
   * stand in: `sha256`, `md5` or `auto` (default; see docs/STORAGE.md).
   */
  s3PayloadChecksum?: PayloadChecksum;
  /** S3: how long one request may sit idle before it fails (and the retry layer may send it again). */
  s3RequestTimeoutMs?: number;
  /** Retry policy of the store's one retry layer (src/store/retry.ts). */
  retry?: Partial<RetryPolicy>;
  /** Called before each retry, for logging. */
  onRetry?: (info: { op: string; key: string; attempt: number; delayMs: number; error: string }) => void;
}

/** Opens the store behind `url`, wrapped in the retry layer. */
export async function openStore(url: string, options: StoreOptions = {}): Promise<ObjectStore> {
  return new RetryingStore(await openBareStore(url, options), { ...DEFAULT_RETRY_POLICY, ...options.retry }, options.onRetry);
}

async function openBareStore(url: string, options: StoreOptions): Promise<ObjectStore> {
  if (url.startsWith('s3://')) {
    const { S3Store } = await import('./s3.js');
    return S3Store.fromUrl(url, options);
  }
  if (url.startsWith('file://')) return LocalStore.open(new URL(url).pathname, { uploadOwner: options.uploadOwner });
  if (url.startsWith('/') || url.startsWith('.')) return LocalStore.open(url, { uploadOwner: options.uploadOwner });
  throw new StoreError('BAD_REQUEST', `Unsupported store URL ${JSON.stringify(url)}: use file:///DIR or s3://BUCKET/PREFIX`);
}
