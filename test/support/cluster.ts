/**
 * Test harness for many nodes on one machine: a real `roset serve` (its own state
 * directory, on SQLite or a PostgreSQL URL) and real `roset-mount` agents pointed at it,
 * each with its own mountpoint, cache and state directory, standing for one GPU node.
 *
 * Invariants: every process started here is registered for teardown; `stopCluster`
 * stops agents first (unmounting them, see daemon.ts), then the servers, with SIGKILL
 * as the last resort, so no test leaves a mount or a process behind even when it fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { RosetClient } from '../../src/sdk/index.js';
import { sleep } from '../../src/util/sleep.js';
import { REPO, runCli, startDaemon, stopAll, tempRoot, type CliResult, type DaemonOptions, type TestDaemon } from './daemon.js';

const CLI_BIN = path.join(REPO, 'bin', 'roset.js');

export interface ServeOptions {
  /** Reuse the directories of an earlier serve (restart). */
  root?: string;
  /** `sqlite:` by default, or a `postgres://` URL. */
  database?: string;
  store: string;
  /** Where to listen (a restart keeps its port, so agents find it again); default a free port. */
  listen?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** The CA the test's own client trusts (a serve on HTTPS). */
  caFile?: string;
}

export interface TestServe {
  root: string;
  stateDir: string;
  endpoint: string;
  apiKey: string;
  client: RosetClient;
  proc: ChildProcess;
  logs: () => string;
  stop: () => Promise<void>;
  kill9: () => Promise<void>;
  cli: (...args: string[]) => CliResult;
  /** Resolves once the logs contain `text` (a failpoint reached, a takeover). */
  logged: (text: string, ms?: number) => Promise<void>;
}

const servers = new Set<TestServe>();

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once('exit', () => resolve()));
}

export async function startServe(opts: ServeOptions): Promise<TestServe> {
  const root = opts.root ?? tempRoot('roset-serve-');
  const stateDir = path.join(root, 'state');
  const args = [CLI_BIN, 'serve', '--state-dir', stateDir, '--listen', opts.listen ?? '127.0.0.1:0', '--store', opts.store, '--log-level', 'debug',
    '--database', opts.database ?? 'sqlite:', ...(opts.args ?? [])];
  const proc = spawn(process.execPath, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const logs = (): string => out;
  const info = path.join(stateDir, 'serve.json');
  const end = Date.now() + 60_000;
  for (;;) {
    try {
      if (existsSync(info) && JSON.parse(readFileSync(info, 'utf8')).pid === proc.pid) break;
    } catch {
      // Being written.
    }
    if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > end) {
      proc.kill('SIGKILL');
      await exited(proc);
      throw new Error(`roset serve did not come up:\n${out}`);
    }
    await sleep(50);
  }
  const endpoint = readFileSync(path.join(stateDir, 'endpoint'), 'utf8').trim();
  const apiKey = readFileSync(path.join(stateDir, 'api-key'), 'utf8').trim();
  const s: TestServe = {
    root, stateDir, endpoint, apiKey, proc, logs,
    client: new RosetClient({ apiUrl: endpoint, apiKey, maxRetries: 0, caFile: opts.caFile }),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited(proc);
      clearTimeout(t);
      servers.delete(s);
    },
    kill9: async () => {
      proc.kill('SIGKILL');
      await exited(proc);
      servers.delete(s);
    },
    cli: (...cliArgs) => runCli(stateDir, cliArgs),
    logged: async (text, ms = 120_000) => {
      const until = Date.now() + ms;
      while (!out.includes(text)) {
        if (Date.now() > until) throw new Error(`roset serve never logged ${JSON.stringify(text)}:\n${out.slice(-4000)}`);
        await sleep(20);
      }
    },
  };
  servers.add(s);
  return s;
}

/** A `roset-mount` agent of `serve` (one node): its own mountpoint, cache and state directory. */
export async function startAgent(serve: { endpoint: string; apiKey: string }, opts: DaemonOptions = {}): Promise<TestDaemon> {
  return startDaemon({ ...opts, args: ['--api-url', serve.endpoint, '--api-key', serve.apiKey, ...(opts.args ?? [])] });
}

/** Agents first (they unmount), then the servers. */
export async function stopCluster(): Promise<void> {
  await stopAll();
  for (const s of [...servers]) await s.stop().catch(() => undefined);
}
