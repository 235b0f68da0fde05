/**
 * The S3 side of the benchmark: the Ceph RGW test server (scripts/s3-test-server), and
 * the raw `@aws-sdk/client-s3` transfers that are the references for uploads and cold
 * reads.
 *
 * Owns: this run's lease on the shared test server, and every key under the run's
 * prefix `bench/<runId>/` in the test bucket.
 *
 * Invariants:
 * - The server is shared by concurrent users through leases: we take one named by our
 *   own pid and give it back at the end; the script stops the server only if a test
 *   run started it and ours was the last lease. A server named by
 *   ROSET_TEST_S3_ENDPOINT is someone else's and is never stopped.
 * - The raw references are what a competent client does with the installed SDK and
 *   nothing more: hand-rolled parallel multipart (no @aws-sdk/lib-storage, which the
 *   project does not install) reading parts with pread, and parallel ranged GETs whose
 *   bodies are consumed and dropped. Checksums are off as in Roset's S3Store, so the
 *   two pay for the same bytes on the wire.
 * - Keys are deleted after each system is done, because the test server's OSD is a
 *   sparse file shared with other users and a full OSD makes PUTs hang.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, DeleteObjectCommand,
  GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client, UploadPartCommand,
} from '@aws-sdk/client-s3';
import { REPO } from './systems.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface S3Env {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** True when we hold a lease on a server scripts/s3-test-server runs. */
  leased: boolean;
}

const SCRIPT = path.join(REPO, 'scripts', 's3-test-server');

function parseExports(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!.replace(/^'(.*)'$/, '$1');
  }
  return env;
}

/** The S3 server: ROSET_TEST_S3_ENDPOINT (external) or the test server, under a lease. */
export function acquireServer(): S3Env {
  const e = process.env;
  if (e.ROSET_TEST_S3_ENDPOINT && e.AWS_ACCESS_KEY_ID && e.AWS_SECRET_ACCESS_KEY) {
    return {
      endpoint: e.ROSET_TEST_S3_ENDPOINT, bucket: e.ROSET_TEST_S3_BUCKET ?? 'roset-test', region: e.AWS_REGION ?? 'us-east-1',
      accessKeyId: e.AWS_ACCESS_KEY_ID, secretAccessKey: e.AWS_SECRET_ACCESS_KEY, leased: false,
    };
  }
  const out = execFileSync(SCRIPT, ['start'], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 900_000,
    env: { ...process.env, ROSET_S3_TEST_LEASE: String(process.pid) },
  });
  const v = parseExports(out);
  if (!v.ROSET_TEST_S3_ENDPOINT || !v.AWS_ACCESS_KEY_ID || !v.AWS_SECRET_ACCESS_KEY) throw new Error(`${SCRIPT} start printed no endpoint`);
  return {
    endpoint: v.ROSET_TEST_S3_ENDPOINT, bucket: v.ROSET_TEST_S3_BUCKET ?? 'roset-test', region: v.AWS_REGION ?? 'us-east-1',
    accessKeyId: v.AWS_ACCESS_KEY_ID, secretAccessKey: v.AWS_SECRET_ACCESS_KEY, leased: true,
  };
}

export function releaseServer(s3: S3Env): void {
  if (!s3.leased) return;
  execFileSync(SCRIPT, ['release', String(process.pid)], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 });
}

export function serverVersion(): string {
  try {
    return execFileSync('radosgw', ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim().split('\n')[0]!;
  } catch {
    return 'unknown';
  }
}

const now = (): number => performance.now();

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const worker = async (): Promise<void> => {
    for (let it = queue.shift(); it !== undefined; it = queue.shift()) await fn(it);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
}

export class RawS3 {
  readonly client: S3Client;

  constructor(private readonly s3: S3Env) {
    this.client = new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { httpAgent: { keepAlive: true, maxSockets: 64 }, connectionTimeout: 10_000, requestTimeout: 300_000 },
    });
  }

  /** Multipart upload of `file`; returns ms from CreateMultipartUpload to the completed upload. */
  async multipartUpload(key: string, file: string, partSize: number, concurrency: number): Promise<number> {
    const size = (await fs.stat(file)).size;
    const fh = await fs.open(file, 'r');
    const t0 = now();
    try {
      const { UploadId } = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.s3.bucket, Key: key }));
      const parts: { PartNumber: number; ETag: string }[] = [];
      const numbers = Array.from({ length: Math.max(1, Math.ceil(size / partSize)) }, (_, i) => i + 1);
      try {
        // One buffer per worker, reused: memory is concurrency × partSize, like Roset's store.
        const queue = [...numbers];
        await Promise.all(Array.from({ length: Math.min(concurrency, numbers.length) }, async () => {
          const buf = Buffer.allocUnsafe(partSize);
          for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
            const off = (n - 1) * partSize;
            const len = Math.min(partSize, size - off);
            const { bytesRead } = await fh.read(buf, 0, len, off);
            const r = await this.client.send(new UploadPartCommand({
              Bucket: this.s3.bucket, Key: key, UploadId, PartNumber: n, Body: buf.subarray(0, bytesRead), ContentLength: bytesRead,
            }));
            parts.push({ PartNumber: n, ETag: r.ETag! });
          }
        }));
        parts.sort((a, b) => a.PartNumber - b.PartNumber);
        await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.s3.bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
      } catch (err) {
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.s3.bucket, Key: key, UploadId })).catch(() => undefined);
        throw err;
      }
      return now() - t0;
    } finally {
      await fh.close();
    }
  }

  /** Parallel ranged GETs of the whole object, bodies consumed and dropped; returns ms. */
  async rangedGet(key: string, size: number, rangeSize: number, concurrency: number): Promise<number> {
    const starts = Array.from({ length: Math.ceil(size / rangeSize) }, (_, i) => i * rangeSize);
    let total = 0;
    const t0 = now();
    await pool(starts, concurrency, async (off) => {
      const end = Math.min(size, off + rangeSize) - 1;
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.s3.bucket, Key: key, Range: `bytes=${off}-${end}` }));
      for await (const chunk of r.Body as Readable) total += (chunk as Buffer).length;
    });
    const ms = now() - t0;
    if (total !== size) throw new Error(`ranged GET of ${key} returned ${total} bytes, expected ${size}`);
    return ms;
  }

  /** `count` parallel PUTs of small bodies; returns ms. */
  async putMany(keyOf: (i: number) => string, bodyOf: (i: number) => Buffer, count: number, concurrency: number): Promise<number> {
    const t0 = now();
    await pool(Array.from({ length: count }, (_, i) => i), concurrency, async (i) => {
      await this.client.send(new PutObjectCommand({ Bucket: this.s3.bucket, Key: keyOf(i), Body: bodyOf(i) }));
    });
    return now() - t0;
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.s3.bucket, Key: key, Body: body }));
  }

  /** How many keys are under `prefix`. */
  async countKeys(prefix: string): Promise<number> {
    let n = 0;
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.s3.bucket, Prefix: prefix, ContinuationToken: token }));
      n += page.KeyCount ?? page.Contents?.length ?? 0;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return n;
  }

  /** Deletes every key and aborts every multipart upload under `prefix`; returns the keys deleted. */
  async deletePrefix(prefix: string): Promise<number> {
    let deleted = 0;
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.s3.bucket, Prefix: prefix, ContinuationToken: token }));
      const keys = (page.Contents ?? []).map((o) => o.Key!).filter(Boolean);
      // Single DeleteObject calls: multi-object delete needs Content-MD5, which older
      // RGW and the SDK's checksum settings disagree about.
      await pool(keys, 32, async (k) => {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.s3.bucket, Key: k }));
      });
      deleted += keys.length;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    const ups = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.s3.bucket, Prefix: prefix })).catch(() => undefined);
    for (const u of ups?.Uploads ?? []) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.s3.bucket, Key: u.Key!, UploadId: u.UploadId! })).catch(() => undefined);
    }
    return deleted;
  }

  close(): void {
    this.client.destroy();
  }
}
