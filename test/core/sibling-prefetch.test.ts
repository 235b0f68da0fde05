/**
 * Sibling prefetch, without FUSE: a cold read of one committed file puts the other
 * committed files of its folder (not of its sub-folders, not empty ones) into the read
 * cache, verified, counted in the metrics, once per folder; with a small --cache-size
 * only what fits beside the cache's content is prefetched and nothing cached is
 * evicted; staged files are untouched; a failed prefetch download is not thrown to the
 * reader and leaves nothing behind; a reader is served while a prefetch download holds
 * its share of the block budget, and a prefetch download a reader joins gets the
 * reader's place in it; the option off prefetches nothing; the streaming open
 * prefetches too.
 */
import * as fsSync from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { objectKey } from '../../src/commit/layout.js';
import { registry } from '../../src/metrics/index.js';
import type { ObjectStore } from '../../src/store/types.js';
import { BLOCK_SIZE } from '../../src/util/block-hash.js';
import { startCore, waitSettled, type CoreHarness, readAll, writeFile } from '../support/core.js';
import { faulty } from '../support/faulty-store.js';

const MiB = 1 << 20;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const { O_RDONLY, O_WRONLY } = fsSync.constants;

/** Commits `files` (paths under `folder`), then drops their cached copies: the next reads go to the store. */
async function commitCold(h: CoreHarness, folder: string, files: Record<string, Buffer>): Promise<void> {
  await h.fs.mkdir(folder, 0o755);
  for (const [p, bytes] of Object.entries(files)) {
    const parent = p.slice(0, p.lastIndexOf('/'));
    if (parent !== folder && !(await h.cp.resolvePath(h.mountId, parent))) await h.fs.mkdir(parent, 0o755);
    await writeFile(h, p, bytes);
  }
  const node = (await h.cp.resolvePath(h.mountId, folder))!;
  const c = await waitSettled(h, (await h.cp.commit(h.mountId, node.id, {})).id);
  expect(c.phase).toBe('completed');
  // The engine makes the staged copies cache after completing: wait, then drop them.
  expect(await h.cp.engine.drain(30_000)).toBe(true);
  await h.core.settle();
  for (const bytes of Object.values(files)) dropCached(h, bytes);
}

function dropCached(h: CoreHarness, bytes: Buffer): void {
  fsSync.rmSync(`${h.ctx.cacheDir}/objects/${sha(bytes)}`, { force: true });
  h.ctx.index.dropCachedObject(sha(bytes));
}

/** Whether the object of `bytes` is in the read cache, recorded and with the right bytes. */
function cached(h: CoreHarness, bytes: Buffer): boolean {
  const file = `${h.ctx.cacheDir}/objects/${sha(bytes)}`;
  if (!fsSync.existsSync(file)) return false;
  expect(sha(fsSync.readFileSync(file))).toBe(sha(bytes));
  return h.ctx.index.cachedObjectsByAge().some((o) => o.sha256 === sha(bytes));
}

async function counter(name: string): Promise<number> {
  return (await registry.getSingleMetric(name)!.get()).values[0]?.value ?? 0;
}

describe('sibling prefetch', () => {
  it('caches the committed files of the folder of a cold read, not its sub-folders, once per folder', async () => {
    const h = await startCore({ prefetchSiblings: true });
    try {
      const f = {
        a: randomBytes(MiB), b: randomBytes(2 * BLOCK_SIZE + 99), c: randomBytes(12_345), empty: Buffer.alloc(0), deep: randomBytes(MiB),
      };
      await commitCold(h, '/ck', { '/ck/a.bin': f.a, '/ck/b.bin': f.b, '/ck/c.bin': f.c, '/ck/empty.bin': f.empty, '/ck/sub/deep.bin': f.deep });
      const objects0 = await counter('roset_prefetch_objects_total');
      const bytes0 = await counter('roset_prefetch_bytes_total');

      expect((await readAll(h, '/ck/a.bin', f.a.length)).equals(f.a)).toBe(true);
      await h.core.settle();
      expect(cached(h, f.b)).toBe(true);
      expect(cached(h, f.c)).toBe(true);
      expect(cached(h, f.deep)).toBe(false);
      expect(await counter('roset_prefetch_objects_total')).toBe(objects0 + 2);
      expect(await counter('roset_prefetch_bytes_total')).toBe(bytes0 + f.b.length + f.c.length);
      expect(fsSync.readdirSync(`${h.ctx.cacheDir}/tmp`)).toEqual([]);
      // What prefetch cached is read from the cache, right.
      expect((await readAll(h, '/ck/b.bin', f.b.length)).equals(f.b)).toBe(true);

      // A second cold read in the folder prefetches nothing again.
      dropCached(h, f.b);
      dropCached(h, f.c);
      await readAll(h, '/ck/c.bin', f.c.length);
      await h.core.settle();
      expect(cached(h, f.b)).toBe(false);
      expect(await counter('roset_prefetch_objects_total')).toBe(objects0 + 2);
    } finally {
      await h.close();
    }
  });

  it('prefetches only what fits in --cache-size without evicting, and leaves staged files alone', async () => {
    const max = 8 * MiB;
    const h = await startCore({ prefetchSiblings: true, cacheMaxBytes: max });
    try {
      const other = randomBytes(MiB);
      const a = randomBytes(MiB);
      const siblings = [randomBytes(3 * MiB), randomBytes(3 * MiB), randomBytes(3 * MiB)];
      await commitCold(h, '/old', { '/old/x.bin': other });
      await commitCold(h, '/ck', { '/ck/a.bin': a, '/ck/s0.bin': siblings[0]!, '/ck/s1.bin': siblings[1]!, '/ck/s2.bin': siblings[2]! });
      // A staged file of this node, larger than the room left: never part of the LRU.
      const staged = randomBytes(5 * MiB);
      await h.fs.mkdir('/work', 0o755);
      await writeFile(h, '/work/staged.bin', staged);
      await readAll(h, '/old/x.bin', other.length);
      await h.core.settle();
      expect(cached(h, other)).toBe(true);

      await readAll(h, '/ck/a.bin', a.length);
      await h.core.settle();
      // 1 MiB (x) + 1 MiB (a) cached: two of the three 3 MiB siblings fit in 8 MiB, not the third.
      expect(siblings.filter((s) => cached(h, s)).length).toBe(2);
      expect(cached(h, other)).toBe(true);
      expect(cached(h, a)).toBe(true);
      expect(h.ctx.index.cachedBytes()).toBeLessThanOrEqual(max);
      expect((await readAll(h, '/work/staged.bin', staged.length)).equals(staged)).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('logs a failed prefetch download, throws it to nobody and caches nothing of it', async () => {
    const a = randomBytes(MiB);
    const bad = randomBytes(BLOCK_SIZE + 5);
    const good = randomBytes(MiB);
    let store!: ReturnType<typeof faulty>;
    const h = await startCore({ prefetchSiblings: true, wrapStore: (s: ObjectStore) => (store = faulty(s)) });
    try {
      await commitCold(h, '/ck', { '/ck/a.bin': a, '/ck/bad.bin': bad, '/ck/good.bin': good });
      store.rules.push({ op: 'get', keyIncludes: sha(bad), kind: 'forbidden' });
      expect((await readAll(h, '/ck/a.bin', a.length)).equals(a)).toBe(true);
      await h.core.settle();
      expect(cached(h, good)).toBe(true);
      expect(cached(h, bad)).toBe(false);
      expect(fsSync.existsSync(`${h.ctx.cacheDir}/objects/${sha(bad)}`)).toBe(false);
      expect(fsSync.readdirSync(`${h.ctx.cacheDir}/tmp`)).toEqual([]);
      store.rules.length = 0;
      expect((await readAll(h, '/ck/bad.bin', bad.length)).equals(bad)).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('serves a reader while a prefetch download holds its share of the block budget', async () => {
    // Every GET of the prefetched object waits until the reader of another folder is
    // done: had prefetch taken the whole budget (4 blocks), that reader could not start.
    let heldKey = '';
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let started!: () => void;
    const prefetchStarted = new Promise<void>((r) => { started = r; });
    const hold = (s: ObjectStore): ObjectStore => {
      const get = s.get.bind(s);
      s.get = async (key, range) => {
        if (key === heldKey) {
          started();
          await held;
        }
        return get(key, range);
      };
      return s;
    };
    const h = await startCore({ prefetchSiblings: true, readCache: { totalBlocks: 4 }, wrapStore: hold });
    try {
      const a = randomBytes(MiB);
      const sibling = randomBytes(4 * BLOCK_SIZE);
      const other = randomBytes(3 * BLOCK_SIZE);
      await commitCold(h, '/ck', { '/ck/a.bin': a, '/ck/sibling.bin': sibling });
      await commitCold(h, '/other', { '/other/r.bin': other });
      heldKey = objectKey(sha(sibling));
      await readAll(h, '/ck/a.bin', a.length);
      await prefetchStarted;
      expect((await readAll(h, '/other/r.bin', other.length)).equals(other)).toBe(true);
      release();
      await h.core.settle();
      expect(cached(h, sibling)).toBe(true);
    } finally {
      release();
      await h.close();
    }
  });

  it('gives a prefetch download a reader joins the reader\'s place in the block budget', async () => {
    // The first block of the prefetched object is held: as a prefetch's, its other
    // blocks would wait for that slot; once a reader joins, they take free slots.
    let heldKey = '';
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let started!: () => void;
    const prefetchStarted = new Promise<void>((r) => { started = r; });
    const hold = (s: ObjectStore): ObjectStore => {
      const get = s.get.bind(s);
      s.get = async (key, range) => {
        if (key === heldKey && (range?.offset ?? 0) === 0) {
          started();
          await held;
        }
        return get(key, range);
      };
      return s;
    };
    const h = await startCore({ prefetchSiblings: true, readCache: { totalBlocks: 4 }, wrapStore: hold });
    try {
      const a = randomBytes(MiB);
      const sibling = randomBytes(4 * BLOCK_SIZE);
      await commitCold(h, '/ck', { '/ck/a.bin': a, '/ck/sibling.bin': sibling });
      heldKey = objectKey(sha(sibling));
      await readAll(h, '/ck/a.bin', a.length);
      await prefetchStarted;
      h.core.streamingReads = true;
      const fh = await h.core.open((await h.cp.resolvePath(h.mountId, '/ck/sibling.bin'))!.id, O_RDONLY);
      try {
        await h.core.waitRead(fh, 3 * BLOCK_SIZE, 100);
        const buf = Buffer.alloc(100);
        expect(h.core.read(fh, buf, 100, 3 * BLOCK_SIZE)).toBe(100);
        expect(buf.equals(sibling.subarray(3 * BLOCK_SIZE, 3 * BLOCK_SIZE + 100))).toBe(true);
        release();
        expect(await h.core.waitRead(fh, 0, sibling.length)).toBe(true);
      } finally {
        await h.core.release(fh);
      }
      await h.core.settle();
      expect(cached(h, sibling)).toBe(true);
    } finally {
      release();
      await h.close();
    }
  });

  it('prefetches from a streaming open too', async () => {
    const h = await startCore({ prefetchSiblings: true });
    try {
      const a = randomBytes(2 * BLOCK_SIZE);
      const b = randomBytes(MiB);
      await commitCold(h, '/ck', { '/ck/a.bin': a, '/ck/b.bin': b });
      h.core.streamingReads = true;
      const id = (await h.cp.resolvePath(h.mountId, '/ck/a.bin'))!.id;
      const fh = await h.core.open(id, O_RDONLY);
      await h.core.waitRead(fh, 0, a.length);
      await h.core.release(fh);
      await h.core.settle();
      expect(cached(h, b)).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('prefetches nothing when off', async () => {
    const h = await startCore({ prefetchSiblings: false });
    try {
      const a = randomBytes(MiB);
      const b = randomBytes(MiB);
      await commitCold(h, '/ck', { '/ck/a.bin': a, '/ck/b.bin': b });
      await readAll(h, '/ck/a.bin', a.length);
      await h.core.settle();
      expect(cached(h, a)).toBe(true);
      expect(cached(h, b)).toBe(false);
    } finally {
      await h.close();
    }
  });
});
