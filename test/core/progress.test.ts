/**
 * Progress people can see: a pending commit carries its phase, the snapshot's totals
 * and the files and bytes done, kept in the metadata store (so any process answers
 * it), written at most about twice a second; and the throttle that keeps it so.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { toCommit } from '../../src/control/service.js';
import type { ObjectStore } from '../../src/store/types.js';
import { LatestThrottle } from '../../src/util/throttle.js';
import { startCore, waitSettled, writeFile } from '../support/core.js';

/** A store whose uploads wait until the test lets them through, one by one. */
function gated(inner: ObjectStore): { store: ObjectStore; release: (n: number) => void; waiting: () => number } {
  const waiters: Array<() => void> = [];
  let credit = 0;
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'putFile') {
        return async (...args: Parameters<ObjectStore['putFile']>) => {
          if (credit > 0) credit--;
          else await new Promise<void>((r) => waiters.push(r));
          return target.putFile(...args);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return {
    store,
    release: (n) => {
      for (let i = 0; i < n; i++) {
        const w = waiters.shift();
        if (w) w();
        else credit++;
      }
    },
    waiting: () => waiters.length,
  };
}

async function until<T>(what: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await what();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out; last ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('commit progress', () => {
  it('shows the snapshot totals and counts files as they reach the store, then null once completed', async () => {
    let gate!: ReturnType<typeof gated>;
    const h = await startCore({ wrapStore: (s) => (gate = gated(s)).store });
    try {
      await h.fs.mkdir('/ck', 0o755);
      const sizes = [1000, 2000, 3000, 4000];
      for (const [i, n] of sizes.entries()) await writeFile(h, `/ck/f${i}.bin`, Buffer.alloc(n, i + 1));
      const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
      const c = await h.cp.commit(h.mountId, folder.id, {});
      expect(toCommit(c).progress).toMatchObject({ phase: 'sealing' });
      const view = async () => toCommit(await h.cp.getCommit(h.mountId, c.id));
      const first = await until(view, (v) => v.progress?.phase === 'uploading' && v.progress.filesTotal === 4);
      expect(first.progress).toEqual({ phase: 'uploading', filesTotal: 4, filesDone: 0, bytesTotal: 10_000, bytesUploaded: 0 });
      // Each object let through is one more file done.
      await until(async () => gate.waiting(), (n) => n > 0);
      gate.release(1);
      const mid = await until(view, (v) => (v.progress?.filesDone ?? 0) >= 1);
      expect(mid.status).toBe('pending');
      expect(mid.progress!.filesDone).toBe(1);
      expect(sizes).toContain(mid.progress!.bytesUploaded);
      gate.release(3);
      const done = await waitSettled(h, c.id);
      expect(done.phase).toBe('completed');
      expect(toCommit(done).progress).toBeNull();
      // The last record is the manifest phase, everything done.
      expect(done.progress).toEqual({ phase: 'manifest', filesTotal: 4, filesDone: 4, bytesTotal: 10_000, bytesUploaded: 10_000 });
    } finally {
      await h.close();
    }
  });
});

describe('LatestThrottle', () => {
  afterEach(() => { vi.useRealTimers(); });

  it('writes at most once per interval, only the latest value, and the last one eventually', async () => {
    vi.useFakeTimers();
    const written: number[] = [];
    const t = new LatestThrottle<number>(async (v) => { written.push(v); }, 500);
    for (let i = 1; i <= 10_000; i++) t.push(i);
    await vi.advanceTimersByTimeAsync(0);
    expect(written).toEqual([1]);
    await vi.advanceTimersByTimeAsync(499);
    expect(written).toEqual([1]);
    await vi.advanceTimersByTimeAsync(1);
    expect(written).toEqual([1, 10_000]);
    t.push(10_001);
    await t.flush();
    expect(written).toEqual([1, 10_000, 10_001]);
    t.push(7);
    t.stop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(written).toEqual([1, 10_000, 10_001]);
  });

  it('reports a failed write and goes on', async () => {
    const errors: unknown[] = [];
    let n = 0;
    const t = new LatestThrottle<number>(async () => { if (n++ === 0) throw new Error('db away'); }, 0, (e) => errors.push(e));
    t.push(1);
    await t.flush();
    t.push(2);
    await t.flush();
    expect(errors.length).toBe(1);
    expect(n).toBe(2);
  });
});
