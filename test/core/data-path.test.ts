/**
 * The data path around a commit, without FUSE: files upload in the background when
 * they close, so the commit reuses those uploads; a file changed while its upload runs
 * never publishes wrong bytes; a background failure surfaces in the commit; the read
 * cache keeps committed objects under --cache-size, least recently used first, and
 * never downloads a cached object again.
 */
import * as fsSync from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { objectKey } from '../../src/commit/layout.js';
import { readAll, startCore, waitSettled, writeFile } from '../support/core.js';
import { faulty, type FaultyStore } from '../support/faulty-store.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const { O_RDWR } = fsSync.constants;

const puts = (s: FaultyStore, key: string): number => s.calls.filter((c) => c.op === 'putFile' && c.key === key && !c.failed).length;
const gets = (s: FaultyStore, key: string): number => s.calls.filter((c) => c.op === 'get' && c.key === key && !c.failed).length;

describe('background upload', () => {
  it('uploads a file when it closes, and the commit reuses that upload', async () => {
    let store!: FaultyStore;
    const h = await startCore({ wrapStore: (s) => (store = faulty(s)) });
    try {
      await h.fs.mkdir('/ck', 0o755);
      const bytes = randomBytes(3 << 20);
      await writeFile(h, '/ck/model.bin', bytes);
      await h.fs.uploader.drained();
      // In the bucket before anyone asked for a commit.
      expect(puts(store, objectKey(sha(bytes)))).toBe(1);
      const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
      const c = await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, {})).id);
      expect(c.phase).toBe('completed');
      expect(puts(store, objectKey(sha(bytes)))).toBe(1);
      const manifest = JSON.parse((await h.ctx.store.get(`commits/${c.id}.json`)).toString('utf8'));
      expect(manifest.files).toMatchObject([{ path: 'model.bin', size: bytes.length, sha256: sha(bytes) }]);
    } finally {
      await h.close();
    }
  });

  it('sends a new small object with one create-only request, deduplicates by its 412, and looks large ones up first', async () => {
    let store!: FaultyStore;
    const h = await startCore({ wrapStore: (s) => (store = faulty(s)) });
    try {
      await h.fs.mkdir('/ck', 0o755);
      const small = randomBytes(4096);
      const large = randomBytes((1 << 20) + 1);
      await writeFile(h, '/ck/a.json', small);
      await writeFile(h, '/ck/b.json', small);
      await writeFile(h, '/ck/w.bin', large);
      await h.fs.uploader.drained();
      const on = (key: string) => store.calls.filter((c) => c.key === key).map((c) => c.op);
      // Small: no look-up; the second file of the same bytes gets "already there" from the store.
      expect(on(objectKey(sha(small)))).toEqual(['putFile', 'putFile']);
      // Large: looked up first, then sent.
      expect(on(objectKey(sha(large)))).toEqual(['head', 'putFile']);
      const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
      const c = await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, {})).id);
      expect(c.phase).toBe('completed');
      // The commit reused the records; the same bytes count once uploaded, once deduplicated.
      expect(on(objectKey(sha(small)))).toEqual(['putFile', 'putFile']);
      expect(c.stats).toMatchObject({ uploadedBytes: small.length + large.length, dedupedBytes: small.length });
      expect(sha(await h.ctx.store.get(objectKey(sha(small))))).toBe(sha(small));
    } finally {
      await h.close();
    }
  });

  it('records the uploads of many small files in a few index transactions', async () => {
    const h = await startCore();
    try {
      const index = h.ctx.index;
      const batches: number[] = [];
      const setUploads = index.setUploads.bind(index);
      index.setUploads = (records) => { batches.push(records.length); setUploads(records); };
      await h.fs.mkdir('/ck', 0o755);
      const files = Array.from({ length: 64 }, () => randomBytes(2048));
      for (const [i, b] of files.entries()) await writeFile(h, `/ck/f${i}.bin`, b);
      await h.fs.uploader.drained();
      // Every file's record (its hash taken while writing, then its upload) is written,
      // in far fewer transactions than files.
      const nodes = await Promise.all(files.map(async (_, i) => (await h.cp.resolvePath(h.mountId, `/ck/f${i}.bin`))!.id));
      expect(nodes.map((id) => index.upload(id)?.state)).toEqual(files.map(() => 'uploaded'));
      expect(nodes.map((id) => index.upload(id)?.sha256)).toEqual(files.map((b) => sha(b)));
      expect(batches.length).toBeLessThan(files.length / 2);
    } finally {
      await h.close();
    }
  });

  it('never publishes an object whose bytes changed while it uploaded', async () => {
    let store!: FaultyStore;
    // The first upload is held at its start until the file has been rewritten, so the
    // rewrite lands while that upload runs, every time.
    let started!: () => void;
    const uploadStarted = new Promise<void>((r) => { started = r; });
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const h = await startCore({
      wrapStore: (s) => {
        store = faulty(s);
        const putFile = store.putFile.bind(store);
        let first = true;
        store.putFile = async (...args: Parameters<typeof putFile>) => {
          if (first) {
            first = false;
            started();
            await gate;
          }
          return putFile(...args);
        };
        return store;
      },
    });
    try {
      await h.fs.mkdir('/ck', 0o755);
      const first = randomBytes(1 << 20);
      await writeFile(h, '/ck/f.bin', first);
      await uploadStarted;
      // Rewritten in place while its background upload is held.
      const second = randomBytes(1 << 20);
      const fh = await h.fs.open('/ck/f.bin', O_RDWR);
      h.fs.write(fh, second, second.length, 0);
      await h.fs.flush(fh);
      await h.fs.release(fh);
      release();
      const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
      const c = await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, {})).id);
      expect(c.phase).toBe('completed');
      await h.fs.uploader.drained();
      // The held upload was of the first bytes: it never published them.
      expect(await h.ctx.store.head(objectKey(sha(first)))).toBeNull();
      const manifest = JSON.parse((await h.ctx.store.get(`commits/${c.id}.json`)).toString('utf8'));
      expect(manifest.files[0].sha256).toBe(sha(second));
      // Whatever reached the store under objects/ hashes to its own name.
      const objects = (await h.ctx.store.list('objects/')).objects;
      expect(objects.length).toBeGreaterThan(0);
      for (const { key } of objects) expect(sha(await h.ctx.store.get(key))).toBe(key.split('/').pop());
    } finally {
      await h.close();
    }
  });

  it('surfaces an upload failure in the commit, and keeps the folder staging and intact', async () => {
    let store!: FaultyStore;
    const h = await startCore({ wrapStore: (s) => (store = faulty(s)) });
    try {
      store.rules.push({ op: 'putFile', keyIncludes: 'objects/', kind: 'forbidden' });
      await h.fs.mkdir('/ck', 0o755);
      const bytes = randomBytes(1 << 20);
      await writeFile(h, '/ck/f.bin', bytes);
      await h.fs.uploader.drained();
      const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
      const c = await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, {})).id);
      expect(c.phase).toBe('failed');
      expect(c.error?.message).toMatch(/403/);
      expect((await h.cp.resolvePath(h.mountId, '/ck'))!.state).toBe('staging');
      expect(sha(await readAll(h, '/ck/f.bin', bytes.length))).toBe(sha(bytes));
      // Once the store takes writes again, a retry commits it.
      store.rules.length = 0;
      expect((await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, {})).id)).phase).toBe('completed');
    } finally {
      await h.close();
    }
  });
});

describe('read cache', () => {
  it('keeps committed objects under --cache-size, evicts the least recently used, and never downloads a cached one again', async () => {
    let store!: FaultyStore;
    const MiB = 1 << 20;
    const h = await startCore({ wrapStore: (s) => (store = faulty(s)), cacheMaxBytes: 5 * MiB });
    try {
      await h.fs.mkdir('/ck', 0o755);
      const files = ['a', 'b', 'c'].map((n) => ({ p: `/ck/${n}.bin`, bytes: randomBytes(2 * MiB + 12_345) }));
      for (const f of files) await writeFile(h, f.p, f.bytes);
      const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
      const c = await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, {})).id);
      expect(c.phase).toBe('completed');
      // The staged copies become the read cache, trimmed to the limit, once the commit
      // has released them.
      // The engine releases the snapshot right after completing the commit: wait for that run.
      expect(await h.cp.engine.drain(30_000)).toBe(true);
      expect(h.ctx.index.snapshot(c.id)).toEqual([]);
      const cached = (): number => h.ctx.index.cachedBytes();
      expect(cached()).toBeLessThanOrEqual(5 * MiB);
      expect(cached()).toBeGreaterThan(0);

      // Every file reads back right, whether cached or fetched again.
      for (const f of files) expect(sha(await readAll(h, f.p, f.bytes.length))).toBe(sha(f.bytes));
      await h.fs.settle(); // downloads are recorded once on disk
      expect(cached()).toBeLessThanOrEqual(5 * MiB);

      // Two objects fit. Read c, then b, then a: whichever is missing is downloaded and
      // the least recently read goes, so b and a stay and c is evicted.
      const [a, b, c2] = files as [typeof files[0], typeof files[0], typeof files[0]];
      for (const f of [c2, b, a]) {
        expect(sha(await readAll(h, f.p, f.bytes.length))).toBe(sha(f.bytes));
        await h.fs.settle();
      }
      const isCached = (f: typeof a): boolean => fsSync.existsSync(`${h.ctx.cacheDir}/objects/${sha(f.bytes)}`);
      expect([isCached(a), isCached(b), isCached(c2)]).toEqual([true, true, false]);
      expect(cached()).toBeLessThanOrEqual(5 * MiB);

      // A cached object is never downloaded again; an evicted one is, once.
      const beforeA = gets(store, objectKey(sha(a.bytes)));
      expect(sha(await readAll(h, a.p, a.bytes.length))).toBe(sha(a.bytes));
      expect(gets(store, objectKey(sha(a.bytes)))).toBe(beforeA);
      const beforeC = gets(store, objectKey(sha(c2.bytes)));
      expect(sha(await readAll(h, c2.p, c2.bytes.length))).toBe(sha(c2.bytes));
      expect(gets(store, objectKey(sha(c2.bytes)))).toBeGreaterThan(beforeC);
      await h.fs.settle();
      expect(cached()).toBeLessThanOrEqual(5 * MiB);
    } finally {
      await h.close();
    }
  });

  it('downloads in parallel ranged GETs, in bounded memory, even when the first range is the slowest', async () => {
    let store!: FaultyStore;
    const h = await startCore({
      readCache: { chunkBytes: 64 << 10, concurrency: 4 },
      wrapStore: (s) => {
        store = faulty(s);
        const get = store.get.bind(store);
        store.get = async (...args: Parameters<typeof get>) => {
          // The first range stalls while the others arrive: later chunks must wait
          // (back-pressure), and every worker must resume once it lands.
          if (args[1]?.offset === 0) await new Promise((r) => setTimeout(r, 300));
          return get(...args);
        };
        return store;
      },
    });
    try {
      await h.fs.mkdir('/ck', 0o755);
      const bytes = randomBytes((3 << 20) + 4321);
      await writeFile(h, '/ck/big.bin', bytes);
      const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
      const c = await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, {})).id);
      expect(c.phase).toBe('completed');
      // The engine releases the snapshot right after completing the commit: wait for that run.
      expect(await h.cp.engine.drain(30_000)).toBe(true);
      expect(h.ctx.index.snapshot(c.id)).toEqual([]);
      // Lose the cached copy, as after a cache wipe: the next read downloads it.
      fsSync.rmSync(`${h.ctx.cacheDir}/objects/${sha(bytes)}`, { force: true });
      const before = gets(store, objectKey(sha(bytes)));
      const [a, b] = await Promise.all([readAll(h, '/ck/big.bin', bytes.length), readAll(h, '/ck/big.bin', bytes.length)]);
      expect(sha(a)).toBe(sha(bytes));
      expect(sha(b)).toBe(sha(bytes));
      // One download for both readers, in 64 KiB ranges.
      expect(gets(store, objectKey(sha(bytes))) - before).toBe(Math.ceil(bytes.length / (64 << 10)));
    } finally {
      await h.close();
    }
  });

  it('serves a download before it is durable, and after a restart trusts only what was recorded', async () => {
    const h = await startCore();
    try {
      await h.fs.mkdir('/ck', 0o755);
      const bytes = randomBytes(1 << 20);
      await writeFile(h, '/ck/f.bin', bytes);
      const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
      const c = await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, {})).id);
      // The engine releases the snapshot right after completing the commit: wait for that run.
      expect(await h.cp.engine.drain(30_000)).toBe(true);
      expect(h.ctx.index.snapshot(c.id)).toEqual([]);
      await h.fs.settle();
      // A recorded object survives the start-up sweep; a file the index does not know
      // (a download a crash caught before its fsync) does not.
      const stray = `${h.ctx.cacheDir}/objects/${'0'.repeat(64)}`;
      fsSync.writeFileSync(stray, 'torn');
      await h.fs.reconcile();
      expect(fsSync.existsSync(stray)).toBe(false);
      expect(fsSync.existsSync(`${h.ctx.cacheDir}/objects/${sha(bytes)}`)).toBe(true);
      expect(sha(await readAll(h, '/ck/f.bin', bytes.length))).toBe(sha(bytes));
    } finally {
      await h.close();
    }
  });
});
