/**
 * `roset prefetch` through a real mount: after a restart with the whole cache deleted,
 * `--ref latest` puts every object of the ref's checkpoint into the node's read cache
 * (the files of a folder and of its sub-folder, verified by the daemon as for any
 * read), and reports the files and bytes it read; PATH does the same for one
 * sub-folder only; the piped report has no control character; a usage error exits 2.
 */
import { randomBytes, createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';

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
  const restartCold = async (): Promise<void> => {
    await d.stop();
    rmSync(d.cacheDir, { recursive: true, force: true });
    d = await startDaemon({ root: d.root });
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
});
