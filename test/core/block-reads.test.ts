/**
 * Block-verified reads, without FUSE: a commit's manifest lists the block hashes of
 * each file (none for an empty file); a cold read fetches one ranged GET per block and
 * returns the right bytes for empty, single-block and multi-block files whose size is
 * not a multiple of the block size; a block that fails its hash every time fails the
 * read with INTEGRITY_ERROR and leaves nothing in the cache; a block corrupted or cut
 * short once is fetched again; a failed GET goes through the retry layer, and a failure
 * that outlasts it fails the read cleanly, the next read succeeding; a manifest
 * without block hashes (0.1.0) is read through the whole-file check; a block list that
 * lies is caught by the whole-file SHA-256 before the object is recorded, and the
 * object is then refused; files read at once share one budget of blocks in flight. With streaming reads (the native binding's way): a cold file
 * opens before its download completes, a read waits only for the blocks it covers (a
 * block far into the file is served while the first is still held back), no byte of an
 * unverified block can be read, and a block that fails its hash fails the reads that
 * wait for it.
 */
import * as fsSync from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { objectKey } from '../../src/commit/layout.js';
import { RetryingStore } from '../../src/store/retry.js';
import type { ObjectStore } from '../../src/store/types.js';
import { BLOCK_ALG, BLOCK_SIZE, blockDigest } from '../../src/util/block-hash.js';
import { startCore, waitSettled, type CoreHarness, readAll, writeFile } from '../support/core.js';
import { faulty, type FaultyStore } from '../support/faulty-store.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const { O_RDONLY, O_WRONLY } = fsSync.constants;

const blocksOf = (b: Buffer): string[] => {
  const out: string[] = [];
  for (let off = 0; off < b.length; off += BLOCK_SIZE) out.push(blockDigest(b.subarray(off, off + BLOCK_SIZE)));
  return out;
};

const objectGets = (s: FaultyStore, key: string): number => s.calls.filter((c) => c.op === 'get' && c.key === key && !c.failed).length;
const tmpFiles = (h: CoreHarness): string[] => fsSync.readdirSync(`${h.ctx.cacheDir}/tmp`);

/** Commits `files` under /ck, then drops the cached copies so the next reads go to the store. */
async function commitCold(h: CoreHarness, files: Array<{ p: string; bytes: Buffer }>): Promise<string> {
  await h.fs.mkdir('/ck', 0o755);
  for (const f of files) await writeFile(h, f.p, f.bytes);
  const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
  const c = await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, {})).id);
  expect(c.phase).toBe('completed');
  // The engine releases the snapshot (staged copies become cache) after completing: wait for it.
  expect(await h.cp.engine.drain(30_000)).toBe(true);
  await h.fs.settle();
  for (const f of files) fsSync.rmSync(`${h.ctx.cacheDir}/objects/${sha(f.bytes)}`, { force: true });
  return c.id;
}

/** Changes the bytes `get` returns for ranges of `key` that cover `offset`, while `when()` says so. */
function tamper(inner: FaultyStore, key: string, offset: number, change: (b: Buffer, rangeOffset: number) => Buffer, when: () => boolean): void {
  const get = inner.get.bind(inner);
  inner.get = async (k, range) => {
    const b = await get(k, range);
    const from = range?.offset ?? 0;
    if (k === key && from <= offset && offset < from + b.length && when()) return change(b, from);
    return b;
  };
}

const flipAt = (offset: number) => (b: Buffer, from: number): Buffer => {
  const c = Buffer.from(b);
  c[offset - from]! ^= 0xff;
  return c;
};

describe('block hashes in the manifest', () => {
  it('lists one hash per block, none for an empty file', async () => {
    const h = await startCore();
    try {
      const files = [
        { p: '/ck/empty.bin', bytes: Buffer.alloc(0) },
        { p: '/ck/one.bin', bytes: randomBytes(BLOCK_SIZE) },
        { p: '/ck/two.bin', bytes: randomBytes(BLOCK_SIZE + 4321) },
      ];
      const id = await commitCold(h, files);
      const manifest = JSON.parse((await h.ctx.store.get(`commits/${id}.json`)).toString('utf8')) as { files: Array<{ path: string; blocks?: unknown }> };
      for (const f of files) {
        const m = manifest.files.find((x) => `/ck/${x.path}` === f.p)!;
        expect(m.blocks).toEqual({ size: BLOCK_SIZE, alg: BLOCK_ALG, hashes: blocksOf(f.bytes) });
      }
    } finally {
      await h.close();
    }
  });
});

describe('block-verified cold reads', () => {
  it('return the right bytes, one GET per block, for empty, single-block and ragged files', async () => {
    let store!: FaultyStore;
    const h = await startCore({ wrapStore: (s) => (store = faulty(s)) });
    try {
      const files = [
        { p: '/ck/empty.bin', bytes: Buffer.alloc(0) },
        { p: '/ck/small.bin', bytes: randomBytes(12_345) },
        { p: '/ck/one.bin', bytes: randomBytes(BLOCK_SIZE) },
        { p: '/ck/ragged.bin', bytes: randomBytes(2 * BLOCK_SIZE + 777) },
      ];
      await commitCold(h, files);
      for (const f of files) {
        const before = objectGets(store, objectKey(sha(f.bytes)));
        expect(sha(await readAll(h, f.p, f.bytes.length))).toBe(sha(f.bytes));
        expect(objectGets(store, objectKey(sha(f.bytes))) - before).toBe(Math.ceil(f.bytes.length / BLOCK_SIZE));
      }
      // Once the whole-file SHA-256 matched, each is a recorded cached object.
      await h.fs.settle();
      for (const f of files) expect(h.ctx.index.cachedObjectsByAge().some((o) => o.sha256 === sha(f.bytes))).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('fail with INTEGRITY_ERROR when a block never matches its hash, and cache nothing of it', async () => {
    let store!: FaultyStore;
    const bytes = randomBytes(2 * BLOCK_SIZE + 99);
    const key = objectKey(sha(bytes));
    let corrupt = false;
    const h = await startCore({
      wrapStore: (s) => {
        store = faulty(s);
        // A bit flipped in the second block, every time it is read.
        tamper(store, key, BLOCK_SIZE + 5, flipAt(BLOCK_SIZE + 5), () => corrupt);
        return store;
      },
    });
    try {
      await commitCold(h, [{ p: '/ck/f.bin', bytes }]);
      corrupt = true;
      const before = objectGets(store, key);
      await expect(h.fs.open('/ck/f.bin', O_RDONLY)).rejects.toMatchObject({ rosetCode: 'INTEGRITY_ERROR' });
      // Three tries of the bad block, at most one GET of each good one.
      expect(objectGets(store, key) - before).toBeLessThanOrEqual(3 + 2);
      expect(objectGets(store, key) - before).toBeGreaterThanOrEqual(3);
      expect(fsSync.existsSync(`${h.ctx.cacheDir}/objects/${sha(bytes)}`)).toBe(false);
      expect(tmpFiles(h)).toEqual([]);
      // The store heals: the next read succeeds.
      corrupt = false;
      expect(sha(await readAll(h, '/ck/f.bin', bytes.length))).toBe(sha(bytes));
    } finally {
      await h.close();
    }
  });

  it('fetch again a block corrupted or cut short once', async () => {
    let store!: FaultyStore;
    const bytes = randomBytes(BLOCK_SIZE + 1000);
    const key = objectKey(sha(bytes));
    let flips = 0;
    let cuts = 0;
    const h = await startCore({
      wrapStore: (s) => {
        store = faulty(s);
        tamper(store, key, 10, flipAt(10), () => flips-- > 0);
        tamper(store, key, BLOCK_SIZE + 10, (b) => b.subarray(0, b.length - 1), () => cuts-- > 0);
        return store;
      },
    });
    try {
      await commitCold(h, [{ p: '/ck/f.bin', bytes }]);
      flips = 1;
      cuts = 1;
      const before = objectGets(store, key);
      expect(sha(await readAll(h, '/ck/f.bin', bytes.length))).toBe(sha(bytes));
      expect(objectGets(store, key) - before).toBe(4);
    } finally {
      await h.close();
    }
  });

  it('retry a failed GET in the retry layer, and fail the read cleanly when the failure outlasts it', async () => {
    let store!: FaultyStore;
    const bytes = randomBytes(BLOCK_SIZE + 1000);
    const key = objectKey(sha(bytes));
    const h = await startCore({
      wrapStore: (s): ObjectStore => {
        store = faulty(s);
        return new RetryingStore(store, { attempts: 3, deadlineMs: 10_000, baseDelayMs: 1, maxDelayMs: 5 });
      },
    });
    try {
      await commitCold(h, [{ p: '/ck/f.bin', bytes }]);
      // A transient failure (a timed-out GET) is retried.
      store.rules.push({ op: 'get', keyIncludes: key, kind: 'transient', times: 1 });
      expect(sha(await readAll(h, '/ck/f.bin', bytes.length))).toBe(sha(bytes));
      fsSync.rmSync(`${h.ctx.cacheDir}/objects/${sha(bytes)}`, { force: true });
      await h.fs.settle();
      // A permanent one fails the read, with nothing left behind.
      store.rules.splice(0, store.rules.length, { op: 'get', keyIncludes: key, kind: 'forbidden' });
      await expect(h.fs.open('/ck/f.bin', O_RDONLY)).rejects.toMatchObject({ rosetCode: 'STORAGE_ERROR' });
      expect(tmpFiles(h)).toEqual([]);
      store.rules.splice(0);
      expect(sha(await readAll(h, '/ck/f.bin', bytes.length))).toBe(sha(bytes));
    } finally {
      await h.close();
    }
  });

  it('read a manifest without block hashes (0.1.0) through the whole-file check', async () => {
    let store!: FaultyStore;
    const bytes = randomBytes(BLOCK_SIZE + 1000);
    const key = objectKey(sha(bytes));
    const h = await startCore({ wrapStore: (s) => (store = faulty(s)), readCache: { chunkBytes: 1 << 20, concurrency: 4 } });
    try {
      const id = await commitCold(h, [{ p: '/ck/f.bin', bytes }]);
      const m = JSON.parse((await h.ctx.store.get(`commits/${id}.json`)).toString('utf8')) as { files: Array<Record<string, unknown>> };
      for (const f of m.files) delete f.blocks;
      await h.ctx.store.put(`commits/${id}.json`, Buffer.from(JSON.stringify(m)));
      const before = objectGets(store, key);
      expect(sha(await readAll(h, '/ck/f.bin', bytes.length))).toBe(sha(bytes));
      // The whole-file path: 1 MiB ranges.
      expect(objectGets(store, key) - before).toBe(Math.ceil(bytes.length / (1 << 20)));
    } finally {
      await h.close();
    }
  });

  it('catch a block list that lies with the whole-file SHA-256, and refuse the object from then on', async () => {
    const bytes = randomBytes(BLOCK_SIZE + 1000);
    const forged = randomBytes(bytes.length);
    const h = await startCore();
    try {
      const id = await commitCold(h, [{ p: '/ck/f.bin', bytes }]);
      // A store that forges: other bytes under the name, and a manifest whose blocks match them.
      const m = JSON.parse((await h.ctx.store.get(`commits/${id}.json`)).toString('utf8')) as { files: Array<{ blocks: { hashes: string[] } }> };
      m.files[0]!.blocks.hashes = blocksOf(forged);
      await h.ctx.store.put(`commits/${id}.json`, Buffer.from(JSON.stringify(m)));
      await h.ctx.store.put(objectKey(sha(bytes)), forged);
      // The blocks verify, so the bytes are served before the whole file is checked...
      await readAll(h, '/ck/f.bin', bytes.length);
      await h.fs.settle();
      // ...which removes them before they are recorded, and the object is refused after.
      expect(fsSync.existsSync(`${h.ctx.cacheDir}/objects/${sha(bytes)}`)).toBe(false);
      expect(h.ctx.index.cachedObjectsByAge().some((o) => o.sha256 === sha(bytes))).toBe(false);
      await expect(h.fs.open('/ck/f.bin', O_RDONLY)).rejects.toMatchObject({ rosetCode: 'INTEGRITY_ERROR' });
    } finally {
      await h.close();
    }
  });
});

describe('the budget of blocks', () => {
  it('is shared by every download at once', async () => {
    const files = [0, 1, 2].map((i) => ({ p: `/ck/${i}.bin`, bytes: randomBytes(3 * BLOCK_SIZE + i) }));
    let inFlight = 0;
    let most = 0;
    let counting = false;
    const h = await startCore({
      readCache: { totalBlocks: 2 },
      wrapStore: (s) => {
        const store = faulty(s);
        const get = store.get.bind(store);
        store.get = async (k, range) => {
          if (!counting || !k.startsWith('objects/')) return get(k, range);
          most = Math.max(most, ++inFlight);
          try {
            return await get(k, range);
          } finally {
            inFlight--;
          }
        };
        return store;
      },
    });
    try {
      await commitCold(h, files);
      counting = true;
      const got = await Promise.all(files.map((f) => readAll(h, f.p, f.bytes.length)));
      for (const [i, f] of files.entries()) expect(sha(got[i]!)).toBe(sha(f.bytes));
      expect(most).toBeGreaterThan(0);
      expect(most).toBeLessThanOrEqual(2);
    } finally {
      await h.close();
    }
  });
});

describe('streaming reads', () => {
  /** A store whose GET of the object's first block waits until `release()`. */
  function holdingFirstBlock(key: () => string): { wrap: (s: ObjectStore) => ObjectStore; release: () => void; held: Promise<void> } {
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    let held!: () => void;
    const heldP = new Promise<void>((r) => { held = r; });
    let armed = false;
    return {
      wrap: (s) => {
        const store = faulty(s);
        const get = store.get.bind(store);
        store.get = async (k, range) => {
          if (armed && k === key() && (range?.offset ?? 0) === 0) {
            held();
            await gate;
          }
          return get(k, range);
        };
        armed = true;
        return store;
      },
      release,
      held: heldP,
    };
  }

  it('serve a range as soon as the blocks covering it verified, not the whole object', async () => {
    const bytes = randomBytes(3 * BLOCK_SIZE + 5);
    const hold = holdingFirstBlock(() => objectKey(sha(bytes)));
    let holding = false;
    const h = await startCore({ wrapStore: (s) => hold.wrap(s) });
    try {
      h.core.streamingReads = true;
      await commitCold(h, [{ p: '/ck/f.bin', bytes }]);
      holding = true;
      const fh = await h.fs.open('/ck/f.bin', O_RDONLY);
      await hold.held;
      // Block 0 is held back: reading it would be unverified bytes.
      expect(() => h.fs.read(fh, Buffer.alloc(10), 10, 0)).toThrow(/unverified/);
      // A read deep in the file (a random reader) is served meanwhile.
      const off = 2 * BLOCK_SIZE + 100;
      expect(await h.core.waitRead(fh, off, 4096)).toBe(false);
      const buf = Buffer.alloc(4096);
      expect(h.fs.read(fh, buf, 4096, off)).toBe(4096);
      expect(buf.equals(bytes.subarray(off, off + 4096))).toBe(true);
      // Once block 0 comes, the whole file reads back, and the handle needs no gate after.
      hold.release();
      await h.core.waitRead(fh, 0, bytes.length);
      const all = Buffer.alloc(bytes.length);
      expect(h.fs.read(fh, all, bytes.length, 0)).toBe(bytes.length);
      expect(sha(all)).toBe(sha(bytes));
      expect(await h.core.waitRead(fh, 0, 1)).toBe(true);
      await h.fs.release(fh);
      expect(holding).toBe(true);
    } finally {
      hold.release();
      await h.close();
    }
  });

  it('fail the reads waiting for a block that never matches its hash, and serve none of its bytes', async () => {
    let store!: FaultyStore;
    const bytes = randomBytes(2 * BLOCK_SIZE + 99);
    const key = objectKey(sha(bytes));
    let corrupt = false;
    const h = await startCore({
      wrapStore: (s) => {
        store = faulty(s);
        tamper(store, key, BLOCK_SIZE + 5, flipAt(BLOCK_SIZE + 5), () => corrupt);
        return store;
      },
    });
    try {
      h.core.streamingReads = true;
      await commitCold(h, [{ p: '/ck/f.bin', bytes }]);
      corrupt = true;
      const fh = await h.fs.open('/ck/f.bin', O_RDONLY);
      await expect(h.core.waitRead(fh, BLOCK_SIZE, 100)).rejects.toMatchObject({ rosetCode: 'INTEGRITY_ERROR' });
      expect(() => h.fs.read(fh, Buffer.alloc(100), 100, BLOCK_SIZE)).toThrow(/unverified/);
      await h.fs.release(fh);
      expect(fsSync.existsSync(`${h.ctx.cacheDir}/objects/${sha(bytes)}`)).toBe(false);
      expect(tmpFiles(h)).toEqual([]);
    } finally {
      await h.close();
    }
  });
});
