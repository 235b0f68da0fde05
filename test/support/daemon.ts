/**
 * Test harness: starts a real `roset-mount` on a real FUSE mount, with its own state,
 * cache and store directories, and always takes it down again.
 *
 * Invariants: every daemon started here is registered for teardown; `stopAll` unmounts
 * with SIGTERM, then SIGKILL, then `fusermount -uz` as a last resort, so no test leaves
 * a mount behind even when it fails. FUSE must work: under CI a missing /dev/fuse is a
 * failure, never a skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { expect } from 'vitest';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RosetClient } from '../../src/sdk/index.js';
import { fuseMountpoints } from '../../src/util/mounts.js';
import { sleep } from '../../src/util/sleep.js';

export const REPO = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const MOUNT_BIN = path.join(REPO, 'bin', 'roset-mount.js');
const CLI_BIN = path.join(REPO, 'bin', 'roset.js');

export interface DaemonOptions {
  /** Reuse directories of an earlier daemon (restart). */
  root?: string;
  store?: string;
  sealTimeout?: number;
  cacheDir?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** FUSE binding; default: ROSET_TEST_FUSE_BINDING, else the daemon's own default. */
  binding?: string;
  /**
   * Mount with `--allow-other`, so users other than the daemon's can use the mount; the
   * test root becomes 0755 so that they can reach the mountpoint.
   */
  allowOther?: boolean;
}

export interface TestDaemon {
  root: string;
  /** The FUSE binding it was started with ('default' when none was named). */
  binding: string;
  mnt: string;
  stateDir: string;
  cacheDir: string;
  endpoint: string;
  apiKey: string;
  client: RosetClient;
  proc: ChildProcess;
  logs: () => string;
  /** SIGTERM and wait for a clean exit. */
  stop: () => Promise<void>;
  /** SIGKILL, as a crash would. The FUSE mount is left dangling, as after a crash. */
  kill9: () => Promise<void>;
  /** Path inside the mount. */
  p: (...parts: string[]) => string;
  cli: (...args: string[]) => CliResult;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: <T = any>() => T;
}

const live = new Set<TestDaemon>();

export function requireFuse(): void {
  if (!existsSync('/dev/fuse')) throw new Error('/dev/fuse is missing: FUSE tests cannot run (install fuse3 and run as root)');
  if (!existsSync(path.join(REPO, 'dist', 'cli', 'roset-mount.js'))) throw new Error('dist/ is missing: run `npm run build` before the tests');
}

/**
 * The FUSE binding mount tests run on: vitest.config.ts runs the mount suite once per
 * binding, naming it in ROSET_TEST_FUSE_BINDING. Unset (a single file run by hand), the
 * daemon picks its default.
 */
export function testFuseBinding(explicit?: string): string | undefined {
  const b = explicit ?? (process.env.ROSET_TEST_FUSE_BINDING || undefined);
  if (b !== undefined && b !== 'native' && b !== 'fuse-native') throw new Error(`ROSET_TEST_FUSE_BINDING must be native or fuse-native, not ${b}`);
  return b;
}

export function tempRoot(prefix = 'roset-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

function exited(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
}

async function waitFor(cond: () => boolean, ms: number, what: string, proc: ChildProcess, logs: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`roset-mount exited (${proc.exitCode ?? proc.signalCode}) before ${what}:\n${logs()}`);
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}:\n${logs()}`);
}

export async function startDaemon(opts: DaemonOptions = {}): Promise<TestDaemon> {
  requireFuse();
  const root = opts.root ?? tempRoot();
  const mnt = path.join(root, 'mnt');
  const stateDir = path.join(root, 'state');
  const cacheDir = opts.cacheDir ?? path.join(root, 'cache');
  const args = [MOUNT_BIN, mnt, '--state-dir', stateDir, '--cache-dir', cacheDir, '--log-level', 'debug'];
  // An agent of a remote control plane (--api-url) runs no API of its own.
  if (!opts.args?.includes('--api-url')) args.push('--listen', '127.0.0.1:0');
  if (opts.store) args.push('--store', opts.store);
  if (opts.sealTimeout) args.push('--seal-timeout', String(opts.sealTimeout));
  const binding = testFuseBinding(opts.binding);
  if (binding) args.push('--fuse-binding', binding);
  if (opts.allowOther) {
    args.push('--allow-other');
    chmodSync(root, 0o755);
  }
  args.push(...(opts.args ?? []));
  // Which test started this daemon: scripts/test names it if the mount outlives the run.
  mkdirSync(root, { recursive: true });
  const { testPath, currentTestName } = expect.getState();
  writeFileSync(path.join(root, 'started-by'), `${path.relative(REPO, testPath ?? '?')}: ${currentTestName ?? '(a hook)'}\n`);
  const proc = spawn(process.execPath, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const logs = (): string => out;
  const daemonFile = path.join(stateDir, 'daemon.json');
  try {
    await waitFor(() => {
      if (!existsSync(daemonFile)) return false;
      try {
        // daemon.json comes just before the ready line: tests read the settings that line logs.
        return JSON.parse(readFileSync(daemonFile, 'utf8')).pid === proc.pid && fuseMountpoints().includes(mnt) && out.includes('"msg":"roset-mount ready"');
      } catch {
        return false;
      }
    }, 30_000, 'the mount to come up', proc, logs);
  } catch (err) {
    // Not registered for teardown yet: a daemon that hangs at start must not outlive the test.
    proc.kill('SIGKILL');
    await exited(proc);
    lastResortUnmount(mnt);
    throw err;
  }
  const endpoint = readFileSync(path.join(stateDir, 'endpoint'), 'utf8').trim();
  const apiKey = readFileSync(path.join(stateDir, 'api-key'), 'utf8').trim();
  const d: TestDaemon = {
    root, binding: binding ?? 'default', mnt, stateDir, cacheDir, endpoint, apiKey, proc, logs,
    client: new RosetClient({ apiUrl: endpoint, apiKey, maxRetries: 0 }),
    p: (...parts) => path.join(mnt, ...parts),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited(proc);
      clearTimeout(t);
      lastResortUnmount(mnt);
      live.delete(d);
    },
    kill9: async () => {
      proc.kill('SIGKILL');
      await exited(proc);
      live.delete(d);
      lastResortUnmount(mnt);
    },
    cli: (...cliArgs) => runCli(stateDir, cliArgs),
  };
  live.add(d);
  return d;
}

export function runCli(stateDir: string, args: string[], env: NodeJS.ProcessEnv = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ROSET_STATE_DIR: stateDir, ROSET_API_URL: '', ROSET_API_KEY: '', ...env },
    timeout: 120_000,
  });
  const res: CliResult = {
    code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr,
    json: () => {
      try {
        return JSON.parse(r.stdout);
      } catch {
        throw new Error(`roset ${args.join(' ')} did not print JSON (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
      }
    },
  };
  return res;
}

function lastResortUnmount(mnt: string): void {
  if (fuseMountpoints().includes(mnt)) spawnSync('fusermount', ['-uz', mnt]);
  if (fuseMountpoints().includes(mnt)) spawnSync('umount', ['-l', mnt]);
}

/** Stops every daemon this file started and removes their directories. */
export async function stopAll(): Promise<void> {
  for (const d of [...live]) {
    await d.stop().catch(() => undefined);
  }
}

export function removeRoot(root: string): void {
  lastResortUnmount(path.join(root, 'mnt'));
  rmSync(root, { recursive: true, force: true });
}

/** Waits until a commit leaves `pending`. */
export async function waitCommit(client: RosetClient, id: string, ms = 60_000) {
  const end = Date.now() + ms;
  for (;;) {
    const c = await client.getCommit(id);
    if (c.status !== 'pending') return c;
    if (Date.now() > end) throw new Error(`commit ${id} still pending after ${ms} ms`);
    await sleep(50);
  }
}
