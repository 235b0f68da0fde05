/**
 * Block hashes of an object: the object cut into fixed-size blocks (the last one
 * shorter), each hashed alone, so a reader can verify any block it fetched without
 * the bytes before it, and verify many blocks at once, one per core.
 *
 * Owns: the block size and the block hash (docs/SEMANTICS.md, "Block hashes", says why
 * these), the check of a block list read from a manifest, and a pool of worker threads
 * that hash blocks off the main thread.
 *
 * Invariants:
 * - A block's hash is BLAKE3 (256 bits, lowercase hex) of its bytes: from the native
 *   addon `roset_hash.node` (the official C implementation, native/vendor/blake3,
 *   with SIMD chosen at run time) when it loads, else from `hash-wasm`'s WebAssembly
 *   build of the same code; the digests are the same, only the speed differs (about
 *   4 GB/s against 1 GB/s per core here). The whole-file
 *   SHA-256 stays the object's name; block hashes only say which bytes of it are right.
 * - `parseBlockHashes` accepts a list only if it describes exactly an object of the size
 *   the caller trusts (one hash per block, every hash well formed); anything else is
 *   null, and the reader falls back to the whole-file check.
 * - The pool's workers never keep the process alive (unref), and a worker that dies
 *   fails the hashes it held; no hash is ever reported for bytes it did not see.
 * - A block goes to its worker and back by transfer, not by copy, when it owns its
 *   whole ArrayBuffer (what `Buffer.allocUnsafeSlow` and the S3 store's `get` give):
 *   copying 8 MiB each way, and the garbage it leaves, cost more CPU than the hash. The
 *   caller gets the bytes back from `hashBlock`; the buffer it passed is then detached
 *   and must not be used.
 * - The pool also takes a local file's whole SHA-256 (`sha256File`) off the main thread,
 *   reading it there: the object cache's check of a block-verified download.
 */
import { createBLAKE3 } from 'hash-wasm';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/** 8 MiB: see docs/SEMANTICS.md, "Block hashes". */
export const BLOCK_SIZE = 8 << 20;
export const BLOCK_ALG = 'blake3';
/** A last block this small is hashed on the calling thread, not sent to a worker. */
const INLINE_BYTES = 256 << 10;

export interface BlockHashes {
  /** Bytes per block; every block but the last has exactly this many. */
  size: number;
  alg: typeof BLOCK_ALG;
  /** One per block, in order: `ceil(object size / size)` of them (none for an empty object). */
  hashes: string[];
}

const HEX256 = /^[0-9a-f]{64}$/;

/** What the native addon exports (native/src/roset_hash.c). */
export interface NativeBlake3 {
  blake3(bytes: Uint8Array): string;
  blake3FileRange(file: string, offset: number, length: number): string;
}

const NATIVE_PATH = fileURLToPath(new URL('../../native/build/Release/roset_hash.node', import.meta.url));

function loadNative(): NativeBlake3 | null {
  if (!existsSync(NATIVE_PATH)) return null;
  try {
    return createRequire(import.meta.url)(NATIVE_PATH) as NativeBlake3;
  } catch {
    return null;
  }
}
const native = loadNative();

/** Which BLAKE3 hashes blocks in this process: the native addon, or WebAssembly without it. */
export const blockHashImplementation: 'native' | 'wasm' = native ? 'native' : 'wasm';
/** The native addon's BLAKE3, or null where it is not built (tests compare the two). */
export const nativeBlake3 = (): NativeBlake3 | null => native;

/** The hash of one block, on the calling thread. */
export function blockDigest(bytes: Uint8Array): string {
  return native ? native.blake3(bytes) : mainHasher.init().update(bytes).digest('hex');
}
// One WebAssembly instance for this thread: created once, then used synchronously.
const mainHasher = await createBLAKE3();

export const blockCount = (objectSize: number, blockSize: number): number => Math.ceil(objectSize / blockSize);

/** A block list from a manifest, if it describes an object of `objectSize` bytes; else null. */
export function parseBlockHashes(value: unknown, objectSize: number): BlockHashes | null {
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (v.alg !== BLOCK_ALG || typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size <= 0) return null;
  if (!Array.isArray(v.hashes) || v.hashes.length !== blockCount(objectSize, v.size)) return null;
  if (!v.hashes.every((h) => typeof h === 'string' && HEX256.test(h))) return null;
  return { size: v.size, alg: BLOCK_ALG, hashes: v.hashes as string[] };
}

// The worker is a plain script (eval), so it runs the same from src/ (tests) and dist/;
// it loads the hash module by the path this module resolved.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const { createBLAKE3 } = require(workerData.hashModule);
// The native addon when the main thread loaded it; WebAssembly otherwise.
const native = workerData.nativePath ? require(workerData.nativePath) : null;
const ready = native ? Promise.resolve(null) : createBLAKE3();
const blake3 = (h, bytes) => (native ? native.blake3(bytes) : h.init().update(bytes).digest('hex'));
function sha256File(file) {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(4 << 20);
  const fd = fs.openSync(file, 'r');
  try {
    for (let at = 0; ; ) {
      const n = fs.readSync(fd, buf, 0, buf.length, at);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      at += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}
let rangeBuf = null;
function readRange(file, offset, length) {
  if (!rangeBuf || rangeBuf.length < length) rangeBuf = Buffer.allocUnsafe(length);
  const fd = fs.openSync(file, 'r');
  try {
    let got = 0;
    while (got < length) {
      const n = fs.readSync(fd, rangeBuf, got, length - got, offset + got);
      if (n === 0) throw new Error('short read at ' + (offset + got) + ' of ' + file);
      got += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return rangeBuf.subarray(0, length);
}
parentPort.on('message', (m) => {
  if (m.range !== undefined) {
    ready.then((h) => {
      let out;
      try {
        const { file, offset, length } = m.range;
        out = { id: m.id, hex: native ? native.blake3FileRange(file, offset, length) : blake3(h, readRange(file, offset, length)) };
      } catch (err) { out = { id: m.id, error: String(err && err.message || err) }; }
      parentPort.postMessage(out);
    });
    return;
  }
  if (m.file !== undefined) {
    let out;
    try { out = { id: m.id, hex: sha256File(m.file) }; } catch (err) { out = { id: m.id, error: String(err && err.message || err) }; }
    parentPort.postMessage(out);
    return;
  }
  ready.then((h) => {
    const hex = blake3(h, m.bytes);
    if (m.back) parentPort.postMessage({ id: m.id, hex, bytes: m.bytes }, [m.bytes.buffer]);
    else parentPort.postMessage({ id: m.id, hex });
  });
});
`;
const HASH_MODULE = createRequire(import.meta.url).resolve('hash-wasm');

interface Reply {
  id: number;
  hex?: string;
  /** The block, transferred back (`hashBlock`). */
  bytes?: Uint8Array;
  /** A file the worker could not read (`sha256File`). */
  error?: string;
}

interface Slot {
  worker: Worker;
  pending: Map<number, { resolve: (r: Reply) => void; reject: (err: Error) => void }>;
}

/** Whether a buffer can be transferred whole: it is its ArrayBuffer, not a view into a shared one. */
function ownsBuffer(b: Uint8Array): boolean {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer;
}

/** Worker threads hashing blocks in parallel; jobs go to the least busy worker. */
export class BlockHashPool {
  private readonly slots: Slot[] = [];
  private nextId = 0;

  constructor(private readonly threads = Math.max(1, availableParallelism())) {}

  /** The hash of `bytes`, taken on a worker thread (the bytes are copied to it; the caller keeps them). */
  async hash(bytes: Uint8Array): Promise<string> {
    return (await this.send({ bytes }))!.hex!;
  }

  /**
   * The hash of a block and the block itself: moved to a worker and back without a copy
   * when it owns its ArrayBuffer (then `bytes` is detached on return and must not be
   * used), copied there otherwise. Use the returned buffer.
   */
  async hashBlock(bytes: Buffer): Promise<{ hex: string; bytes: Buffer }> {
    if (!ownsBuffer(bytes)) return { hex: await this.hash(bytes), bytes };
    const r = await this.send({ bytes, back: true }, [bytes.buffer as ArrayBuffer]);
    const back = r.bytes!;
    return { hex: r.hex!, bytes: Buffer.from(back.buffer, back.byteOffset, back.byteLength) };
  }

  /** The SHA-256 of a local file, read and hashed on a worker thread. */
  async sha256File(file: string): Promise<string> {
    const r = await this.send({ file });
    if (r.error !== undefined) throw new Error(`could not hash ${file}: ${r.error}`);
    return r.hex!;
  }

  /**
   * The block hash of `length` bytes of a local file from `offset`, read and hashed on
   * a worker thread: the main thread neither reads nor copies them.
   */
  async hashFileRange(file: string, offset: number, length: number): Promise<string> {
    const r = await this.send({ range: { file, offset, length } });
    if (r.error !== undefined) throw new Error(`could not hash ${file}: ${r.error}`);
    return r.hex!;
  }

  private send(message: { bytes?: Uint8Array; back?: boolean; file?: string; range?: { file: string; offset: number; length: number } }, transfer: ArrayBuffer[] = []): Promise<Reply> {
    const slot = this.pick();
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      if (slot.pending.size === 1) slot.worker.ref();
      slot.worker.postMessage({ id, ...message }, transfer);
    });
  }

  private pick(): Slot {
    if (this.slots.length < this.threads && this.slots.every((s) => s.pending.size > 0)) return this.spawn();
    return this.slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { hashModule: HASH_MODULE, nativePath: native ? NATIVE_PATH : null } });
    const slot: Slot = { worker, pending: new Map() };
    worker.unref();
    worker.on('message', (m: Reply) => {
      const p = slot.pending.get(m.id);
      slot.pending.delete(m.id);
      if (slot.pending.size === 0) worker.unref();
      p?.resolve(m);
    });
    const fail = (err: Error): void => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      for (const p of slot.pending.values()) p.reject(err);
      slot.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`block hash worker exited (code ${code})`)));
    this.slots.push(slot);
    return slot;
  }

  /** Stops the workers (tests; a daemon keeps its pool for its life). */
  async close(): Promise<void> {
    const slots = this.slots.splice(0);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}

/**
 * The block hashes of a file that is still being written in order, taken as its final
 * prefix grows (`grew`), each block read back on the pool once it is whole; `finish`
 * hashes what is left (the last, short block) once the size is known. A block is
 * hashed only from bytes the caller declared final, so nothing is hashed twice.
 */
export class GrowingBlockHashes {
  private readonly hashes: string[] = [];
  private next = 0;
  private readonly inflight = new Set<Promise<void>>();
  private failure: unknown;

  constructor(private readonly file: string, private readonly pool = blockHashPool()) {}

  /** The first `bytes` bytes of the file are final. */
  grew(bytes: number): void {
    while ((this.next + 1) * BLOCK_SIZE <= bytes) this.hash(this.next++, BLOCK_SIZE);
  }

  /** Every block of a file of `size` bytes, once all are hashed. */
  async finish(size: number): Promise<BlockHashes> {
    this.grew(size);
    const count = blockCount(size, BLOCK_SIZE);
    if (this.next < count) this.hash(this.next++, size - (count - 1) * BLOCK_SIZE);
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
    if (this.failure !== undefined) throw this.failure;
    return { size: BLOCK_SIZE, alg: BLOCK_ALG, hashes: this.hashes.slice(0, count) };
  }

  private hash(i: number, length: number): void {
    const job: Promise<void> = this.pool.hashFileRange(this.file, i * BLOCK_SIZE, length)
      .then((hex) => { this.hashes[i] = hex; }, (err: unknown) => { this.failure ??= err; })
      .finally(() => this.inflight.delete(job));
    this.inflight.add(job);
  }
}

let shared: BlockHashPool | null = null;
/** The process's pool, created on first use. */
export function blockHashPool(): BlockHashPool {
  shared ??= new BlockHashPool();
  return shared;
}

/**
 * The whole-file SHA-256 and the block hashes of a local file, in one read pass: the
 * SHA-256 runs in order on this thread while the blocks hash on the pool. At most
 * twice as many blocks as the pool has threads, and never more than eight (64 MiB),
 * are in memory at once.
 */
export async function hashFile(file: string, pool = blockHashPool()): Promise<{ sha256: string; size: number; blocks: BlockHashes }> {
  const sha = createHash('sha256');
  const { size, blocks } = await readBlocks(file, pool, (b) => sha.update(b));
  return { sha256: sha.digest('hex'), size, blocks };
}

/**
 * The block hashes of a local file whose SHA-256 is already known (taken while it was
 * written). Each block is read by the worker that hashes it, into that worker's one
 * buffer: this runs beside the file's upload, whose part buffers are the memory budget,
 * and adds none of its own on the main thread.
 */
export async function hashFileBlocks(file: string, pool = blockHashPool()): Promise<BlockHashes> {
  const size = (await fs.stat(file)).size;
  // A small file's one block: hashed here, less than a worker's round trip.
  if (size <= INLINE_BYTES) return { size: BLOCK_SIZE, alg: BLOCK_ALG, hashes: size === 0 ? [] : [blockDigest(await fs.readFile(file))] };
  return new GrowingBlockHashes(file, pool).finish(size);
}

async function readBlocks(file: string, pool: BlockHashPool, each: (block: Buffer) => void): Promise<{ size: number; blocks: BlockHashes }> {
  const blockSize = BLOCK_SIZE;
  const fh = await fs.open(file, 'r');
  const hashes: string[] = [];
  const inflight = new Set<Promise<void>>();
  const limit = Math.min(8, 2 * Math.max(1, availableParallelism()));
  let size = 0;
  let failure: unknown;
  try {
    // A file smaller than a block (most files of a checkpoint of many small files) gets
    // a buffer of its size, not 8 MiB; a file that grew since is a changed file, which
    // the uploader's version check refuses whatever was hashed.
    const known = (await fh.stat()).size;
    for (let i = 0; ; i++) {
      const buf = Buffer.allocUnsafeSlow(i === 0 && known < blockSize ? Math.max(1, known) : blockSize);
      let got = 0;
      while (got < buf.length) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, size + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got === 0) break;
      const block = got === buf.length ? buf : buf.subarray(0, got);
      each(block);
      size += got;
      if (got <= INLINE_BYTES) {
        // A small file's one block: hashed here in microseconds, less than a worker's
        // round trip (a checkpoint of many small files would pay that per file).
        hashes[i] = blockDigest(block);
        break;
      }
      // `each` is done with the block: it can go to the worker without a copy.
      const job: Promise<void> = pool.hashBlock(block).then((r) => { hashes[i] = r.hex; }, (err: unknown) => { failure ??= err; })
        .finally(() => inflight.delete(job));
      inflight.add(job);
      while (inflight.size >= limit) await Promise.race(inflight);
      if (failure !== undefined) throw failure;
      if (got < blockSize) break;
    }
    await Promise.all(inflight);
    if (failure !== undefined) throw failure;
  } finally {
    await fh.close();
  }
  return { size, blocks: { size: blockSize, alg: BLOCK_ALG, hashes } };
}
