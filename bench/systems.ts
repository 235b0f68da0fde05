/**
 * The systems under test, as processes the benchmark starts and must take down:
 * `roset-mount` (one per FUSE binding, embedded or as an agent), `roset serve`, s3fs,
 * `rclone mount` and JuiceFS (`juicefs mount --writeback`, SQLite metadata).
 *
 * Owns: every child process and FUSE mount the benchmark creates, through one cleanup
 * registry.
 *
 * Invariants:
 * - Everything started here is registered before it can fail half-way, and
 *   `cleanupAll()` (called in the benchmark's `finally` and on SIGINT/SIGTERM) stops
 *   it: a graceful stop first, then SIGKILL, then `fusermount3 -uz`/`umount -l` as a
 *   last resort, so no run leaves a mount or a daemon behind, even when it fails.
 * - Every process is stopped by the pid this module spawned, never by name.
 * - Each Roset daemon gets its own state and cache directories and its own bucket
 *   prefix (the agents of one `roset serve` share its prefix, as the nodes of one
 *   cluster share a bucket); the peers get their own prefixes too. All of it sits
 *   under the run's root directory, on the disk whose speed is the reference.
 * - Agents are registered after their `roset serve`, so the teardown (newest first)
 *   stops them while their control plane still answers.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RosetClient } from '../src/sdk/index.js';
import { fuseMountpoints, processAlive } from '../src/util/mounts.js';
import { sleep } from '../src/util/sleep.js';
import type { S3Env } from './s3.js';

/**
 * The checkout this harness belongs to. The harness runs from source (the tests import
 * it) and compiled (bench/dist/bench/, see bench/tsconfig.json), at different depths,
 * so it walks up to the directory that holds bin/roset-mount.js.
 */
export const REPO = ((): string => {
  const start = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'bin', 'roset-mount.js'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no Roset checkout (bin/roset-mount.js) above ${start}`);
  }
})();
const MOUNT_BIN = path.join(REPO, 'bin', 'roset-mount.js');
const CLI_BIN = path.join(REPO, 'bin', 'roset.js');

// ---- cleanup registry -----------------------------------------------------------------

const cleanups = new Map<number, { what: string; fn: () => Promise<void> }>();
let nextCleanup = 0;

/** Registers a teardown; returns the function that unregisters it (after a clean stop). */
export function onCleanup(what: string, fn: () => Promise<void>): () => void {
  const id = nextCleanup++;
  cleanups.set(id, { what, fn });
  return () => cleanups.delete(id);
}

/** Runs every registered teardown, newest first; one failing does not stop the rest. */
export async function cleanupAll(log: (msg: string) => void): Promise<void> {
  for (const id of [...cleanups.keys()].reverse()) {
    const c = cleanups.get(id)!;
    cleanups.delete(id);
    try {
      await c.fn();
    } catch (err) {
      log(`cleanup of ${c.what} failed: ${(err as Error).message}`);
    }
  }
}

// ---- helpers ----------------------------------------------------------------------------

export function isMounted(mnt: string): boolean {
  return fuseMountpoints().includes(mnt);
}

/** Lazy unmount by every tool there is; a no-op when nothing is mounted there. */
export function forceUnmount(mnt: string): void {
  for (const [cmd, args] of [['fusermount3', ['-uz', mnt]], ['fusermount', ['-uz', mnt]], ['umount', ['-l', mnt]]] as const) {
    if (!isMounted(mnt)) return;
    spawnSync(cmd, [...args], { stdio: 'ignore' });
  }
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once('exit', () => resolve()));
}

async function waitExit(proc: ChildProcess, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((r) => { timer = setTimeout(() => r(false), ms); });
  const ok = await Promise.race([exited(proc).then(() => true), timedOut]);
  clearTimeout(timer);
  return ok;
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function waitFor(cond: () => boolean, ms: number, what: string, proc: ChildProcess, logFile: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`${what}: the process exited (${proc.exitCode ?? proc.signalCode}) before it was ready; log ${logFile}:\n${tail(logFile)}`);
    }
    await sleep(50);
  }
  throw new Error(`${what}: not ready after ${ms / 1000} s; log ${logFile}:\n${tail(logFile)}`);
}

/** Memory of a process from /proc, in KiB: VmRSS now and VmHWM (peak since start). */
export function memoryOf(pid: number): { rssKiB: number; hwmKiB: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
    return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
  } catch {
    return null;
  }
}

/** A mounted system: where to write, and how to take it down. */
export interface Mounted {
  name: string;
  mnt: string;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

/** Spawns a FUSE server in the foreground and waits until its mount is in /proc/mounts. */
async function spawnMount(name: string, mnt: string, logFile: string, cmd: string, args: string[], env: NodeJS.ProcessEnv,
  unmountFirst: boolean, ready?: (proc: ChildProcess) => boolean): Promise<Mounted & { proc: ChildProcess }> {
  mkdirSync(mnt, { recursive: true });
  const out = openSync(logFile, 'a');
  const proc = spawn(cmd, args, { env, stdio: ['ignore', out, out] });
  closeSync(out);
  // A spawn failure (ENOENT) arrives as an event; keep it from crashing the run.
  proc.on('error', () => undefined);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (unmountFirst && isMounted(mnt)) spawnSync('fusermount3', ['-u', mnt], { stdio: 'ignore' });
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    if (!(await waitExit(proc, 120_000))) {
      proc.kill('SIGKILL');
      await waitExit(proc, 10_000);
    }
    forceUnmount(mnt);
  };
  const unregister = onCleanup(`${name} (pid ${proc.pid})`, stop);
  try {
    await waitFor(() => isMounted(mnt) && (ready ? ready(proc) : true), 60_000, name, proc, logFile);
  } catch (err) {
    await stop();
    unregister();
    throw err;
  }
  return {
    name, mnt, pid: proc.pid!, logFile, proc,
    stop: async () => {
      await stop();
      unregister();
    },
  };
}

// ---- Roset --------------------------------------------------------------------------------

export interface RosetDaemon extends Mounted {
  binding: string;
  stateDir: string;
  cacheDir: string;
  client: RosetClient;
  endpoint: string;
}

export interface RosetStart {
  dir: string;
  /** `fuse-native`, `native`, ...; 'default' when the daemon has no --fuse-binding flag. */
  binding: string;
  hasBindingFlag: boolean;
  /** The bucket of an embedded daemon; an agent learns it from its control plane. */
  storeUrl: string;
  s3: S3Env;
  /** Set: an agent of this `roset serve` (`--api-url`/`--api-key`) instead of an embedded daemon. */
  agentOf?: { apiUrl: string; apiKey: string };
  extraArgs?: string[];
}

/**
 * Starts roset-mount with `dir/{mnt,state,cache}`; reusing `dir` restarts the same daemon
 * state. For an agent, `client` talks to the control plane it serves (the endpoint and
 * key the agent writes to its state directory, as for `roset` on that node).
 */
export async function startRoset(o: RosetStart): Promise<RosetDaemon> {
  const mnt = path.join(o.dir, 'mnt');
  const stateDir = path.join(o.dir, 'state');
  const cacheDir = path.join(o.dir, 'cache');
  mkdirSync(o.dir, { recursive: true });
  const args = [MOUNT_BIN, mnt, '--state-dir', stateDir, '--cache-dir', cacheDir];
  if (o.agentOf) {
    args.push('--api-url', o.agentOf.apiUrl, '--api-key', o.agentOf.apiKey);
  } else {
    args.push('--listen', '127.0.0.1:0', '--store', o.storeUrl, '--s3-endpoint', o.s3.endpoint, '--s3-region', o.s3.region, '--s3-force-path-style');
  }
  args.push('--log-level', 'warn', '--drain-timeout', '120');
  if (o.hasBindingFlag) args.push('--fuse-binding', o.binding);
  args.push(...(o.extraArgs ?? []));
  const env = { ...process.env, AWS_ACCESS_KEY_ID: o.s3.accessKeyId, AWS_SECRET_ACCESS_KEY: o.s3.secretAccessKey, AWS_REGION: o.s3.region };
  const daemonFile = path.join(stateDir, 'daemon.json');
  const m = await spawnMount(`roset-mount${o.agentOf ? ' agent' : ''} (${o.binding})`, mnt, path.join(o.dir, 'roset-mount.log'), process.execPath, args, env, false, (proc) => {
    if (!existsSync(daemonFile)) return false;
    try {
      return JSON.parse(readFileSync(daemonFile, 'utf8')).pid === proc.pid;
    } catch {
      return false;
    }
  });
  const endpoint = readFileSync(path.join(stateDir, 'endpoint'), 'utf8').trim();
  const apiKey = readFileSync(path.join(stateDir, 'api-key'), 'utf8').trim();
  // No retries: a retried POST would time two calls as one, and the bench wants the truth.
  const client = new RosetClient({ apiUrl: endpoint, apiKey, maxRetries: 0, timeoutMs: 120_000 });
  return { ...m, binding: o.binding, stateDir, cacheDir, client, endpoint };
}

/** A `roset serve` this module started: the control plane of the multi-node rows. */
export interface RosetServe {
  pid: number;
  stateDir: string;
  endpoint: string;
  apiKey: string;
  client: RosetClient;
  logFile: string;
  stop(): Promise<void>;
}

export interface ServeStart {
  dir: string;
  /** `postgres://…` or `sqlite:…`. */
  database: string;
  storeUrl: string;
  s3: S3Env;
  extraArgs?: string[];
}

/** Starts `roset serve` with its state in `dir/state`; ready once `serve.json` names its pid. */
export async function startServe(o: ServeStart): Promise<RosetServe> {
  const stateDir = path.join(o.dir, 'state');
  mkdirSync(o.dir, { recursive: true });
  const logFile = path.join(o.dir, 'serve.log');
  const args = [CLI_BIN, 'serve', '--state-dir', stateDir, '--listen', '127.0.0.1:0', '--database', o.database,
    '--store', o.storeUrl, '--s3-endpoint', o.s3.endpoint, '--s3-region', o.s3.region, '--s3-force-path-style',
    '--log-level', 'warn', '--drain-timeout', '120', ...(o.extraArgs ?? [])];
  const env = { ...process.env, AWS_ACCESS_KEY_ID: o.s3.accessKeyId, AWS_SECRET_ACCESS_KEY: o.s3.secretAccessKey, AWS_REGION: o.s3.region };
  const out = openSync(logFile, 'a');
  const proc = spawn(process.execPath, args, { env, stdio: ['ignore', out, out] });
  closeSync(out);
  proc.on('error', () => undefined);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    if (!(await waitExit(proc, 120_000))) {
      proc.kill('SIGKILL');
      await waitExit(proc, 10_000);
    }
  };
  const unregister = onCleanup(`roset serve (pid ${proc.pid})`, stop);
  const info = path.join(stateDir, 'serve.json');
  try {
    await waitFor(() => {
      try {
        return existsSync(info) && JSON.parse(readFileSync(info, 'utf8')).pid === proc.pid;
      } catch {
        return false;
      }
    }, 60_000, 'roset serve', proc, logFile);
  } catch (err) {
    await stop();
    unregister();
    throw err;
  }
  const endpoint = readFileSync(path.join(stateDir, 'endpoint'), 'utf8').trim();
  const apiKey = readFileSync(path.join(stateDir, 'api-key'), 'utf8').trim();
  return {
    pid: proc.pid!, stateDir, endpoint, apiKey, logFile,
    client: new RosetClient({ apiUrl: endpoint, apiKey, maxRetries: 0, timeoutMs: 120_000 }),
    stop: async () => {
      await stop();
      unregister();
    },
  };
}

/**
 * The FUSE bindings this build of roset-mount accepts, from its --help: the choices
 * of `--fuse-binding` when it has that flag (the native libfuse3 binding is selected
 * with it), else the one built-in binding, fuse-native.
 */
export function detectBindings(): { bindings: string[]; hasFlag: boolean; help: string } {
  const r = spawnSync(process.execPath, [MOUNT_BIN, '--help'], { encoding: 'utf8', timeout: 60_000 });
  const help = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  return { ...parseBindings(help), help };
}

/** The bindings a roset-mount --help text offers (see detectBindings). */
export function parseBindings(help: string): { bindings: string[]; hasFlag: boolean } {
  const at = help.indexOf('--fuse-binding');
  if (at < 0) return { bindings: ['fuse-native'], hasFlag: false };
  // commander wraps the description; the option's text runs to the next option line.
  const rest = help.slice(at);
  const end = rest.search(/\n {2}-/);
  const text = (end < 0 ? rest : rest.slice(0, end)).replace(/\s+/g, ' ');
  // `(choices: "a", "b", default: "a")`: only the quoted names before `default:`.
  const choices = /choices: ((?:"[^"]*"(?:, )?)+)/.exec(text)?.[1];
  const names = choices ? [...choices.matchAll(/"([^"]+)"/g)].map((mm) => mm[1]!) : [];
  return { bindings: names.length ? names : ['native', 'fuse-native'], hasFlag: true };
}

// ---- peers ---------------------------------------------------------------------------------

function peerEnv(): NodeJS.ProcessEnv {
  // rclone 1.60 refuses AWS_CA_BUNDLE over plain http (shared/notes/s3-test-servers.md).
  const env = { ...process.env };
  delete env.AWS_CA_BUNDLE;
  return env;
}

/** s3fs with its defaults (no local cache), on `bucket:/prefix`, temp files in `dir`. */
export async function startS3fs(dir: string, s3: S3Env, prefix: string): Promise<Mounted> {
  const mnt = path.join(dir, 'mnt');
  const tmp = path.join(dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  const passwd = path.join(dir, 'passwd');
  writeFileSync(passwd, `${s3.accessKeyId}:${s3.secretAccessKey}\n`, { mode: 0o600 });
  const opts = `passwd_file=${passwd},url=${s3.endpoint},use_path_request_style,endpoint=${s3.region},tmpdir=${tmp}`;
  return spawnMount('s3fs', mnt, path.join(dir, 's3fs.log'), 's3fs',
    [`${s3.bucket}:/${prefix.replace(/\/$/, '')}`, mnt, '-f', '-o', opts], peerEnv(), true);
}

/** `rclone mount --vfs-cache-mode writes` on `bucket/prefix`, its cache in `dir`. */
export async function startRclone(dir: string, s3: S3Env, prefix: string): Promise<Mounted> {
  const mnt = path.join(dir, 'mnt');
  const conf = path.join(dir, 'rclone.conf');
  mkdirSync(dir, { recursive: true });
  writeFileSync(conf, [
    '[bench]', 'type = s3', 'provider = Ceph', `endpoint = ${s3.endpoint}`, `access_key_id = ${s3.accessKeyId}`,
    `secret_access_key = ${s3.secretAccessKey}`, `region = ${s3.region}`, 'force_path_style = true', '',
  ].join('\n'), { mode: 0o600 });
  return spawnMount('rclone', mnt, path.join(dir, 'rclone.log'), 'rclone',
    ['mount', `bench:${s3.bucket}/${prefix.replace(/\/$/, '')}`, mnt, '--config', conf, '--vfs-cache-mode', 'writes',
      '--cache-dir', path.join(dir, 'cache')], peerEnv(), true);
}

// ---- JuiceFS -------------------------------------------------------------------------------

/** Where scripts/bench-setup caches the JuiceFS binary (`juicefs`, a link) or why it could not (`juicefs.failed`). */
export const BENCH_CACHE = process.env.ROSET_BENCH_CACHE ?? '/var/cache/roset-bench';

/** The JuiceFS binary to run (ROSET_BENCH_JUICEFS, else the cached build), or why there is none. */
export function juicefsBinary(): { bin: string; why: null } | { bin: null; why: string } {
  const bin = process.env.ROSET_BENCH_JUICEFS ?? path.join(BENCH_CACHE, 'juicefs');
  try {
    accessSync(bin, constants.X_OK);
    return { bin, why: null };
  } catch {
    let why = `no JuiceFS binary at ${bin} (scripts/bench-setup --peers builds it)`;
    try {
      why = readFileSync(path.join(BENCH_CACHE, 'juicefs.failed'), 'utf8').trim() || why;
    } catch {
      // No record of a failed build: it was never attempted.
    }
    return { bin: null, why };
  }
}

/** A JuiceFS volume: SQLite metadata in `dir`, data under `name/` in the test bucket. */
export interface JuiceFSVolume {
  bin: string;
  dir: string;
  name: string;
  meta: string;
  mnt: string;
  cacheDir: string;
  s3: S3Env;
}

function juicefsEnv(s3: S3Env): NodeJS.ProcessEnv {
  // Credentials through the environment, not argv; format stores them in the metadata.
  return { ...peerEnv(), ACCESS_KEY: s3.accessKeyId, SECRET_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
}

/**
 * `juicefs format` of a new volume (trash off, so a deleted file's blocks go at once).
 * Its objects go under `name/` in the bucket: JuiceFS takes no key prefix but its name.
 */
export function formatJuiceFS(bin: string, dir: string, s3: S3Env, name: string): JuiceFSVolume {
  mkdirSync(dir, { recursive: true });
  const meta = `sqlite3://${path.join(dir, 'meta.db')}`;
  const r = spawnSync(bin, ['format', '--storage', 's3', '--bucket', `${s3.endpoint.replace(/\/$/, '')}/${s3.bucket}`,
    '--trash-days', '0', '--no-update', meta, name], { env: juicefsEnv(s3), encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`juicefs format failed (${r.status ?? r.signal ?? r.error?.message}): ${`${r.stderr ?? ''}`.trim().split('\n').slice(-3).join(' | ')}`);
  return { bin, dir, name, meta, mnt: path.join(dir, 'mnt'), cacheDir: path.join(dir, 'cache'), s3 };
}

export interface JuiceFSMount extends Mounted {
  /** The process that serves FUSE (the mount command supervises it): measure this one. */
  servePid: number;
  /** True once write-back has uploaded everything: no staging block counted or on disk. */
  drained(): boolean;
}

/** Pid of the FUSE server, from `MNT/.config`; null while it does not answer yet. */
function juicefsServePid(mnt: string): number | null {
  try {
    const pid = Number(JSON.parse(readFileSync(path.join(mnt, '.config'), 'utf8')).Pid);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** Staged (not yet uploaded) blocks: the gauge in `.stats` plus any file left in rawstaging/. */
export function juicefsStaged(mnt: string, cacheDir: string): { gauge: number; files: number } {
  const stats = readFileSync(path.join(mnt, '.stats'), 'utf8');
  const m = /^juicefs_staging_blocks(?:\{[^}]*\})?\s+([0-9.e+]+)/m.exec(stats);
  if (!m) throw new Error('juicefs_staging_blocks is not in .stats');
  let files = 0;
  let vols: string[] = [];
  try {
    vols = readdirSync(cacheDir);
  } catch {
    // No cache directory yet: nothing staged.
  }
  for (const v of vols) {
    try {
      files += readdirSync(path.join(cacheDir, v, 'rawstaging'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;
    } catch {
      // This volume has no staging directory.
    }
  }
  return { gauge: Number(m[1]), files };
}

/** `juicefs mount --writeback` of a formatted volume, in the foreground, its cache in `v.cacheDir`. */
export async function mountJuiceFS(v: JuiceFSVolume): Promise<JuiceFSMount> {
  const args = ['mount', v.meta, v.mnt, '--cache-dir', v.cacheDir, '--writeback', '--no-usage-report', '--metrics', '127.0.0.1:0'];
  const m = await spawnMount('juicefs', v.mnt, path.join(v.dir, 'juicefs.log'), v.bin, args, juicefsEnv(v.s3), true,
    () => juicefsServePid(v.mnt) !== null);
  const servePid = juicefsServePid(v.mnt)!;
  return { ...m, servePid, drained: () => { const s = juicefsStaged(v.mnt, v.cacheDir); return s.gauge === 0 && s.files === 0; } };
}

/** Polls until JuiceFS's write-back has drained; returns when that was first seen (epoch ms). */
export async function waitDrained(m: JuiceFSMount, pollMs: number, timeoutMs: number, now: () => number): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (m.drained()) return now();
    if (Date.now() > end) throw new Error(`JuiceFS write-back not drained after ${timeoutMs / 1000} s`);
    await sleep(pollMs);
  }
}

/** Whether a pid this module started is still running. */
export function alive(pid: number): boolean {
  return processAlive(pid);
}
