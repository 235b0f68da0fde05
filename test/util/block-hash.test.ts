/**
 * Block hashes: the native BLAKE3 addon is built and gives the digests of the
 * WebAssembly build (and the published ones for "" and "abc") for inputs around the
 * algorithm's chunk and SIMD boundaries; a file range hashes as its bytes do, and a
 * range past the end fails instead of hashing fewer bytes; the worker pool's block
 * hashes (copied, transferred and back, or read by the worker from the file) and its
 * whole-file SHA-256 agree with hashing on the calling thread.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createBLAKE3 } from 'hash-wasm';
import { afterAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE, BlockHashPool, blockDigest, blockHashImplementation, hashFileBlocks, nativeBlake3 } from '../../src/util/block-hash.js';

const wasm = await createBLAKE3();
const wasmHex = (b: Uint8Array): string => wasm.init().update(b).digest('hex');
const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-block-hash-'));

describe('block hashes', () => {
  const pool = new BlockHashPool(2);
  afterAll(async () => {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('are native BLAKE3, digest for digest the WebAssembly build', () => {
    // scripts/setup builds the addon with the FUSE binding: its absence is a broken build.
    expect(blockHashImplementation).toBe('native');
    const n = nativeBlake3()!;
    expect(n.blake3(Buffer.alloc(0))).toBe('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
    expect(n.blake3(Buffer.from('abc'))).toBe('6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85');
    for (const len of [0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 3 * 1024 + 1, 16 * 1024 + 7, 65537, BLOCK_SIZE, BLOCK_SIZE + 13]) {
      const b = randomBytes(len);
      expect(n.blake3(b), `${len} bytes`).toBe(wasmHex(b));
      expect(blockDigest(b), `${len} bytes`).toBe(wasmHex(b));
    }
  });

  it('hash a range of a file as its bytes, and refuse a range past its end', () => {
    const n = nativeBlake3()!;
    const bytes = randomBytes(3 * (1 << 20) + 77);
    const file = path.join(dir, 'range.bin');
    writeFileSync(file, bytes);
    for (const [offset, length] of [[0, bytes.length], [5, 1 << 20], [(1 << 20) - 3, 2 * (1 << 20) + 80], [bytes.length, 0]] as const) {
      expect(n.blake3FileRange(file, offset, length), `${offset}+${length}`).toBe(wasmHex(bytes.subarray(offset, offset + length)));
    }
    expect(() => n.blake3FileRange(file, 10, bytes.length)).toThrow(/short read/);
    expect(() => n.blake3FileRange(path.join(dir, 'missing'), 0, 1)).toThrow(/cannot open/);
  });

  it('agree on the worker pool, whichever way the bytes reach it', async () => {
    const bytes = randomBytes(2 * BLOCK_SIZE + 4097);
    const file = path.join(dir, 'pool.bin');
    writeFileSync(file, bytes);
    const blocks = [0, 1, 2].map((i) => bytes.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE));
    const want = blocks.map((b) => wasmHex(b));
    expect(await Promise.all(blocks.map((b) => pool.hash(b)))).toEqual(want);
    expect(await Promise.all(blocks.map((b, i) => pool.hashFileRange(file, i * BLOCK_SIZE, b.length)))).toEqual(want);
    // A buffer that owns its memory goes and comes back: same bytes, and the one passed is detached.
    const own = Buffer.allocUnsafeSlow(BLOCK_SIZE);
    blocks[0]!.copy(own);
    const back = await pool.hashBlock(own);
    expect(back.hex).toBe(want[0]);
    expect(own.buffer.byteLength).toBe(0);
    expect(back.bytes.equals(blocks[0]!)).toBe(true);
    expect(await pool.sha256File(file)).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect((await hashFileBlocks(file, pool)).hashes).toEqual(want);
  });
});
