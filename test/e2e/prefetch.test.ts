/**
 * `roset prefetch` through a real mount: after a restart with the whole cache deleted,
 * `--ref latest` puts every object of the ref's checkpoint into the node's read cache
 * (the files of a folder and of its sub-folder, verified by the daemon as for any
 * read), and reports the files and bytes it read; PATH does the same for one
 * sub-folder only; the piped report has no control character; a usage error exits 2.
 * Under --cache-size: a target larger than the cache fails with PREFETCH_EXCEEDS_CACHE
 * and reads nothing; one that fits is cached whole; staged files of the node survive
 * prefetches that fill the cache (one forced past it included); a daemon whose limit
 * the CLI cannot see is read unchecked, with a warning. Sibling prefetch: a
 * cold read of one file caches the other files of its folder, not of its sub-folders,
 * and nothing when turned off (flag or environment).
 */
import { randomBytes, createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../support/until.js';
import { runCli, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('roset prefetch', () => {
  let d: TestDaemon;
  const files: Record<string, Buffer> = {
    'model.pt': randomBytes(20 << 20),
    'meta.json': Buffer.from(JSON.stringify({ step: 9 })),
    'opt/state.bin': randomBytes(9 << 20),
  };
  const total = Object.values(files).reduce((n, b) => n + b.length, 0);

  /** The objects in the node's read cache. */
  const cached = (): string[] => {
    const dir = path.join(d.cacheDir, 'objects');
    return existsSync(dir) ? readdirSync(dir).sort() : [];
  };

  /** A fresh daemon on the same state, with the whole cache deleted. */
  const restartCold = async (args: string[] = []): Promise<void> => {
    await d.stop();
    rmSync(d.cacheDir, { recursive: true, force: true });
    d = await startDaemon({ root: d.root, args });
    expect(cached()).toEqual([]);
  };

  beforeAll(async () => {
    d = await startDaemon();
    mkdirSync(d.p('ck', 'step-9', 'opt'), { recursive: true });
    for (const [name, bytes] of Object.entries(files)) writeFileSync(d.p('ck', 'step-9', name), bytes);
    const c = d.cli('commit', d.p('ck', 'step-9'), '--ref', 'latest', '--json');
    expect(c.code, c.stderr).toBe(0);
  });
  afterAll(stopAll);

  it('caches every object of the ref\'s checkpoint and reports what it read', async () => {
    await restartCold();
    const r = d.cli('prefetch', '--ref', 'latest', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ path: d.p('ck', 'step-9'), files: 3, bytes: total, skipped: [] });
    expect(cached()).toEqual(Object.values(files).map(sha).sort());
  });

  it('caches only the folder PATH names, and reports in plain lines when piped', async () => {
    await restartCold();
    const r = d.cli('prefetch', d.p('ck', 'step-9', 'opt'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^prefetched 1 file, 9\.00 MiB in /);
    expect(r.stdout + r.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    expect(cached()).toEqual([sha(files['opt/state.bin']!)]);
  });

  it('refuses PATH and --ref together, or neither, with exit code 2', () => {
    expect(d.cli('prefetch').code).toBe(2);
    expect(d.cli('prefetch', d.p('ck'), '--ref', 'latest').code).toBe(2);
  });

  it('caches the other files of the folder of a cold read, not those of its sub-folders', async () => {
    await restartCold();
    expect(readFileSync(d.p('ck', 'step-9', 'meta.json')).equals(files['meta.json']!)).toBe(true);
    const want = [sha(files['meta.json']!), sha(files['model.pt']!)].sort();
    await until('model.pt to be prefetched', () => cached().join() === want.join());
    // opt/state.bin is in a sub-folder: not prefetched. Shutdown waits for any prefetch.
    await d.stop();
    expect(cached()).toEqual(want);
  });

  it('prefetches nothing with --no-prefetch-siblings or ROSET_PREFETCH_SIBLINGS=0', async () => {
    await restartCold(['--no-prefetch-siblings']);
    expect(readFileSync(d.p('ck', 'step-9', 'meta.json')).equals(files['meta.json']!)).toBe(true);
    // Shutdown waits for any prefetch: none may have started.
    await d.stop();
    expect(cached()).toEqual([sha(files['meta.json']!)]);
    rmSync(d.cacheDir, { recursive: true, force: true });
    d = await startDaemon({ root: d.root, env: { ROSET_PREFETCH_SIBLINGS: '0' } });
    expect(d.logs()).toMatch(/"prefetchSiblings":false/);
  });
});

describe('roset prefetch under --cache-size', () => {
  const MiB = 1 << 20;
  const LIMIT = 16 * MiB;
  let d: TestDaemon;
  // 3 x 5 MiB fits in 16 MiB; 2 x 9 MiB does not.
  const fit = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(5 * MiB)];
  const big = [randomBytes(9 * MiB), randomBytes(9 * MiB)];
  const staged = randomBytes(12 * MiB);

  const objects = (): string[] => {
    const dir = path.join(d.cacheDir, 'objects');
    return existsSync(dir) ? readdirSync(dir).sort() : [];
  };

  beforeAll(async () => {
    d = await startDaemon({ args: ['--cache-size', String(LIMIT)] });
    mkdirSync(d.p('ck', 'fit'), { recursive: true });
    mkdirSync(d.p('ck', 'big'), { recursive: true });
    fit.forEach((b, i) => writeFileSync(d.p('ck', 'fit', `f${i}.bin`), b));
    big.forEach((b, i) => writeFileSync(d.p('ck', 'big', `b${i}.bin`), b));
    for (const f of ['fit', 'big']) {
      const c = d.cli('commit', d.p('ck', f), '--json');
      expect(c.code, c.stderr).toBe(0);
    }
    // Cold: a fresh daemon with the whole cache deleted.
    await d.stop();
    rmSync(d.cacheDir, { recursive: true, force: true });
    d = await startDaemon({ root: d.root, args: ['--cache-size', String(LIMIT)] });
    expect(objects()).toEqual([]);
    // Staged, never committed: 12 MiB of this node's own bytes, beside a 16 MiB cache.
    mkdirSync(d.p('work'), { recursive: true });
    writeFileSync(d.p('work', 'staged.bin'), staged);
  });
  afterAll(stopAll);

  it('fails a target larger than the cache before reading anything', () => {
    const r = d.cli('prefetch', d.p('ck', 'big'), '--json');
    expect(r.code).toBe(1);
    expect(r.json()).toMatchObject({ error: { code: 'PREFETCH_EXCEEDS_CACHE', details: { bytes: 18 * MiB, cacheMaxBytes: LIMIT } } });
    const text = d.cli('prefetch', d.p('ck', 'big'));
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/PREFETCH_EXCEEDS_CACHE: .*--force/);
    expect(objects()).toEqual([]);
  });

  it('shows the cache limit in roset status', () => {
    const r = d.cli('status', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.json().daemon).toMatchObject({ cacheMaxBytes: LIMIT });
    expect(d.cli('status').stdout).toMatch(/read cache up to 16\.0 MiB/);
  });

  it('caches a target that fits, and staged files survive prefetches that fill the cache', () => {
    const r = d.cli('prefetch', d.p('ck', 'fit'), '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ files: 3, bytes: 15 * MiB });
    expect(objects()).toEqual(fit.map(sha).sort());
    const forced = d.cli('prefetch', d.p('ck', 'big'), '--force', '--json');
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.json()).toMatchObject({ files: 2, bytes: 18 * MiB });
    expect(readFileSync(d.p('work', 'staged.bin')).equals(staged)).toBe(true);
  });

  it('keeps the staged file across a restart, and the cache within its limit', async () => {
    await d.stop();
    const total = objects().reduce((n, o) => n + readFileSync(path.join(d.cacheDir, 'objects', o)).length, 0);
    expect(total).toBeLessThanOrEqual(LIMIT);
    d = await startDaemon({ root: d.root, args: ['--cache-size', String(LIMIT)] });
    expect(readFileSync(d.p('work', 'staged.bin')).equals(staged)).toBe(true);
    expect((await d.client.resolvePath('/work/staged.bin'))?.state).not.toBe('committed');
  });

  it('says so, and reads unchecked, when the daemon serving the mountpoint is not its state dir\'s', () => {
    const elsewhere = mkdtempSync(path.join(os.tmpdir(), 'roset-cli-state-'));
    try {
      const r = runCli(elsewhere, ['prefetch', d.p('ck', 'big'), '--json'], { ROSET_API_URL: d.endpoint, ROSET_API_KEY: d.apiKey });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/warning: not checked against the read cache size: the daemon serving .* is not the one of state dir/);
      expect(r.json()).toMatchObject({ files: 2, bytes: 18 * MiB });
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });
});
