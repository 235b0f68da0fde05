/**
 * The S3 test server, as tests see it: `s3TestConfig()` gives endpoint, bucket and
 * credentials of a real S3 server (Ceph RGW from scripts/s3-test-server, or the one
 * named by ROSET_TEST_S3_ENDPOINT and the AWS_* variables).
 *
 * Owns: finding or starting that server for a test worker. Stopping it belongs to the
 * globalSetup (test/setup/s3-server.ts), which stops it at the end of the run if this
 * run started it.
 *
 * Invariants:
 * - Never skips: if no server can be had, `s3TestConfig()` throws with the reason, so
 *   every test that needs S3 fails loudly (under CI=true and everywhere else).
 * - The server is started lazily, by the first test that asks, so a run of tests that
 *   never touch S3 does not pay the Ceph start (about 5 s, plus about 20 s of apt-get
 *   on a fresh machine). The script takes a lock, so two workers, or two test runs,
 *   never start two servers; they share one, each run holding a lease on it.
 * - After the first call, the worker's process.env carries the server's variables, so
 *   the SDK's default credential chain (what production uses) finds the credentials.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import type { StoreOptions } from '../../src/store/index.js';

export interface S3TestConfig {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The variables as `export` lines would set them, for child processes (roset-mount). */
  env: Record<string, string>;
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** Set by the globalSetup when the run uses an external server; null otherwise. */
    rosetS3: S3TestConfig | null;
    /** The test run's lease on the shared test server: its main process's pid. */
    rosetS3Lease: number | null;
  }
}

export const S3_TEST_SERVER_SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/s3-test-server');

const ENV_NAMES = ['ROSET_TEST_S3_ENDPOINT', 'ROSET_TEST_S3_BUCKET', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION'] as const;

/** Parses the `export VAR=value` lines that scripts/s3-test-server prints. */
export function parseExports(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!.replace(/^'(.*)'$/, '$1');
  }
  return env;
}

export function configFromEnv(env: Record<string, string | undefined>): S3TestConfig {
  const missing = ENV_NAMES.filter((n) => !env[n] && n !== 'AWS_REGION');
  if (missing.length) throw new Error(`S3 test server: ${missing.join(', ')} not set`);
  const picked: Record<string, string> = {};
  for (const n of ENV_NAMES) if (env[n]) picked[n] = env[n]!;
  picked.AWS_REGION ??= 'us-east-1';
  return {
    endpoint: picked.ROSET_TEST_S3_ENDPOINT!,
    bucket: picked.ROSET_TEST_S3_BUCKET!,
    region: picked.AWS_REGION,
    accessKeyId: picked.AWS_ACCESS_KEY_ID!,
    secretAccessKey: picked.AWS_SECRET_ACCESS_KEY!,
    env: picked,
  };
}

/**
 * Runs `scripts/s3-test-server start` (idempotent) and returns what it printed. With a
 * lease (the test run's main pid), the server is the run's to stop: the globalSetup
 * releases the lease at the end, and the last release stops a server a run started.
 */
export function startS3TestServer(lease?: number | null): S3TestConfig {
  let out: string;
  const env = { ...process.env };
  if (lease) env.ROSET_S3_TEST_LEASE = String(lease);
  try {
    out = execFileSync(S3_TEST_SERVER_SCRIPT, ['start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000, env });
  } catch (err) {
    throw new Error(`S3 test server: ${S3_TEST_SERVER_SCRIPT} start failed (${(err as Error).message.split('\n')[0]}); `
      + 'S3 tests need it, or ROSET_TEST_S3_ENDPOINT plus AWS credentials for another server', { cause: err });
  }
  return configFromEnv(parseExports(out));
}

let cached: S3TestConfig | undefined;

/** Endpoint, bucket and credentials of the S3 test server, starting it if need be. */
export function s3TestConfig(): S3TestConfig {
  if (cached) return cached;
  let config: S3TestConfig | null | undefined;
  let lease: number | null = null;
  try {
    config = inject('rosetS3');
    lease = inject('rosetS3Lease') ?? null;
  } catch {
    config = undefined; // outside a vitest worker
  }
  if (!config && process.env.ROSET_TEST_S3_ENDPOINT) config = configFromEnv(process.env);
  config ??= startS3TestServer(lease);
  Object.assign(process.env, config.env);
  cached = config;
  return config;
}

/** StoreOptions that reach the test server. */
export function s3TestStoreOptions(extra: StoreOptions = {}): StoreOptions {
  const c = s3TestConfig();
  return { s3Endpoint: c.endpoint, s3Region: c.region, s3ForcePathStyle: true, ...extra };
}

/** A fresh `s3://bucket/prefix` for one test run, so runs never see each other's keys. */
export function s3TestUrl(name: string): string {
  const c = s3TestConfig();
  return `s3://${c.bucket}/test-runs/${name}-${Date.now().toString(36)}-${randomUUID().slice(0, 8)}`;
}

/** The S3 credentials of the test server as a process environment (roset serve, agents). */
export function s3ProcessEnv(): NodeJS.ProcessEnv {
  const s3 = s3TestConfig();
  return { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
}

/** The command-line flags that point roset-mount or roset serve at the test server. */
export function s3EndpointArgs(): string[] {
  return ['--s3-endpoint', s3TestConfig().endpoint, '--s3-force-path-style'];
}
