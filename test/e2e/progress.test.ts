/**
 * `roset commit` on a terminal, against a real daemon: a progress bar on stderr that
 * advances and ends at 100 %, redrawn in place; piped, not one control character.
 * The bucket is slowed (ROSET_DELAYS=upload.before-put) so the upload takes seconds
 * and the bar is drawn several times.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';

const CLI = path.resolve(import.meta.dirname, '..', '..', 'bin', 'roset.js');
const FILES = 40;
const SIZE = 2 << 20;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

describe('roset commit progress on a terminal', () => {
  let d: TestDaemon;

  beforeAll(async () => {
    d = await startDaemon({ env: { ROSET_DELAYS: 'upload.before-put=250' } });
  });
  afterAll(async () => {
    await stopAll();
    if (d) removeRoot(d.root);
  });

  const fill = (name: string): void => {
    mkdirSync(d.p(name));
    for (let i = 0; i < FILES; i++) writeFileSync(d.p(name, `shard-${String(i).padStart(2, '0')}.bin`), randomBytes(SIZE));
  };
  const env = (): NodeJS.ProcessEnv => ({ ROSET_STATE_DIR: d.stateDir, ROSET_API_URL: '', ROSET_API_KEY: '', TERM: 'xterm' });

  it('draws a bar that advances to 100 %, with files, rate and ETA', async () => {
    fill('ckpt-a');
    const r = await run('script', ['-qfec', `'${process.execPath}' '${CLI}' commit '${d.p('ckpt-a')}'`, '/dev/null'], env());
    expect(r.code, r.stdout).toBe(0);
    const frames = r.stdout.split('\r\x1b[K').map((f) => f.trim()).filter((f) => f !== '');
    const shares = frames.map((f) => /^\[[#.]+\] +(\d+)% /.exec(f)?.[1]).filter((x) => x !== undefined).map(Number);
    expect(new Set(shares).size, r.stdout).toBeGreaterThanOrEqual(3); // several distinct redraws
    expect([...shares].sort((a, b) => a - b)).toEqual(shares);
    expect(shares.at(-1)).toBe(100);
    expect(frames.some((f) => new RegExp(`% \\d+/${FILES} files [\\d.]+ \\w+/80\\.0 MiB [\\d.]+ \\w+/s ETA \\d+:\\d\\d  /ckpt-a$`).test(f)), r.stdout).toBe(true);
    expect(frames.some((f) => f.startsWith('sealing (waiting for writers)'))).toBe(true);
    expect(r.stdout).toMatch(/\[#{16}\] 100% 40 files, 80\.0 MiB in \d+:\d\d {2}\/ckpt-a\r?\n/);
    expect(r.stdout).toMatch(/committed \/ckpt-a as cmt_\w+ \(40 files, 80\.0 MiB/);
  });

  it('prints no control characters when piped', async () => {
    fill('ckpt-b');
    const r = await run(process.execPath, [CLI, 'commit', d.p('ckpt-b')], env());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^committed \/ckpt-b as cmt_\w+ \(40 files/);
    expect(r.stdout + r.stderr).not.toMatch(/[\x1b\r]/);
  });
});
