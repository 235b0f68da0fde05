/**
 * Contenders in a ref compare-and-swap race, each its own process using the built SDK
 * (dist/sdk), as separate training jobs would be.
 *
 * A contender makes a first request (so its start-up is over), prints `ready`, then
 * blocks opening a FIFO for reading. `release` opens that FIFO for writing, which
 * returns every contender's open at once; each then sends its compare-and-swap and
 * prints the outcome as one JSON line. The write end stays open until every contender
 * is done, so one that reaches its open late passes straight through instead of
 * waiting for a writer that has gone.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { open } from 'node:fs/promises';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO, type TestDaemon } from './daemon.js';

const SCRIPT = `
const { openSync, closeSync } = require('node:fs');
const [sdk, endpoint, apiKey, fifo, ref, expected, target] = process.argv.slice(1);
(async () => {
  const { RosetClient } = await import(sdk);
  const client = new RosetClient({ apiUrl: endpoint, apiKey, maxRetries: 0 });
  await client.getRef(ref);
  process.stdout.write('ready\\n');
  closeSync(openSync(fifo, 'r'));
  try {
    const r = await client.updateRef(ref, target, { expectedCommitId: expected });
    process.stdout.write(JSON.stringify({ won: true, commitId: r.commitId }) + '\\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ won: false, status: err.status, code: err.rosetCode, message: err.message }) + '\\n');
  }
})().catch((err) => { console.error(err); process.exit(1); });
`;

export type RaceOutcome = { won: true; commitId: string } | { won: false; status: number; code: string; message: string };

interface Contender {
  proc: ChildProcess;
  ready: Promise<void>;
  outcome: Promise<RaceOutcome>;
}

function startContender(d: TestDaemon, fifo: string, ref: string, expected: string, target: string): Contender {
  const sdk = pathToFileURL(path.join(REPO, 'dist', 'sdk', 'index.js')).href;
  const proc = spawn(process.execPath, ['-e', SCRIPT, sdk, d.endpoint, d.apiKey, fifo, ref, expected, target], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const ready = new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.startsWith('ready\n')) resolve();
    });
    void exited.then((code) => reject(new Error(`contender exited (${code}) before it was ready: ${out}${err}`)));
  });
  const outcome = exited.then((code) => {
    const line = out.split('\n')[1];
    if (code !== 0 || !line) throw new Error(`contender exited (${code}) without an outcome: ${out}${err}`);
    return JSON.parse(line) as RaceOutcome;
  });
  void outcome.catch(() => undefined); // awaited by raceRefMoves, unless it failed earlier
  return { proc, ready, outcome };
}

/**
 * Moves `ref` from `expected` to each of `targets`, one process per target, all
 * released at once; resolves with every outcome, in the order of `targets`.
 */
export async function raceRefMoves(d: TestDaemon, ref: string, expected: string, targets: string[]): Promise<RaceOutcome[]> {
  const fifo = path.join(d.root, `race-${ref}`);
  const mk = spawnSync('mkfifo', [fifo], { encoding: 'utf8' });
  if (mk.status !== 0) throw new Error(`mkfifo ${fifo} failed: ${mk.error?.message ?? mk.stderr}`);
  const contenders = targets.map((t) => startContender(d, fifo, ref, expected, t));
  try {
    await Promise.all(contenders.map((c) => c.ready));
    const gate = await open(fifo, 'w');
    try {
      return await Promise.all(contenders.map((c) => c.outcome));
    } finally {
      await gate.close();
    }
  } finally {
    // Only after a failure is one still running (perhaps blocked on the FIFO).
    for (const c of contenders) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  }
}
