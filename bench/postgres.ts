/**
 * The benchmark's throwaway PostgreSQL cluster, for `roset serve` in the multi-node
 * rows: `initdb` into a fresh directory in the system's temporary directory (not under
 * the run directory: mkdtemp makes that 0700, and the server runs as another user),
 * `pg_ctl -w start` on a free port of 127.0.0.1 (trust authentication, its unix socket
 * in that directory), one database made with `createdb`, from the binaries of
 * Debian's `postgresql` package (`/usr/lib/postgresql/<version>/bin`, installed by
 * scripts/setup).
 *
 * Owns: the cluster's directory and its processes, from `initdb` to removal.
 *
 * Invariants:
 * - Never skipped: without the binaries `startPostgres()` throws, naming
 *   scripts/setup, and the rows that need it are reported as errors.
 * - Nothing is left behind: the cluster is registered for cleanup (systems.ts) before
 *   `initdb` runs, so the run's teardown, on failure and on SIGINT/SIGTERM too, stops
 *   it (`pg_ctl -m immediate`, then SIGKILL of the postmaster by the pid in its
 *   `postmaster.pid`) and removes its directory; a watcher process does the same if
 *   the benchmark itself is killed outright.
 * - The server runs as the `postgres` system user when the benchmark runs as root
 *   (PostgreSQL refuses root), as the current user otherwise.
 * - Durability is off (fsync, synchronous_commit, full_page_writes): the cluster is
 *   thrown away, and a real deployment's disk is not what this machine's is. The
 *   settings are recorded with the results.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { onCleanup } from './systems.js';

export interface BenchPostgres {
  /** `postgres://postgres@127.0.0.1:<port>/<database>`. */
  url: string;
  /** The cluster's directory (data, socket, log), removed by `stop()`. */
  dir: string;
  version: string;
  settings: string[];
  /** Stops the cluster for good and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

const SETUP_HINT = 'run scripts/setup (it installs the postgresql package)';

/** Durability off: a throwaway cluster (see the header). */
const SETTINGS = ['fsync=off', 'synchronous_commit=off', 'full_page_writes=off', 'max_connections=200', 'log_min_messages=warning'];

/** The newest `/usr/lib/postgresql/<version>/bin` holding initdb, pg_ctl and createdb. */
export function postgresBinDir(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) {
    const bin = path.join(base, v, 'bin');
    if (['initdb', 'pg_ctl', 'createdb', 'postgres'].every((t) => existsSync(path.join(bin, t)))) return bin;
  }
  throw new Error(`PostgreSQL server binaries (initdb, pg_ctl, createdb) not found under ${base}/*/bin: ${SETUP_HINT}`);
}

/** Who runs the server: the `postgres` user when we are root. */
function serverUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error(`no postgres system user (PostgreSQL does not run as root): ${SETUP_HINT}`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts a cluster with one database, `roset_bench`. */
export async function startPostgres(log: (msg: string) => void): Promise<BenchPostgres> {
  const bin = postgresBinDir();
  const user = serverUser();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-bench-pg-'));
  const data = path.join(dir, 'data');
  const serverLog = path.join(dir, 'server.log');
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C', TZ: 'UTC' };
  const exec = (tool: string, args: string[], timeout = 120_000, asServer = true): string => execFileSync(path.join(bin, tool), args, {
    cwd: dir, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout, ...(asServer && user ? user : {}),
  });
  const logTail = (): string => { try { return readFileSync(serverLog, 'utf8').split('\n').slice(-20).join('\n'); } catch { return ''; } };
  const postmasterPid = (): number | null => {
    try { return Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]) || null; } catch { return null; }
  };

  let watcher: number | undefined;
  let stopped = false;
  const remove = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const pid = postmasterPid();
    try { exec('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '60', 'stop'], 90_000); } catch { /* not running, or killed below */ }
    if (pid && alive(pid)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    // The postmaster is an orphan once pg_ctl started it: wait until init reaped it.
    for (const end = Date.now() + 10_000; pid && alive(pid) && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
    if (pid && alive(pid)) log(`  PostgreSQL postmaster ${pid} still running after SIGKILL`);
    if (watcher) { try { process.kill(watcher, 'SIGKILL'); } catch { /* gone */ } }
    rmSync(dir, { recursive: true, force: true });
  };
  const unregister = onCleanup(`PostgreSQL cluster ${dir}`, remove);

  let port = 0;
  try {
    if (user) chownSync(dir, user.uid, user.gid);
    exec('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-locale', '--no-sync'], 120_000);
    const opts = (p: number): string => ['-c listen_addresses=127.0.0.1', `-p ${p}`, `-k ${dir}`, ...SETTINGS.map((s) => `-c ${s}`)].join(' ');
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        exec('pg_ctl', ['-D', data, '-l', serverLog, '-w', '-t', '60', '-o', opts(port), 'start'], 90_000);
        break;
      } catch (err) {
        // Another process may have taken the port between the probe and the start.
        if (attempt >= 3) throw new Error(`PostgreSQL did not start: ${(err as Error).message}\n${logTail()}`);
      }
    }
    // If the benchmark dies without its teardown (SIGKILL), this stops and removes the cluster.
    const w = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; `
      + `${user ? 'runuser -u postgres -- ' : ''}"${bin}/pg_ctl" -D "${data}" -m immediate -w stop >/dev/null 2>&1; rm -rf "${dir}"`], {
      detached: true, stdio: 'ignore', cwd: '/',
    });
    w.unref();
    watcher = w.pid;
    exec('createdb', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-T', 'template0', '-E', 'UTF8', 'roset_bench'], 60_000);
  } catch (err) {
    await remove();
    unregister();
    if ((err as { code?: string }).code === 'ENOENT') throw new Error(`PostgreSQL binaries could not be run: ${SETUP_HINT}`, { cause: err });
    throw err;
  }
  let version = 'unknown';
  try { version = exec('postgres', ['--version'], 10_000, false).trim(); } catch { /* best effort */ }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/roset_bench`,
    dir,
    version,
    settings: SETTINGS,
    stop: async () => {
      await remove();
      unregister();
    },
  };
}
