/**
 * The benchmark's I/O worker, run as a child process (`node bench/dist/bench/io.js OP ...`):
 * the one program that writes, reads and creates files for every system under test,
 * so Roset, the peers and the local-disk references all see the same syscalls.
 *
 *   write PATH BYTES SEED [--no-fsync] [--hold]
 *                                        open(O_CREAT|O_TRUNC), 1 MiB writes, fsync, close;
 *                                        with --hold: after the open, print `io: open`
 *                                        on stderr and wait for a line on stdin before
 *                                        writing (a writer that holds its file open)
 *   read PATH [SEED]                     open, 1 MiB reads to EOF, close; checks block headers
 *   small DIR COUNT BYTES SEED           COUNT × (open O_EXCL, one write, close)
 *
 * It prints one JSON line on stdout: {bytes, files, ms, startEpochMs, endEpochMs}
 * (with --hold also openEpochMs; startEpochMs and ms then start at the go line).
 * Progress lines go to stderr.
 *
 * Invariants:
 * - Timing covers open to close (fsync included for `write`), like `dd bs=1M
 *   conv=fsync`; everything else (generating data, starting Node) is outside it.
 * - A child process, not the benchmark's own event loop: blocking syscalls here never
 *   stall the RSS sampler or the progress display, and the benchmark's own heap does
 *   not sit in the page cache path of the writes.
 * - Data is deterministic from SEED (so a reference can upload "the same bytes") and
 *   never repeats across files or blocks: every 1 MiB block and every small file
 *   starts with a header naming its seed and index, so content addressing never
 *   dedups one benchmark file against another, and a read can check that it got the
 *   bytes that were written (a cold read through a mount is checked, not trusted).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

export const BLOCK = 1 << 20;
const POOL_BLOCKS = 16;
const HEADER = 32;
const MAGIC = 'roset-bench-v1\0\0';

/** 16 MiB of pseudo-random bytes from a seed (xorshift32: fast, not cryptographic). */
function pool(seed: number): Buffer {
  const buf = Buffer.allocUnsafe(POOL_BLOCKS * BLOCK);
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  for (let i = 0; i < buf.length; i += 4) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  return buf;
}

function writeHeader(buf: Buffer, seed: number, index: number): void {
  buf.write(MAGIC, 0, 'latin1');
  buf.writeUInt32LE(seed >>> 0, 16);
  buf.writeUInt32LE(0, 20);
  buf.writeBigUInt64LE(BigInt(index), 24);
}

function checkHeader(buf: Buffer, seed: number, index: number): boolean {
  return buf.toString('latin1', 0, 16) === MAGIC && buf.readUInt32LE(16) === seed >>> 0 && buf.readBigUInt64LE(24) === BigInt(index);
}

/** Block `index` of the file with `seed`: a pool slice with its own header. */
export function fileBlock(p: Buffer, seed: number, index: number, out: Buffer): void {
  p.copy(out, 0, (index % POOL_BLOCKS) * BLOCK, (index % POOL_BLOCKS) * BLOCK + out.length);
  if (out.length >= HEADER) writeHeader(out, seed, index);
}

const now = (): number => performance.timeOrigin + performance.now();

function progress(label: string, done: number, total: number, t0: number, unit: 'bytes' | 'files'): void {
  const s = (now() - t0) / 1000;
  const rate = unit === 'bytes' ? `${(done / s / 1e6).toFixed(0)} MB/s` : `${(done / s).toFixed(0)} files/s`;
  const amount = unit === 'bytes' ? `${(done / 2 ** 30).toFixed(1)} / ${(total / 2 ** 30).toFixed(1)} GiB` : `${done} / ${total} files`;
  process.stderr.write(`      ${label}: ${amount}, ${rate}\n`);
}

function writeAll(fd: number, buf: Buffer, len: number, pos: number): void {
  let off = 0;
  while (off < len) off += fs.writeSync(fd, buf, off, len - off, pos + off);
}

export const OPEN_LINE = 'io: open';

/** Blocks until a line arrives on stdin (or it closes): the go signal of `write --hold`. */
function waitForLine(): void {
  const buf = Buffer.alloc(64);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(0, buf, 0, buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(nap, 0, 0, 5);
      continue;
    }
    if (n === 0 || buf.subarray(0, n).includes(10)) return;
  }
}

function opWrite(file: string, bytes: number, seed: number, fsync: boolean, hold: boolean): object {
  const p = pool(seed);
  const bufs = [Buffer.allocUnsafe(BLOCK), Buffer.allocUnsafe(BLOCK)];
  let t0 = now();
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o644);
  const openEpochMs = now();
  if (hold) {
    process.stderr.write(`${OPEN_LINE}\n`);
    waitForLine();
    t0 = now();
  }
  let lastReport = t0;
  let pos = 0;
  for (let i = 0; pos < bytes; i++) {
    const len = Math.min(BLOCK, bytes - pos);
    const b = bufs[i & 1]!;
    fileBlock(p, seed, i, b);
    writeAll(fd, b, len, pos);
    pos += len;
    if (now() - lastReport > 5000) {
      lastReport = now();
      progress('write', pos, bytes, t0, 'bytes');
    }
  }
  if (fsync) fs.fsyncSync(fd);
  fs.closeSync(fd);
  const t1 = now();
  return { bytes: pos, ms: t1 - t0, startEpochMs: t0, endEpochMs: t1, ...(hold ? { openEpochMs } : {}) };
}

function opRead(file: string, seed: number | undefined): object {
  const buf = Buffer.allocUnsafe(BLOCK);
  const t0 = now();
  let lastReport = t0;
  const fd = fs.openSync(file, fs.constants.O_RDONLY);
  let pos = 0;
  let bad = 0;
  for (let i = 0; ; i++) {
    // A block may come back in more than one read; headers are checked on whole blocks.
    let got = 0;
    while (got < BLOCK) {
      const n = fs.readSync(fd, buf, got, BLOCK - got, pos + got);
      if (n === 0) break;
      got += n;
    }
    if (got === 0) break;
    if (seed !== undefined && got >= HEADER && !checkHeader(buf, seed, i)) bad++;
    pos += got;
    if (now() - lastReport > 5000) {
      lastReport = now();
      progress('read', pos, pos, t0, 'bytes');
    }
    if (got < BLOCK) break;
  }
  fs.closeSync(fd);
  const t1 = now();
  if (bad) throw new Error(`${file}: ${bad} block(s) with the wrong header: the read returned bytes that were not written`);
  return { bytes: pos, ms: t1 - t0, startEpochMs: t0, endEpochMs: t1 };
}

export function smallFileName(i: number): string {
  return `f${String(i).padStart(6, '0')}.bin`;
}

function opSmall(dir: string, count: number, size: number, seed: number): object {
  const p = pool(seed);
  const bodies = Array.from({ length: count }, (_, i) => smallFileBody(seed, i, size, p));
  fs.mkdirSync(dir, { recursive: true });
  const t0 = now();
  let lastReport = t0;
  for (let i = 0; i < count; i++) {
    const body = bodies[i]!;
    const fd = fs.openSync(path.join(dir, smallFileName(i)), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
    writeAll(fd, body, size, 0);
    fs.closeSync(fd);
    if (now() - lastReport > 5000) {
      lastReport = now();
      progress('create', i + 1, count, t0, 'files');
    }
  }
  const t1 = now();
  return { bytes: count * size, files: count, ms: t1 - t0, startEpochMs: t0, endEpochMs: t1 };
}

/** The bytes of small file `i` as `small` writes them (for the raw-PUT reference). */
export function smallFileBody(seed: number, i: number, size: number, p: Buffer = pool(seed)): Buffer {
  const body = Buffer.allocUnsafe(size);
  p.copy(body, 0, (i * 4096) % (p.length - size), (i * 4096) % (p.length - size) + size);
  if (size >= HEADER) writeHeader(body, seed, i);
  return body;
}

export { pool as dataPool };

function main(argv: string[]): void {
  const [op, ...args] = argv;
  let out: object;
  switch (op) {
    case 'write':
      out = opWrite(args[0]!, Number(args[1]), Number(args[2]), !args.includes('--no-fsync'), args.includes('--hold'));
      break;
    case 'read':
      out = opRead(args[0]!, args[1] === undefined ? undefined : Number(args[1]));
      break;
    case 'small':
      out = opSmall(args[0]!, Number(args[1]), Number(args[2]), Number(args[3]));
      break;
    default:
      throw new Error(`io: unknown op ${String(op)}`);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// Only as a program: run.ts imports this module for smallFileBody and dataPool.
if (process.argv[1] && import.meta.url === new URL(`file://${path.resolve(process.argv[1])}`).href) {
  try {
    main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`io: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
