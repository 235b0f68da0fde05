/**
 * Upload while writing (`--upload-while-writing`) through a real FUSE mount on a real S3
 * server: a large file written in order by one writer has parts in the bucket before
 * it is closed, under a temporary key of the store's work area and never under an
 * object key; once it is closed and committed, the object holds exactly the file's
 * bytes and nothing of the temporary upload is left. A file changed by a second writer
 * while it uploads (its early upload must be abandoned) commits its final bytes, and
 * leaves nothing behind either.
 */
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { objectKey } from '../../src/commit/layout.js';
import { S3Store } from '../../src/store/s3.js';
import { listAll } from '../../src/store/types.js';
import { removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';
import { startHeldWriter } from '../support/held-writer.js';
import { s3TestConfig, s3TestStoreOptions, s3TestUrl } from '../support/s3.js';
import { until } from '../support/until.js';

const MiB = 1 << 20;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('upload while writing', () => {
  let d: TestDaemon;
  let bucket: S3Store;

  /** Unfinished multipart uploads under the store's work area for files being written. */
  const partialUploads = async (): Promise<string[]> =>
    (await bucket.listMultipartUploads('')).map((u) => u.key).filter((k) => k.startsWith('.roset/partial/'));
  /** Keys of the bucket (work area excluded: `list` never shows it). */
  const keys = async (): Promise<string[]> => {
    const out: string[] = [];
    for await (const o of listAll(bucket, '')) out.push(o.key);
    return out;
  };

  beforeAll(async () => {
    const s3 = s3TestConfig();
    const store = s3TestUrl('early-e2e');
    bucket = await S3Store.fromUrl(store, s3TestStoreOptions());
    d = await startDaemon({
      store,
      args: ['--s3-endpoint', s3.endpoint, '--s3-force-path-style', '--upload-while-writing'],
      env: { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region },
    });
    mkdirSync(d.p('ck'), { recursive: true });
  });
  afterAll(async () => {
    await stopAll();
    if (bucket) {
      for await (const o of listAll(bucket, '')) await bucket.delete(o.key);
      await bucket.close();
    }
    if (d) removeRoot(d.root);
  });

  it('has parts of a large file in the bucket before its close, and publishes exactly its bytes', async () => {
    const w = startHeldWriter(d.p('ck', 'model.bin'));
    await w.line('open');
    await w.write(80 * MiB);
    // Past the kernel's writeback cache: the daemon has the bytes, and so a final prefix.
    await w.sync();
    await until('parts sent while the file is open', async () => ((await partialUploads()).length > 0 ? true : null));
    expect((await keys()).filter((k) => k.startsWith('objects/'))).toEqual([]);
    await w.write(20 * MiB + 12345);
    const digest = await w.close();

    const r = d.cli('commit', d.p('ck'), '-m', 'early', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.json().status).toBe('completed');
    expect(sha(await bucket.get(objectKey(digest)))).toBe(digest);
    expect(sha(readFileSync(d.p('ck', 'model.bin')))).toBe(digest);
    expect(await partialUploads()).toEqual([]);
    expect(d.logs()).toContain('publishing a file uploaded while it was written');
  });

  it('abandons the upload of a file another writer changes, and commits its final bytes', async () => {
    mkdirSync(d.p('ck2'), { recursive: true });
    const file = d.p('ck2', 'shard.bin');
    const w = startHeldWriter(file);
    await w.line('open');
    await w.write(80 * MiB);
    await w.sync();
    await until('parts sent while the file is open', async () => ((await partialUploads()).length > 0 ? true : null));
    // A second writer rewrites the first bytes: what was sent no longer matches.
    const fd = openSync(file, 'r+');
    writeSync(fd, randomBytes(4096), 0, 4096, 0);
    closeSync(fd);
    await until('the abandoned upload aborted', async () => ((await partialUploads()).length === 0 ? true : null));
    await w.write(8 * MiB);
    await w.close();
    const bytes = readFileSync(file);

    const r = d.cli('commit', d.p('ck2'), '-m', 'changed', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(sha(await bucket.get(objectKey(sha(bytes))))).toBe(sha(bytes));
    expect(await partialUploads()).toEqual([]);
  });
});
