/**
 * `roset commit` of a 1 GiB checkpoint, written through the mount to the S3 test
 * server: on a terminal (a pseudo-terminal from script(1)), a progress bar on stderr
 * that advances through several percentages and ends at 100 %, redrawn in place;
 * piped, not one control character.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';
import { s3TestConfig, s3TestUrl } from '../support/s3.js';

const CLI = path.resolve(import.meta.dirname, '..', '..', 'bin', 'roset.js');
const FILES = 16;
const SIZE = 64 << 20;
const CHUNK = 16 << 20;

interface Run {
  /** Resolves with the exit code and everything written, once the command exits. */
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Resolves once stdout contains `text`; rejects if the command exits first. */
  seen: (text: string) => Promise<void>;
}

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv): Run {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: Array<{ text: string; resolve: () => void; reject: (e: Error) => void }> = [];
  const check = (): void => {
    for (const w of [...waiters]) if (stdout.includes(w.text)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(); }
  };
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); check(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      for (const w of waiters.splice(0)) w.reject(new Error(`${cmd} exited (${code}) before printing ${JSON.stringify(w.text)}:\n${stdout}\n${stderr}`));
      resolve({ code, stdout, stderr });
    });
  });
  return {
    done,
    seen: (text) => new Promise((resolve, reject) => { waiters.push({ text, resolve, reject }); check(); }),
  };
}

describe('roset commit progress of 1 GiB on a terminal', () => {
  let d: TestDaemon;

  beforeAll(async () => {
    const s3 = s3TestConfig();
    d = await startDaemon({
      store: s3TestUrl('progress'),
      sealTimeout: 300,
      args: ['--s3-endpoint', s3.endpoint, '--s3-force-path-style'],
      env: { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region },
    });
  });
  afterAll(async () => {
    await stopAll();
    if (d) removeRoot(d.root);
  });

  /**
   * Writes FILES × SIZE random bytes into `name` and returns the open descriptors: a
   * file's upload starts when its last writer closes, so while they are open nothing of
   * it is in the bucket, and the commit (which waits for them at its seal) uploads the
   * whole gigabyte itself.
   */
  const fillHeld = (name: string): number[] => {
    mkdirSync(d.p(name));
    const fds: number[] = [];
    for (let i = 0; i < FILES; i++) {
      const fd = openSync(d.p(name, `shard-${String(i).padStart(2, '0')}.bin`), 'w');
      fds.push(fd);
      for (let off = 0; off < SIZE; off += CHUNK) writeSync(fd, randomBytes(CHUNK));
    }
    return fds;
  };
  const env = (): NodeJS.ProcessEnv => ({ ROSET_STATE_DIR: d.stateDir, ROSET_API_URL: '', ROSET_API_KEY: '', TERM: 'xterm' });

  it('draws a bar that advances through several percentages to 100 %, with files, rate and ETA', async () => {
    const fds = fillHeld('ckpt-a');
    const started = Date.now();
    const r = start('script', ['-qfec', `'${process.execPath}' '${CLI}' commit '${d.p('ckpt-a')}'`, '/dev/null'], env());
    // The commit is sealing: it waits for these writers. Closing them lets it upload.
    await r.seen('sealing (waiting for writers)');
    for (const fd of fds) closeSync(fd);
    const { code, stdout } = await r.done;
    expect(code, stdout).toBe(0);
    const frames = stdout.split('\r\x1b[K').map((f) => f.trim()).filter((f) => f !== '');
    const shares = frames.map((f) => /^\[[#.]+\] +(\d+)% /.exec(f)?.[1]).filter((x) => x !== undefined).map(Number);
    console.log(`1 GiB committed through the pty in ${((Date.now() - started) / 1000).toFixed(1)} s, the bar at ${shares.join(' ')} %`);
    expect(new Set(shares).size, stdout).toBeGreaterThanOrEqual(4); // several distinct redraws
    expect(shares.filter((s) => s > 0 && s < 100).length, stdout).toBeGreaterThanOrEqual(2); // seen part-way
    expect([...shares].sort((a, b) => a - b)).toEqual(shares);
    expect(shares.at(-1)).toBe(100);
    expect(frames.some((f) => new RegExp(`% \\d+/${FILES} files [\\d.]+ \\w+/1\\.0+ GiB [\\d.]+ \\w+/s ETA \\d+:\\d\\d  /ckpt-a$`).test(f)), stdout).toBe(true);
    expect(stdout).toMatch(/\[#{16}\] 100% 16 files, 1\.0+ GiB in \d+:\d\d {2}\/ckpt-a\r?\n/);
    expect(stdout).toMatch(/committed \/ckpt-a as cmt_\w+ \(16 files, 1\.0+ GiB/);
  });

  it('prints no control characters when piped', async () => {
    const fds = fillHeld('ckpt-b');
    for (const fd of fds) closeSync(fd);
    const { code, stdout, stderr } = await start(process.execPath, [CLI, 'commit', d.p('ckpt-b')], env()).done;
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/^committed \/ckpt-b as cmt_\w+ \(16 files, 1\.0+ GiB/);
    expect(stdout + stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
  });
});
