/**
 * The object-store conformance suite: one set of assertions that every backend
 * (LocalStore, S3Store against a real Ceph RGW, and any later one) must pass, so the
 * rest of Roset can treat stores as interchangeable.
 *
 * Owns: the executable form of the contract in src/store/types.ts.
 *
 * Invariants:
 * - Every backend gets exactly the same assertions; a backend-specific check belongs in
 *   that backend's own test file, not here behind an `if`.
 * - Each run works under a fresh prefix (the factory provides a fresh store), so runs
 *   against a shared bucket never see each other's keys, and cleans up after itself.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CacheError, StoreError } from '../../src/errors/index.js';
import { RetryingStore } from '../../src/store/retry.js';
import { listAll, type ObjectStore } from '../../src/store/types.js';

export interface StoreUnderTest {
  /** Opened with no upload owner. */
  store: ObjectStore;
  /** Another handle on the same store (same directory or prefix), tagging its uploads with `owner`. */
  withOwner: (owner: string) => Promise<ObjectStore>;
  /** Removes whatever the factory created (a temp dir); keys are deleted by the suite. */
  cleanup?: () => Promise<void>;
}

const MiB = 1024 * 1024;
const MULTIPART_SIZE = 200 * MiB;
const MULTIPART_PART_SIZE = 16 * MiB;
const MULTIPART_CONCURRENCY = 4;
const LIST_KEYS = 1105;

async function expectCode(p: Promise<unknown>, code: string): Promise<StoreError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, `expected StoreError ${code}, got success`).toBeDefined();
  expect(err).toBeInstanceOf(StoreError);
  expect((err as StoreError).rosetCode).toBe(code);
  return err as StoreError;
}

/** Runs `fn` over `items`, `limit` at a time. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function listKeys(store: ObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of listAll(store, prefix)) out.push(o.key);
  return out.sort();
}

function mbps(bytes: number, ms: number): string {
  return `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
}

export function storeConformance(name: string, factory: () => Promise<StoreUnderTest>): void {
  describe(`object store conformance: ${name}`, () => {
    let sut: StoreUnderTest;
    let store: ObjectStore;
    let tmp: string;

    // A store that cannot be opened (no S3 server) fails every test with the reason.
    // A throwing beforeAll would instead report the tests as skipped.
    let setupError: unknown;
    beforeAll(async () => {
      try {
        sut = await factory();
        store = sut.store;
        tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'roset-conformance-'));
      } catch (err) {
        setupError = err;
      }
    });
    beforeEach(() => {
      if (setupError) throw setupError;
    });

    afterAll(async () => {
      if (store) {
        // Leave a shared bucket as we found it: objects, then unfinished uploads.
        const keys: string[] = [];
        for await (const o of listAll(store, '')) keys.push(o.key);
        await mapLimit(keys, 32, (k) => store.delete(k));
        for (const u of await store.listMultipartUploads('')) await store.abortMultipartUpload(u.key, u.uploadId).catch(() => {});
        await store.close();
      }
      await sut?.cleanup?.();
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    });

    it('reports conditional writes and multipart as supported', () => {
      expect(store.capabilities).toEqual({ conditionalWrites: true, multipart: true });
      expect(store.description).not.toMatch(/secret|password/i);
    });

    it('puts, gets, heads and deletes an object', async () => {
      const body = 'hello, checkpoint\n';
      const { etag } = await store.put('basic/a.txt', body);
      expect(etag).toBeTruthy();
      expect(etag).not.toContain('"');
      expect((await store.get('basic/a.txt')).toString()).toBe(body);
      const info = await store.head('basic/a.txt');
      expect(info).not.toBeNull();
      expect(info!.key).toBe('basic/a.txt');
      expect(info!.size).toBe(Buffer.byteLength(body));
      expect(info!.etag).toBe(etag);
      expect(info!.lastModified).toBeInstanceOf(Date);
      expect(Math.abs(info!.lastModified.getTime() - Date.now())).toBeLessThan(10 * 60_000);

      // Overwrite changes the content and the ETag; binary bodies round-trip.
      const bin = randomBytes(4096);
      const second = await store.put('basic/a.txt', bin);
      expect(second.etag).not.toBe(etag);
      expect((await store.get('basic/a.txt')).equals(bin)).toBe(true);

      // An empty object is an object.
      await store.put('basic/empty', Buffer.alloc(0));
      expect((await store.head('basic/empty'))?.size).toBe(0);
      expect((await store.get('basic/empty')).length).toBe(0);

      await store.delete('basic/a.txt');
      expect(await store.head('basic/a.txt')).toBeNull();
      await expectCode(store.get('basic/a.txt'), 'OBJECT_NOT_FOUND');
      // Deleting what is not there is not an error (retries of a delete must be safe).
      await store.delete('basic/a.txt');
    });

    it('reports a missing key: get throws OBJECT_NOT_FOUND naming the key, head returns null', async () => {
      const err = await expectCode(store.get('missing/nothing-here'), 'OBJECT_NOT_FOUND');
      expect(err.message).toContain('missing/nothing-here');
      expect(await store.head('missing/nothing-here')).toBeNull();
      await expectCode(store.get('missing/nothing-here', { offset: 0, length: 10 }), 'OBJECT_NOT_FOUND');
    });

    it('rejects keys that are not plain relative paths', async () => {
      for (const bad of ['', '/abs', 'a//b', '../up', 'a/./b', 'a/..', '.roset/x', 'nul\0byte']) {
        await expectCode(store.put(bad, 'x'), 'BAD_REQUEST');
      }
    });

    it('serves byte ranges', async () => {
      const body = randomBytes(3 * MiB + 123);
      await store.put('range/blob', body);
      const cases: [number, number][] = [
        [0, 1], [0, 1000], [MiB - 7, 2 * MiB], [body.length - 10, 10], [body.length - 10, 1000], [12345, 1],
      ];
      for (const [offset, length] of cases) {
        const got = await store.get('range/blob', { offset, length });
        expect(got.equals(body.subarray(offset, offset + length)), `range ${offset}+${length}`).toBe(true);
      }
      // Past the end and zero-length: empty, like a short read of a file.
      expect((await store.get('range/blob', { offset: body.length, length: 10 })).length).toBe(0);
      expect((await store.get('range/blob', { offset: body.length + 100, length: 10 })).length).toBe(0);
      expect((await store.get('range/blob', { offset: 5, length: 0 })).length).toBe(0);
      // Into the caller's buffer (ByteRange.into), whole or cut short at the end: the
      // same bytes, and a buffer used again for another range holds only the new ones.
      const into = Buffer.alloc(2 * MiB, 0xee);
      for (const [offset, length] of [[MiB - 7, 2 * MiB], [body.length - 10, 1000], [3, 17]] as const) {
        const got = await store.get('range/blob', { offset, length, into });
        expect(got.equals(body.subarray(offset, offset + length)), `range ${offset}+${length} into a buffer`).toBe(true);
      }
    });

    it(`lists by prefix in order, paginating past 1,000 keys (${LIST_KEYS} keys)`, async () => {
      const keys = Array.from({ length: LIST_KEYS }, (_, i) => `list/many/k-${String(i).padStart(5, '0')}`);
      await mapLimit(keys, 32, (k) => store.put(k, k));
      // Neighbours that share a string prefix but not the folder.
      await store.put('list/many-sibling', 'x');
      await store.put('list/other/one', 'x');

      // Default page size: S3's 1,000.
      const first = await store.list('list/many/');
      expect(first.objects.length).toBe(1000);
      expect(first.cursor).toBeTruthy();
      const second = await store.list('list/many/', { cursor: first.cursor });
      expect(second.objects.length).toBe(LIST_KEYS - 1000);
      expect(second.cursor).toBeUndefined();
      expect([...first.objects, ...second.objects].map((o) => o.key)).toEqual(keys);
      for (const o of first.objects.slice(0, 5)) {
        expect(o.size).toBe(o.key.length);
        expect(o.etag).toBeTruthy();
        expect(o.etag).not.toContain('"');
      }

      // Small pages: every key exactly once, in order.
      const paged: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.list('list/many/', { cursor, limit: 250 });
        expect(page.objects.length).toBeLessThanOrEqual(250);
        paged.push(...page.objects.map((o) => o.key));
        cursor = page.cursor;
        pages++;
      } while (cursor);
      expect(paged).toEqual(keys);
      expect(pages).toBe(Math.ceil(LIST_KEYS / 250));

      const all: string[] = [];
      for await (const o of listAll(store, 'list/')) all.push(o.key);
      expect(all).toEqual([...keys, 'list/many-sibling', 'list/other/one'].sort());
      expect((await store.list('list/other/')).objects.map((o) => o.key)).toEqual(['list/other/one']);
      expect((await store.list('list/nothing/')).objects).toEqual([]);

      // Deleted keys leave the listing.
      await mapLimit(keys.slice(0, 100), 32, (k) => store.delete(k));
      const after = await store.list('list/many/');
      expect(after.objects.map((o) => o.key)).toEqual(keys.slice(100, 1100));
    });

    it('uploads a 200 MiB file with putFile in parts, in bounded memory, byte for byte', async () => {
      const file = path.join(tmp, 'big.bin');
      const hash = createHash('sha256');
      const fh = await fs.open(file, 'w');
      try {
        for (let written = 0; written < MULTIPART_SIZE; written += 8 * MiB) {
          const chunk = randomBytes(Math.min(8 * MiB, MULTIPART_SIZE - written));
          hash.update(chunk);
          await fh.write(chunk);
        }
      } finally {
        await fh.close();
      }
      const digest = hash.digest('hex');

      let peakArrayBuffers = 0;
      const baseline = process.memoryUsage().arrayBuffers;
      const sampler = setInterval(() => {
        peakArrayBuffers = Math.max(peakArrayBuffers, process.memoryUsage().arrayBuffers - baseline);
      }, 20);
      const progress: number[] = [];
      const t0 = performance.now();
      let result;
      try {
        result = await store.putFile('big/model.bin', file, {
          partSize: MULTIPART_PART_SIZE,
          concurrency: MULTIPART_CONCURRENCY,
          onProgress: (n) => progress.push(n),
        });
      } finally {
        clearInterval(sampler);
      }
      const uploadMs = performance.now() - t0;
      expect(result.etag).toBeTruthy();
      expect(result.etag).not.toContain('"');
      expect(progress.length).toBeGreaterThan(0);
      expect(progress.at(-1)).toBe(MULTIPART_SIZE);
      for (let i = 1; i < progress.length; i++) expect(progress[i]!).toBeGreaterThanOrEqual(progress[i - 1]!);
      // concurrency part buffers, plus slack for the SDK and this test's own buffers.
      expect(peakArrayBuffers).toBeLessThan(MULTIPART_CONCURRENCY * MULTIPART_PART_SIZE + 64 * MiB);

      const info = await store.head('big/model.bin');
      expect(info?.size).toBe(MULTIPART_SIZE);
      expect(info?.etag).toBe(result.etag);

      // Read it back with parallel ranged GETs and compare the sha256.
      const t1 = performance.now();
      const chunk = 16 * MiB;
      const offsets = Array.from({ length: Math.ceil(MULTIPART_SIZE / chunk) }, (_, i) => i * chunk);
      const parts = await mapLimit(offsets, 4, (offset) => store.get('big/model.bin', { offset, length: chunk }));
      const readMs = performance.now() - t1;
      const back = createHash('sha256');
      for (const p of parts) back.update(p);
      expect(back.digest('hex')).toBe(digest);
      console.log(`[${name}] putFile 200 MiB (${MULTIPART_PART_SIZE / MiB} MiB parts x${MULTIPART_CONCURRENCY}): `
        + `${mbps(MULTIPART_SIZE, uploadMs)}, peak part memory ${(peakArrayBuffers / MiB).toFixed(0)} MiB; `
        + `ranged GET back: ${mbps(MULTIPART_SIZE, readMs)}`);

      // putFile with ifAbsent loses against an existing key.
      await expectCode(store.putFile('big/model.bin', file, { ifAbsent: true, partSize: MULTIPART_PART_SIZE }), 'PRECONDITION_FAILED');
      await fs.rm(file);
    });

    it('uploads a small file with putFile in one request', async () => {
      const file = path.join(tmp, 'small.json');
      await fs.writeFile(file, '{"step":1}');
      const r = await store.putFile('small/config.json', file);
      expect((await store.get('small/config.json')).toString()).toBe('{"step":1}');
      expect((await store.head('small/config.json'))?.etag).toBe(r.etag);
      await expectCode(store.putFile('small/config.json', file, { ifAbsent: true }), 'PRECONDITION_FAILED');
      // Which code a missing source file gets is not part of the contract yet (LocalStore
      // says OBJECT_NOT_FOUND, S3Store STORAGE_ERROR); that it is a StoreError is.
      await expect(store.putFile('small/missing', path.join(tmp, 'no-such-file'))).rejects.toBeInstanceOf(StoreError);
      expect(await store.head('small/missing')).toBeNull();
    });

    it('put-if-absent: of 16 concurrent racers exactly one wins, the rest get PRECONDITION_FAILED', async () => {
      const racers = 16;
      const results = await Promise.allSettled(
        Array.from({ length: racers }, (_, i) => store.putIfAbsent('race/manifest.json', `{"writer":${i}}`)),
      );
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(winners.length).toBe(1);
      for (const r of results) {
        if (r.status === 'rejected') {
          expect(r.reason).toBeInstanceOf(StoreError);
          expect((r.reason as StoreError).rosetCode).toBe('PRECONDITION_FAILED');
        }
      }
      // The object is the winner's, whole.
      expect((await store.get('race/manifest.json')).toString()).toBe(`{"writer":${winners[0]}}`);
      // A later put-if-absent loses too.
      await expectCode(store.putIfAbsent('race/manifest.json', 'late'), 'PRECONDITION_FAILED');
      expect((await store.get('race/manifest.json')).toString()).toBe(`{"writer":${winners[0]}}`);
    });

    it('put-if-match: succeeds with the current ETag, loses with a stale one', async () => {
      const v1 = await store.put('cas/ref.json', '{"commitId":"c1"}');
      const v2 = await store.putIfMatch('cas/ref.json', '{"commitId":"c2"}', v1.etag);
      expect(v2.etag).not.toBe(v1.etag);
      expect((await store.head('cas/ref.json'))?.etag).toBe(v2.etag);
      // Stale: v1 was replaced.
      await expectCode(store.putIfMatch('cas/ref.json', '{"commitId":"c3"}', v1.etag), 'PRECONDITION_FAILED');
      expect((await store.get('cas/ref.json')).toString()).toBe('{"commitId":"c2"}');
      // A quoted ETag (as HTTP writes it) means the same ETag.
      const v3 = await store.putIfMatch('cas/ref.json', '{"commitId":"c3"}', `"${v2.etag}"`);
      expect((await store.get('cas/ref.json')).toString()).toBe('{"commitId":"c3"}');
      expect(v3.etag).toBeTruthy();
      // No object, no match.
      await expectCode(store.putIfMatch('cas/absent.json', '{}', v3.etag), 'PRECONDITION_FAILED');
      expect(await store.head('cas/absent.json')).toBeNull();
    });

    it('assembles a multipart upload from its parts', async () => {
      const a = randomBytes(5 * MiB);
      const b = randomBytes(1234);
      const id = await store.createMultipartUpload('mp/assembled.bin');
      // Out of order on purpose.
      const pb = await store.uploadPart('mp/assembled.bin', id, 2, b);
      const pa = await store.uploadPart('mp/assembled.bin', id, 1, a);
      const r = await store.completeMultipartUpload('mp/assembled.bin', id, [pb, pa]);
      expect(r.etag).toBeTruthy();
      expect(r.etag).not.toContain('"');
      expect((await store.head('mp/assembled.bin'))?.etag).toBe(r.etag);
      expect((await store.get('mp/assembled.bin')).equals(Buffer.concat([a, b]))).toBe(true);
      expect((await store.listMultipartUploads('mp/')).map((u) => u.uploadId)).not.toContain(id);
    });

    it('finds an abandoned multipart upload, aborts it, and it is gone', async () => {
      const key = 'mp/abandoned.bin';
      const id = await store.createMultipartUpload(key);
      await store.uploadPart(key, id, 1, randomBytes(5 * MiB));
      // The writer "dies" here. A later sweep finds the upload by prefix.
      const found = await store.listMultipartUploads('mp/');
      const mine = found.find((u) => u.uploadId === id);
      expect(mine).toBeDefined();
      expect(mine!.key).toBe(key);
      expect(mine!.initiated).toBeInstanceOf(Date);
      expect((await store.listMultipartUploads('elsewhere/')).map((u) => u.uploadId)).not.toContain(id);

      await store.abortMultipartUpload(key, id);
      expect((await store.listMultipartUploads('mp/')).map((u) => u.uploadId)).not.toContain(id);
      expect(await store.head(key)).toBeNull();
      // The upload is really gone: it can be neither aborted again nor completed.
      await expectCode(store.abortMultipartUpload(key, id), 'OBJECT_NOT_FOUND');
      await expect(store.completeMultipartUpload(key, id, [{ partNumber: 1, etag: 'x' }])).rejects.toBeInstanceOf(StoreError);
      expect(await store.head(key)).toBeNull();
    });

    it('tags uploads with their owner, and an owner\'s sweep aborts its own uploads and no one else\'s', async () => {
      const mine = await sut.withOwner('agt_mine');
      const peer = await sut.withOwner('agt_peer');
      try {
        const started = async (s: ObjectStore, key: string): Promise<string> => {
          const id = await s.createMultipartUpload(key);
          await s.uploadPart(key, id, 1, randomBytes(1024));
          return id;
        };
        const a = await started(mine, 'owners/a.bin');
        const b = await started(mine, 'owners/b.bin');
        const p = await started(peer, 'owners/a.bin');
        const u = await started(store, 'owners/untagged.bin');
        const owners = async (): Promise<Record<string, string | null>> =>
          Object.fromEntries((await store.listMultipartUploads('owners/')).map((x) => [x.uploadId, x.owner]));
        expect(await owners()).toEqual({ [a]: 'agt_mine', [b]: 'agt_mine', [p]: 'agt_peer', [u]: null });

        // A finished upload is no longer anyone's to abort.
        const done = await mine.createMultipartUpload('owners/done.bin');
        await mine.completeMultipartUpload('owners/done.bin', done, [await mine.uploadPart('owners/done.bin', done, 1, Buffer.from('done'))]);

        const aborted = await mine.abortOwnUploads();
        expect(aborted.map((x) => x.uploadId).sort()).toEqual([a, b].sort());
        expect(await owners()).toEqual({ [p]: 'agt_peer', [u]: null });
        // The peer's upload is whole: it still completes.
        await peer.uploadPart('owners/a.bin', p, 2, Buffer.from('tail'));
        expect(await mine.abortOwnUploads()).toEqual([]);
        // Without an owner, a sweep aborts nothing.
        expect(await store.abortOwnUploads()).toEqual([]);
        expect(await owners()).toEqual({ [p]: 'agt_peer', [u]: null });
        await peer.abortOwnUploads();
        await store.abortMultipartUpload('owners/untagged.bin', u);
        expect(await owners()).toEqual({});
        expect((await store.get('owners/done.bin')).toString()).toBe('done');
      } finally {
        await mine.close();
        await peer.close();
      }
    });

    it('uploads a file while it is written: nothing under the key until publish, then every byte; an abort publishes nothing', async () => {
      const owned = new RetryingStore(await sut.withOwner('agt_early'), { attempts: 3, deadlineMs: 30_000, baseDelayMs: 1, maxDelayMs: 5 });
      const file = path.join(tmp, 'growing.bin');
      const data = randomBytes(80 * MiB + 12345);
      try {
        // Written in 10 MiB steps, each declared final as it lands.
        const up = owned.startFileUpload(file);
        const fh = await fs.open(file, 'w');
        for (let at = 0; at < data.length; at += 10 * MiB) {
          const chunk = data.subarray(at, at + 10 * MiB);
          await fh.write(chunk, 0, chunk.length, at);
          up.grow(at + chunk.length);
          expect(await owned.head('early/growing.bin')).toBeNull();
        }
        await fh.close();
        const r = await up.publish('early/growing.bin', data.length);
        expect(r.etag).toBeTruthy();
        expect(up.sentBytes).toBe(data.length);
        expect(sha(await owned.get('early/growing.bin'))).toBe(sha(data));
        // Nothing else of it is left: no unfinished upload, no other key.
        expect((await owned.listMultipartUploads('')).filter((u) => u.owner === 'agt_early')).toEqual([]);
        expect((await listKeys(owned, 'early/'))).toEqual(['early/growing.bin']);

        // Aborted after its parts went: nothing is published, and publish refuses.
        const dropped = owned.startFileUpload(file);
        dropped.grow(data.length);
        await dropped.abort();
        await expectCode(dropped.publish('early/dropped.bin', data.length), 'STORAGE_ERROR');
        expect(await owned.head('early/dropped.bin')).toBeNull();
        expect((await owned.listMultipartUploads('')).filter((u) => u.owner === 'agt_early')).toEqual([]);
      } finally {
        await owned.close();
      }
    });

    it('stops an upload whose file changed after one attempt: the error comes back as it is, never retried', async () => {
      // Under the retry layer, as every store runs: each call of a hook is one attempt.
      const retrying = new RetryingStore(await sut.withOwner('agt_changed'), { attempts: 8, deadlineMs: 30_000, baseDelayMs: 1, maxDelayMs: 5 });
      const changed = new CacheError('FILE_CHANGED', 'the file changed while it was being uploaded');
      const small = path.join(tmp, 'changed-small.bin');
      const big = path.join(tmp, 'changed-big.bin');
      await fs.writeFile(small, randomBytes(4096));
      await fs.writeFile(big, randomBytes(12 * MiB));
      try {
        for (const [key, file] of [['changed/small.bin', small], ['changed/big.bin', big]] as const) {
          let checks = 0;
          const err = await retrying.putFile(key, file, {
            ifAbsent: true, partSize: 5 * MiB, beforeComplete: () => { checks++; throw changed; },
          }).then(() => undefined, (e: unknown) => e);
          expect(err, key).toBe(changed);
          expect(checks, key).toBe(1);
          expect(await store.head(key), key).toBeNull();
        }
        // Stopped before its bytes are read: once.
        let parts = 0;
        const err = await retrying.putFile('changed/parts.bin', big, {
          partSize: 5 * MiB, concurrency: 1, beforePart: () => { parts++; throw changed; },
        }).then(() => undefined, (e: unknown) => e);
        expect(err).toBe(changed);
        expect(parts).toBe(1);
        expect(await store.head('changed/parts.bin')).toBeNull();
        // Nothing is left half-uploaded, and nothing is left tagged.
        expect(await store.listMultipartUploads('changed/')).toEqual([]);
        expect(await retrying.abortOwnUploads()).toEqual([]);
      } finally {
        await retrying.close();
      }
    });
  });
}
