/**
 * The retry layer: transient failures are retried with backoff until success, within
 * an attempt limit and a deadline; answers (403, 412, 404) are never retried; an
 * exhausted operation fails with STORAGE_ERROR naming the operation and the object.
 * And at the commit level: a commit survives transient faults, fails cleanly on a
 * persistent one (folder back in STAGING, `latest` unmoved), and succeeds once the
 * fault is gone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fsSync from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
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
        return (await h.cp.lookup(h.mountId, dir))!.id;
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
      expect((await h.cp.lookup(h.mountId, '/two'))!.state).toBe('staging');
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
