/**
 * The store flags shared by `roset-mount` and `roset recover`: one definition, so both
 * read a bucket the same way (flag, then ROSET_* variable, then the embedded default).
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import type { StoreOptions } from '../store/index.js';

export function addStoreOptions(cmd: Command): Command {
  return cmd
    .option('--store <url>', 'object store: file:///DIR or s3://BUCKET/PREFIX [env ROSET_STORE] (default: STATE_DIR/store)')
    .option('--s3-endpoint <url>', 'S3 endpoint URL for R2, MinIO, GCS or Ceph [env ROSET_S3_ENDPOINT]')
    .option('--s3-region <region>', 'S3 region [env ROSET_S3_REGION or AWS_REGION]')
    .option('--s3-force-path-style', 'use path-style S3 URLs (MinIO, Ceph) [env ROSET_S3_FORCE_PATH_STYLE]');
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
    },
  };
}
