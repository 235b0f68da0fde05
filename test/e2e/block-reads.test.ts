/**
 * Cold reads of block-verified objects through a real FUSE mount: after a restart with
 * the cache deleted, a sequential reader gets the right bytes (sha256) of an empty
 * file, a file smaller than a block, a file of exactly one block and files whose size
 * is not a multiple of the block size; a random-access reader (pread at scattered
 * offsets, as an mmap of safetensors does) gets the right bytes; the manifest lists
 * the block hashes; and the read cache stays within --cache-size.
 */
import { closeSync, mkdirSync, openSync, readdirSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/util/block-hash.js';
import { removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';
import { sha256Of } from '../support/files.js';

const MiB = 1 << 20;
const CACHE_LIMIT = 24 * MiB;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A deterministic stream of numbers, so a failure replays. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

describe('block-verified cold reads through the mount', () => {
  let d: TestDaemon;
  const files = new Map<string, Buffer>([
    ['empty.bin', Buffer.alloc(0)],
    ['small.bin', randomBytes(12_345)],
    ['one-block.bin', randomBytes(BLOCK_SIZE)],
    ['ragged.bin', randomBytes(2 * BLOCK_SIZE + 777)],
    ['just-over.bin', randomBytes(BLOCK_SIZE + 1)],
  ]);

  beforeAll(async () => {
    d = await startDaemon({ args: ['--cache-size', String(CACHE_LIMIT)] });
  });
  afterAll(async () => {
    await stopAll();
    if (d) removeRoot(d.root);
  });

  it('commits files of every shape, with block hashes in the manifest', async () => {
    mkdirSync(d.p('ck'), { recursive: true });
    for (const [name, bytes] of files) writeFileSync(d.p('ck', name), bytes);
    const r = d.cli('commit', d.p('ck'), '-m', 'blocks', '--json');
    expect(r.code, r.stderr).toBe(0);
    const commit = r.json();
    expect(commit.status).toBe('completed');
    const manifest = await d.client.getManifest(commit.id);
    for (const [name, bytes] of files) {
      const f = manifest.files.find((x) => x.path === name)!;
      expect(f.blocks?.size, name).toBe(BLOCK_SIZE);
      expect(f.blocks?.hashes.length, name).toBe(Math.ceil(bytes.length / BLOCK_SIZE));
    }
  });

  it('reads every file back sequentially after a restart with the cache deleted', async () => {
    await d.stop();
    rmSync(d.cacheDir, { recursive: true, force: true });
    d = await startDaemon({ root: d.root, args: ['--cache-size', String(CACHE_LIMIT)] });
    for (const [name, bytes] of files) {
      expect(await sha256Of(d.p('ck', name)), name).toBe(sha(bytes));
      expect(statSync(d.p('ck', name)).size).toBe(bytes.length);
    }
  });

  it('serves a random-access reader the right bytes', async () => {
    await d.stop();
    rmSync(d.cacheDir, { recursive: true, force: true });
    d = await startDaemon({ root: d.root, args: ['--cache-size', String(CACHE_LIMIT)] });
    const bytes = files.get('ragged.bin')!;
    const rnd = lcg(42);
    const fd = openSync(d.p('ck', 'ragged.bin'), 'r');
    try {
      for (let i = 0; i < 200; i++) {
        const off = Math.floor(rnd() * bytes.length);
        const len = 1 + Math.floor(rnd() * Math.min(3 * MiB, bytes.length - off));
        const buf = Buffer.alloc(len);
        let got = 0;
        while (got < len) {
          const n = readSync(fd, buf, got, len - got, off + got);
          if (n === 0) break;
          got += n;
        }
        expect(got).toBe(len);
        expect(buf.equals(bytes.subarray(off, off + len)), `bytes at ${off}+${len}`).toBe(true);
      }
    } finally {
      closeSync(fd);
    }
  });

  it('keeps the read cache within --cache-size', async () => {
    // Read everything (about 33 MiB, over the 24 MiB limit), then stop: shutdown waits
    // for downloads to be recorded, and eviction runs as each one is.
    for (const [name, bytes] of files) expect(await sha256Of(d.p('ck', name)), name).toBe(sha(bytes));
    await d.stop();
    const objects = path.join(d.cacheDir, 'objects');
    const total = readdirSync(objects).reduce((s, n) => s + statSync(path.join(objects, n)).size, 0);
    expect(total).toBeGreaterThan(0);
    expect(total).toBeLessThanOrEqual(CACHE_LIMIT);
  });
});
