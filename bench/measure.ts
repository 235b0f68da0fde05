/**
 * Measuring tools shared by the rows: the I/O worker as a child process, page-cache
 * dropping, commit polling, the RSS sampler, statistics and the progress log.
 *
 * Invariants:
 * - A time is taken where the thing it names starts and ends: file I/O inside the
 *   worker (open to close), an HTTP call around the SDK call alone, a commit from the
 *   writer's close (the worker's clock) to the first poll that sees `completed`.
 *   Worker and benchmark clocks are both `performance.timeOrigin + now()`, the same
 *   wall clock to well under a millisecond.
 * - Page caches are dropped per file (POSIX_FADV_DONTNEED through `dd iflag=nocache
 *   count=0`), never machine-wide with /proc/sys/vm/drop_caches: other people work on
 *   these machines and a global drop would disturb them, and their runs would
 *   disturb ours.
 * - Every worker is registered for cleanup, so an interrupted run kills it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Commit, RosetClient } from '../src/sdk/index.js';
import { sleep } from '../src/util/sleep.js';
import { OPEN_LINE } from './io.js';
import { memoryOf, onCleanup } from './systems.js';

const IO_JS = path.join(path.dirname(new URL(import.meta.url).pathname), 'io.js');

export const epochNow = (): number => performance.timeOrigin + performance.now();

const T0 = Date.now();
export function log(msg: string): void {
  const s = Math.floor((Date.now() - T0) / 1000);
  process.stderr.write(`[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${msg}\n`);
}

export interface IoResult {
  bytes: number;
  files?: number;
  ms: number;
  startEpochMs: number;
  endEpochMs: number;
}

/** Runs `io.js ARGS` and returns its JSON; its progress lines pass through to stderr. */
export function runIo(args: string[], timeoutMs = 3_600_000): Promise<IoResult> {
  return spawnIo(args, timeoutMs, null).done;
}

/** A `write --hold` worker: its file is open once `opened` resolves; `go()` lets it write and close. */
export interface HeldWriter {
  opened: Promise<void>;
  go(): void;
  done: Promise<IoResult & { openEpochMs: number }>;
}

/** Runs `io.js write PATH BYTES SEED --hold`: opens the file, then waits for `go()`. */
export function runHeldWrite(file: string, bytes: number, seed: number, timeoutMs = 3_600_000): HeldWriter {
  let opened!: () => void;
  const openedP = new Promise<void>((resolve) => { opened = resolve; });
  const w = spawnIo(['write', file, String(bytes), String(seed), '--hold'], timeoutMs, (line) => {
    if (line === OPEN_LINE) opened();
  });
  return {
    // A worker that fails before its open rejects here too, not only in `done`.
    opened: Promise.race([openedP, w.done.then(() => { throw new Error(`io write --hold ${file} exited before it opened the file`); })]),
    go: () => {
      if (w.child.stdin && !w.child.stdin.writableEnded) w.child.stdin.end('go\n');
    },
    done: w.done as Promise<IoResult & { openEpochMs: number }>,
  };
}

function spawnIo(args: string[], timeoutMs: number, onLine: ((line: string) => void) | null): { child: ChildProcess; done: Promise<IoResult> } {
  const child = spawn(process.execPath, [IO_JS, ...args], { stdio: [onLine ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  const done = new Promise<IoResult>((resolve, reject) => {
    let out = '';
    let err = '';
    let partial = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => {
      const text = d.toString();
      err += text;
      if (onLine) {
        const lines = (partial + text).split('\n');
        partial = lines.pop()!;
        for (const l of lines) {
          if (l === OPEN_LINE) onLine(l);
          else process.stderr.write(`${l}\n`);
        }
      } else {
        process.stderr.write(d);
      }
    });
    // The worker may be gone before the go line is written: that is its exit's story.
    child.stdin?.on('error', () => undefined);
    const unregister = onCleanup(`io ${args[0]} (pid ${child.pid})`, async () => { child.kill('SIGKILL'); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); unregister(); reject(e); });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      unregister();
      if (code === 0) {
        try {
          resolve(JSON.parse(out) as IoResult);
        } catch {
          reject(new Error(`io ${args.join(' ')} printed no result: ${out}`));
        }
      } else {
        reject(new Error(`io ${args.join(' ')} failed (${code ?? signal}): ${err.trim().split('\n').slice(-3).join(' | ')}`));
      }
    });
  });
  // Callers may await `opened` first: an early failure must not count as unhandled.
  done.catch(() => undefined);
  return { child, done };
}

/** Drops the page cache of a file, or of every file under a directory. */
export function dropCache(target: string): void {
  let files: string[];
  try {
    files = readdirSync(target, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
  } catch {
    files = [target];
  }
  for (const f of files) spawnSync('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none'], { stdio: 'ignore' });
}

/** Polls a commit until it leaves `pending`; returns it and when that was first seen. */
export async function waitCommit(client: RosetClient, id: string, pollMs: number, timeoutMs: number): Promise<{ commit: Commit; doneEpochMs: number }> {
  const end = Date.now() + timeoutMs;
  let lastLog = Date.now();
  for (;;) {
    const c = await client.getCommit(id);
    const at = epochNow();
    if (c.status === 'completed') return { commit: c, doneEpochMs: at };
    if (c.status === 'failed') throw new Error(`commit ${id} failed: ${c.error?.code}: ${c.error?.message}`);
    if (Date.now() > end) throw new Error(`commit ${id} still pending after ${timeoutMs / 1000} s`);
    if (Date.now() - lastLog > 10_000) {
      lastLog = Date.now();
      const s = c.stats;
      log(`      commit ${id}: pending${s ? `, ${(s.uploadedBytes / 2 ** 20).toFixed(0)} MiB uploaded of ${(s.bytes / 2 ** 20).toFixed(0)} MiB` : ''}`);
    }
    await sleep(pollMs);
  }
}

/** Samples VmRSS of a pid every `everyMs`; `stop()` returns the samples' maximum. */
export function sampleRss(pid: number, everyMs = 200): { stop: () => { maxRssKiB: number; samples: number } } {
  let max = 0;
  let n = 0;
  const t = setInterval(() => {
    const m = memoryOf(pid);
    if (m && Number.isFinite(m.rssKiB)) {
      max = Math.max(max, m.rssKiB);
      n++;
    }
  }, everyMs);
  return { stop: () => { clearInterval(t); return { maxRssKiB: max, samples: n }; } };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile, so p99 of 200 samples is the second largest. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const MBps = (bytes: number, ms: number): number => bytes / ms / 1000;
