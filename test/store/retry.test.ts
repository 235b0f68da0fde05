/**
 * The retry layer: transient failures are retried with backoff until success, within
 * an attempt limit and a deadline; answers (403, 412, 404, a file changed under its
 * upload) are never retried; an upload is retried request by request, never whole; a
 * conditional write whose own lost attempt landed is a win; an exhausted operation
 * fails with STORAGE_ERROR naming the operation and the object. And at the commit level: a commit survives transient faults, fails cleanly on a
 * persistent one (folder back in STAGING, `latest` unmoved), and succeeds once the
 * fault is gone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fsSync from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CacheError, StoreError } from '../../src/errors/index.js';
import { LocalStore } from '../../src/store/local.js';
import { RetryingStore } from '../../src/store/retry.js';
import { faulty, type FaultyStore } from '../support/faulty-store.js';
import { startCore, waitSettled } from '../support/core.js';

const fast = { attempts: 5, deadlineMs: 2_000, baseDelayMs: 1, maxDelayMs: 10 };

describe('RetryingStore', () => {
  let dir: string;
  let inner: FaultyStore;
  let store: RetryingStore;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'roset-retry-'));
    inner = faulty(await LocalStore.open(dir));
    store = new RetryingStore(inner, fast);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('retries transient failures until the operation succeeds', async () => {
    inner.rules.push({ op: 'put', kind: 'transient', times: 3 });
    await store.put('a/b', 'hello');
    expect(inner.calls.filter((c) => c.op === 'put').map((c) => c.failed)).toEqual([true, true, true, false]);
    expect((await store.get('a/b')).toString()).toBe('hello');
  });

  it('gives up after the attempt limit with STORAGE_ERROR naming the operation and key', async () => {
    inner.rules.push({ op: 'putIfAbsent', kind: 'transient' });
    const err = await store.putIfAbsent('commits/c1.json', '{}').catch((e: unknown) => e);
    expect(err).toMatchObject({ rosetCode: 'STORAGE_ERROR', details: { attempts: 5, key: 'commits/c1.json' } });
    expect((err as Error).message).toContain('put-if-absent of commits/c1.json failed after 5 attempt(s)');
  });

  it('stops at the deadline even with attempts left', async () => {
    const slow = new RetryingStore(inner, { attempts: 1000, deadlineMs: 300, baseDelayMs: 50, maxDelayMs: 100 });
    inner.rules.push({ op: 'get', kind: 'transient' });
    await store.put('k', 'v');
    const t0 = Date.now();
    await expect(slow.get('k')).rejects.toMatchObject({ rosetCode: 'STORAGE_ERROR' });
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('never retries answers: forbidden, precondition failed, not found', async () => {
    inner.rules.push({ op: 'put', kind: 'forbidden' });
    await expect(store.put('x', 'y')).rejects.toMatchObject({ rosetCode: 'STORAGE_ERROR', details: { status: 403 } });
    inner.rules.length = 0;
    inner.rules.push({ op: 'putIfAbsent', kind: 'precondition' });
    await expect(store.putIfAbsent('x', 'y')).rejects.toMatchObject({ rosetCode: 'PRECONDITION_FAILED' });
    await expect(store.get('missing')).rejects.toMatchObject({ rosetCode: 'OBJECT_NOT_FOUND' });
    expect(inner.calls.filter((c) => c.failed).length).toBe(2);
  });

  it('sends a failed request of an upload again, never the whole upload', async () => {
    const file = path.join(dir, 'src.bin');
    fsSync.writeFileSync(file, Buffer.alloc(1 << 20, 7));
    inner.rules.push({ op: 'putFile', kind: 'transient', times: 2 });
    let checks = 0;
    await store.putFile('objects/aa/one', file, { ifAbsent: true, beforeComplete: () => { checks++; } });
    // The copy was attempted three times; the upload as a whole ran once.
    expect(inner.calls.filter((c) => c.op === 'putFile').map((c) => c.failed)).toEqual([true, true, false]);
    expect(checks).toBe(1);
    expect((await store.get('objects/aa/one')).equals(fsSync.readFileSync(file))).toBe(true);
  });

  it('never retries an upload stopped because its file changed', async () => {
    const file = path.join(dir, 'src.bin');
    fsSync.writeFileSync(file, Buffer.alloc(1 << 20, 7));
    const changed = new CacheError('FILE_CHANGED', 'node n1 changed while it was being uploaded');
    const err = await store.putFile('objects/aa/two', file, { ifAbsent: true, beforeComplete: () => { throw changed; } }).catch((e: unknown) => e);
    expect(err).toBe(changed);
    expect(inner.calls.filter((c) => c.op === 'putFile')).toEqual([{ op: 'putFile', key: 'objects/aa/two', failed: false }]);
    expect(await store.head('objects/aa/two')).toBeNull();
  });

  it('retries a failure the backend marks retryable, such as a 409 on a conditional write', async () => {
    let conflicts = 0;
    const conflicting = Object.assign(Object.create(inner) as typeof inner, {
      putIfAbsent: async (key: string, body: string) => {
        if (conflicts++ < 2) throw new StoreError('STORAGE_ERROR', 'conflict', { key, status: 409, s3Code: 'ConditionalRequestConflict', retryable: true });
        return inner.putIfAbsent(key, body);
      },
    });
    await new RetryingStore(conflicting, fast).putIfAbsent('c.json', '{}');
    expect(conflicts).toBe(3);
    // The same status without the mark is an answer.
    const plain = Object.assign(Object.create(inner) as typeof inner, {
      putIfAbsent: async (key: string) => { conflicts++; throw new StoreError('STORAGE_ERROR', 'conflict', { key, status: 409 }); },
    });
    conflicts = 0;
    await expect(new RetryingStore(plain, fast).putIfAbsent('d.json', '{}')).rejects.toMatchObject({ details: { status: 409 } });
    expect(conflicts).toBe(1);
  });

  it('reports a conditional write as won when only the answer of its own earlier attempt was lost', async () => {
    // The first attempt fails with a reset after `landing` wrote something under the key.
    let landing: ((key: string, body: string) => Promise<unknown>) | null = null;
    const lossy = Object.assign(Object.create(inner) as typeof inner, {
      putIfAbsent: async (key: string, body: string) => {
        const land = landing;
        landing = null;
        if (land) {
          await land(key, body);
          throw new StoreError('STORAGE_ERROR', 'connection reset', { key });
        }
        return inner.putIfAbsent(key, body);
      },
    });
    const retrying = new RetryingStore(lossy, fast);
    // Its own bytes landed: the retry's 412 is its win.
    landing = (key, body) => inner.putIfAbsent(key, body);
    const r = await retrying.putIfAbsent('m.json', '{"id":"c1"}');
    expect((await store.head('m.json'))?.etag).toBe(r.etag);
    // Someone else's bytes landed meanwhile: still a loss.
    landing = (key) => inner.putIfAbsent(key, '{"id":"other"}');
    await expect(retrying.putIfAbsent('n.json', '{"id":"c2"}')).rejects.toMatchObject({ rosetCode: 'PRECONDITION_FAILED' });
    expect((await store.get('n.json')).toString()).toBe('{"id":"other"}');
  });
});

describe('commits under storage faults', () => {
  it('complete despite transient faults, fail cleanly on a persistent one, and succeed once it is gone', async () => {
    let f!: FaultyStore;
    const h = await startCore({ wrapStore: (s) => new RetryingStore(f = faulty(s), fast) });
    try {
      const write = async (dir: string, text: string): Promise<string> => {
        await h.fs.mkdir(dir, 0o755);
        const fh = await h.fs.create(`${dir}/w.bin`, 0o644, fsSync.constants.O_WRONLY);
        h.fs.write(fh, Buffer.from(text), text.length, 0);
        await h.fs.release(fh);
        return (await h.cp.resolvePath(h.mountId, dir))!.id;
      };
      // Every other storage call fails once: retried, the commit completes.
      f.rules.push({ op: '*', kind: 'transient', every: 2 });
      const ok = await waitSettled(h, (await h.cp.commit(h.mountId, await write('/one', 'first'), {})).id);
      expect(ok.phase).toBe('completed');
      await h.cp.setRef(h.mountId, 'latest', { commitId: ok.id }, 'test');

      // The object upload fails for good: the commit fails with a code that names it.
      f.rules.length = 0;
      f.rules.push({ op: 'putFile', kind: 'transient' });
      const folder = await write('/two', 'second');
      const bad = await waitSettled(h, (await h.cp.commit(h.mountId, folder, {})).id);
      expect(bad.phase).toBe('failed');
      expect(bad.error?.code).toBe('STORAGE_ERROR');
      expect(bad.error?.message).toMatch(/upload of objects\/[0-9a-f]{2}\/[0-9a-f]{64} failed after 5 attempt/);
      expect((await h.cp.resolvePath(h.mountId, '/two'))!.state).toBe('staging');
      expect((await h.cp.getRef(h.mountId, 'latest')).commitId).toBe(ok.id);

      // The fault is gone: the same folder commits.
      f.rules.length = 0;
      const again = await waitSettled(h, (await h.cp.commit(h.mountId, folder, {})).id);
      expect(again.phase).toBe('completed');
    } finally {
      await h.close();
    }
  });
});
