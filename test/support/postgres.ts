/**
 * A throwaway PostgreSQL server for tests: `startPostgres()` runs `initdb` into a
 * temporary directory and starts the cluster with `pg_ctl -w` on a free port of
 * 127.0.0.1 (trust authentication, unix socket in that directory), from the binaries
 * of Debian's `postgresql` package (`/usr/lib/postgresql/<version>/bin`).
 *
 * Owns: the cluster's directory and processes, from start to removal.
 *
 * Invariants:
 * - Never skips: without the binaries, `startPostgres()` throws, naming
 *   `scripts/setup` (which installs them).
 * - Nothing is left behind: `stop()` stops the cluster (`-m immediate`), makes sure the
 *   postmaster is gone and removes the directory; clusters a test did not stop are
 *   stopped when the process exits, and a watcher process stops and removes the
 *   cluster if the test process is killed outright.
 * - The server runs as the `postgres` system user when tests run as root (PostgreSQL
 *   refuses to run as root), and as the current user otherwise.
 * - Durability is off (fsync, synchronous_commit, full_page_writes): a test server is
 *   thrown away. `track_commit_timestamp` is on, for tests that order transactions by
 *   their commit.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (the maintenance database). */
  url: string;
  port: number;
  /** Stops the cluster for good and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
  /**
   * Stops the cluster (`-m fast`: sessions are told the server shuts down), runs
   * `whileDown` if given, and starts the same cluster on the same port again.
   */
  restart(whileDown?: () => Promise<void>): Promise<void>;
  /**
   * Terminates every session of a database but its own (`pg_terminate_backend`, what a
   * restart does to them), synchronously, through psql: the caller's event loop reads
   * none of the notices before it next waits, as a process that slept through a
   * restart would.
   */
  terminateSessionsSync(dbUrl: string): void;
  /** A new, empty database on this server; returns its URL. */
  createDatabase(): Promise<string>;
  /** Drops a database `createDatabase` made (nothing may be connected to it). */
  dropDatabase(url: string): Promise<void>;
}

const SETUP_HINT = 'run scripts/setup, which installs the postgresql package';

/** The newest `/usr/lib/postgresql/<version>/bin` holding initdb and pg_ctl. */
export function postgresBinDir(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) {
    const bin = path.join(base, v, 'bin');
    if (existsSync(path.join(bin, 'initdb')) && existsSync(path.join(bin, 'pg_ctl'))) return bin;
  }
  throw new Error(`PostgreSQL server binaries (initdb, pg_ctl) not found under ${base}/*/bin: ${SETUP_HINT}`);
}

/** Who runs the server: the `postgres` user when we are root. */
function serverUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error(`No postgres system user (PostgreSQL does not run as root): ${SETUP_HINT}`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const running = new Set<() => void>();
let exitHook = false;

function stopAllAtExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => { for (const stop of [...running]) stop(); });
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const user = serverUser();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-pg-'));
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  if (user) chownSync(dir, user.uid, user.gid);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C', TZ: 'UTC' };
  const exec = (tool: string, args: string[], timeout = 120_000): string => execFileSync(path.join(bin, tool), args, {
    cwd: dir, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout, ...(user ?? {}),
  });
  const serverLog = (): string => { try { return readFileSync(log, 'utf8').split('\n').slice(-20).join('\n'); } catch { return ''; } };
  const postmasterPid = (): number | null => {
    try { return Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]) || null; } catch { return null; }
  };

  let port = 0;
  let watcher: number | undefined;
  let stopped = false;

  /** Stops the server now, whatever state it is in, and waits until the postmaster is gone. */
  const halt = (mode: 'immediate' | 'fast'): void => {
    const pid = postmasterPid();
    try { exec('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop'], 90_000); } catch { /* not running, or stopped below */ }
    if (pid) {
      try {
        process.kill(pid, 0);
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
  };
  const remove = (): void => {
    if (stopped) return;
    stopped = true;
    running.delete(remove);
    const pid = postmasterPid();
    halt('immediate');
    if (watcher) { try { process.kill(watcher, 'SIGKILL'); } catch { /* gone */ } }
    // The postmaster is an orphan once pg_ctl has started it: wait until its parent
    // (init) has reaped it, so that nothing of the cluster is left when stop() returns.
    for (const end = Date.now() + 5000; pid && Date.now() < end;) {
      try { process.kill(pid, 0); } catch { break; }
      execFileSync('sleep', ['0.05']);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  running.add(remove);
  stopAllAtExit();

  const start = (): void => {
    const opts = [
      '-c listen_addresses=127.0.0.1', `-p ${port}`, `-k ${dir}`, '-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off',
      '-c max_connections=200', '-c track_commit_timestamp=on', '-c log_min_messages=warning',
    ].join(' ');
    exec('pg_ctl', ['-D', data, '-l', log, '-w', '-t', '60', '-o', opts, 'start'], 90_000);
  };

  try {
    exec('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-locale', '--no-sync'], 120_000);
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        start();
        break;
      } catch (err) {
        // Another process may have taken the port between the probe and the start.
        if (attempt >= 3) throw new Error(`PostgreSQL did not start: ${(err as Error).message}\n${serverLog()}`);
      }
    }
    // If this process dies without stopping the cluster (SIGKILL), the watcher does.
    const w = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; `
      + `${user ? `runuser -u postgres -- ` : ''}"${bin}/pg_ctl" -D "${data}" -m immediate -w stop >/dev/null 2>&1; rm -rf "${dir}"`], {
      detached: true, stdio: 'ignore', cwd: '/',
    });
    w.unref();
    watcher = w.pid;
  } catch (err) {
    remove();
    if ((err as { code?: string }).code === 'ENOENT') throw new Error(`PostgreSQL binaries could not be run: ${SETUP_HINT}`, { cause: err });
    throw err;
  }

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let databases = 0;
  const admin = async (statement: string): Promise<void> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(statement);
    } finally {
      await c.end();
    }
  };
  return {
    url,
    port,
    stop: async () => { remove(); },
    restart: async (whileDown) => {
      halt('fast');
      try {
        await whileDown?.();
      } finally {
        start();
      }
    },
    terminateSessionsSync: (dbUrl) => {
      const name = new URL(dbUrl).pathname.slice(1);
      exec('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', name, '-v', 'ON_ERROR_STOP=1', '-c',
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()']);
    },
    createDatabase: async () => {
      const name = `roset_${++databases}_${randomBytes(4).toString('hex')}`;
      await admin(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8'`);
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    dropDatabase: async (dbUrl) => {
      const name = new URL(dbUrl).pathname.slice(1);
      if (!/^roset_\d+_[0-9a-f]+$/.test(name)) throw new Error(`not a test database: ${name}`);
      await admin(`DROP DATABASE IF EXISTS ${name}`);
    },
  };
}
