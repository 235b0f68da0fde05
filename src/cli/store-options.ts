/**
 * The store flags shared by `roset-mount` and `roset recover`: one definition, so both
 * read a bucket the same way (flag, then ROSET_* variable, then the embedded default).
 */
import * as path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import type { StoreOptions } from '../store/index.js';
import { positive, positiveInt, size } from '../util/cli-args.js';

export function addStoreOptions(cmd: Command): Command {
  return cmd
    .option('--store <url>', 'object store: file:///DIR or s3://BUCKET/PREFIX [env ROSET_STORE] (default: STATE_DIR/store)')
    .option('--s3-endpoint <url>', 'S3 endpoint URL for R2, MinIO, GCS or Ceph [env ROSET_S3_ENDPOINT]')
    .option('--s3-region <region>', 'S3 region [env ROSET_S3_REGION or AWS_REGION]')
    .option('--s3-force-path-style', 'use path-style S3 URLs (MinIO, Ceph) [env ROSET_S3_FORCE_PATH_STYLE]')
    .option('--s3-request-timeout <seconds>', 'idle time after which an S3 request fails and is retried [env ROSET_S3_REQUEST_TIMEOUT] (default: 120)', positive)
    .option('--store-retries <n>', 'attempts per storage operation [env ROSET_STORE_RETRIES] (default: 8)', positive)
    .option('--store-deadline <seconds>', 'total time a storage operation may take across retries [env ROSET_STORE_DEADLINE] (default: 120)', positive)
    .option('--upload-part-size <size>', 'multipart part size, e.g. 64M (at least 5M) [env ROSET_UPLOAD_PART_SIZE] (default: 32M)', partSize)
    .option('--upload-concurrency <n>', 'parts of one upload in flight at once [env ROSET_UPLOAD_CONCURRENCY] (default: 4)', positiveInt);
}

function partSize(v: string): number {
  const n = size(v);
  if (n < 5 * 2 ** 20) throw new InvalidArgumentError('S3 parts are at least 5 MiB (5M)');
  return n;
}

function num(flag: unknown, envValue: string | undefined): number | undefined {
  if (typeof flag === 'number') return flag;
  return envValue ? positive(envValue) : undefined;
}

export function envFlag(v: string | undefined): boolean | undefined {
  if (v === undefined || v === '') return undefined;
  return /^(1|true|yes|on)$/i.test(v);
}

export function storeConfig(o: Record<string, unknown>, env: NodeJS.ProcessEnv, stateDir: string): { store: string; storeOptions: StoreOptions } {
  return {
    store: (o.store as string | undefined) ?? env.ROSET_STORE ?? path.join(stateDir, 'store'),
    storeOptions: {
      s3Endpoint: (o.s3Endpoint as string | undefined) ?? env.ROSET_S3_ENDPOINT,
      s3Region: (o.s3Region as string | undefined) ?? env.ROSET_S3_REGION ?? env.AWS_REGION,
      s3ForcePathStyle: (o.s3ForcePathStyle as boolean | undefined) ?? envFlag(env.ROSET_S3_FORCE_PATH_STYLE),
      s3RequestTimeoutMs: secondsToMs(num(o.s3RequestTimeout, env.ROSET_S3_REQUEST_TIMEOUT)),
      partSize: (o.uploadPartSize as number | undefined) ?? (env.ROSET_UPLOAD_PART_SIZE ? partSize(env.ROSET_UPLOAD_PART_SIZE) : undefined),
      uploadConcurrency: (o.uploadConcurrency as number | undefined) ?? (env.ROSET_UPLOAD_CONCURRENCY ? positiveInt(env.ROSET_UPLOAD_CONCURRENCY) : undefined),
      retry: {
        ...(num(o.storeRetries, env.ROSET_STORE_RETRIES) ? { attempts: Math.floor(num(o.storeRetries, env.ROSET_STORE_RETRIES)!) } : {}),
        ...(num(o.storeDeadline, env.ROSET_STORE_DEADLINE) ? { deadlineMs: secondsToMs(num(o.storeDeadline, env.ROSET_STORE_DEADLINE)) } : {}),
      },
    },
  };
}

function secondsToMs(s: number | undefined): number | undefined {
  return s === undefined ? undefined : Math.round(s * 1000);
}
