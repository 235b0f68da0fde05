/**
 * Garbage collection of commits (`collectCommits`): what `--keep-last` and purge remove,
 * that a ref or a recent ref-log entry keeps a commit, that a dry run changes nothing,
 * and that a run stopped between a purge and its manifest deletion converges when run
 * again; pin expiry: what an agent silent past the bound pinned is swept, what a heard
 * or an unregistered (in-process) agent pinned is not, and an agent that comes back
 * after its pins expired commits only objects that exist.
 */
import * as fsSync from 'node:fs';
import { describe, expect, it } from 'vitest';
import { collectCommits, runGc } from '../../src/commit/gc.js';
import { manifestKey, objectKey } from '../../src/commit/layout.js';
import type { Manifest } from '../../src/api/types.js';
import { listAll } from '../../src/store/types.js';
import { createHash } from 'node:crypto';
import type { ObjectStore } from '../../src/store/types.js';
import { registry } from '../../src/metrics/index.js';
import { toCommit } from '../../src/control/service.js';
import { codeOf, startCore, waitSettled, type CoreHarness } from '../support/core.js';

const DAY = 24 * 3600 * 1000;
const sha256Hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** `store.putFile` that, for `objects/` keys, runs the current pause once its answer is in (sent or 412), then answers. */
function afterAnswer(store: ObjectStore, pause: () => ((key: string) => Promise<void>) | null): ObjectStore['putFile'] {
  return async (key, file, options) => {
    const settled = await store.putFile(key, file, options).then((r) => ({ r }), (e: unknown) => ({ e }));
    const p = pause();
    if (p && key.startsWith('objects/')) await p(key);
    if ('e' in settled) throw settled.e;
    return settled.r;
  };
}

async function checkpoint(h: CoreHarness, p: string, files: Record<string, string>): Promise<string> {
  await h.fs.mkdir(p, 0o755);
  for (const [name, text] of Object.entries(files)) {
    const fh = await h.fs.create(`${p}/${name}`, 0o640, fsSync.constants.O_WRONLY);
    h.fs.write(fh, Buffer.from(text), text.length, 0);
    await h.fs.release(fh);
  }
  const node = (await h.cp.resolvePath(h.mountId, p))!;
  const c = await waitSettled(h, (await h.cp.commit(h.mountId, node.id, { message: p })).id);
  expect(c.phase).toBe('completed');
  return c.id;
}

async function hasManifest(h: CoreHarness, id: string): Promise<boolean> {
  return (await h.ctx.store.head(manifestKey(id))) !== null;
}

describe('gc of commits', () => {
  it('purges soft-deleted, unreferenced commits; keeps referenced ones and recent ref-log entries; dry run changes nothing', async () => {
    const h = await startCore();
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await checkpoint(h, `/ck${i}`, { 'shared.bin': 'S', [`own${i}.bin`]: `own ${i}` }));
      await h.cp.setRef(h.mountId, 'latest', { commitId: ids[4]! }, 'test');
      // ck1 was a ref's target until just now: the ref log keeps it for keepWithin.
      await h.cp.setRef(h.mountId, 'best', { commitId: ids[1]! }, 'test');
      await h.cp.setRef(h.mountId, 'best', { commitId: ids[3]! }, 'test');
      for (const i of [0, 1, 2]) await h.cp.deleteNode(h.mountId, (await h.cp.resolvePath(h.mountId, `/ck${i}`))!.id);
      // A folder a ref points at is not deleted, so its commit is never a candidate.
      expect(await codeOf(h.cp.deleteNode(h.mountId, (await h.cp.resolvePath(h.mountId, '/ck3'))!.id))).toBe('REFERENCED_BY_REF');

      const dry = await collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 7 * DAY, dryRun: true });
      expect(dry.purged.map((p) => p.commitId).sort()).toEqual([ids[0], ids[2]].sort());
      expect(dry.manifestsDeleted).toBe(2);
      for (const id of ids) expect(await hasManifest(h, id)).toBe(true);
      expect((await h.cp.getCommit(h.mountId, ids[0]!)).purgedAt).toBeNull();
      expect(toCommit(await h.cp.getCommit(h.mountId, ids[0]!)).purgedAt).toBeNull();

      const r = await collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 7 * DAY });
      expect(r.purged.map((p) => p.commitId).sort()).toEqual([ids[0], ids[2]].sort());
      expect(Object.fromEntries(r.kept.map((k) => [k.commitId, k.reason]))).toEqual({ [ids[1]!]: 'in-ref-log' });
      expect(r.manifestsDeleted).toBe(2);
      expect(r.manifestBytes).toBeGreaterThan(0);
      expect(await hasManifest(h, ids[0]!)).toBe(false);
      expect(await hasManifest(h, ids[2]!)).toBe(false);
      expect(await codeOf(h.cp.getManifest(h.mountId, ids[0]!))).toBe('COMMIT_PURGED');
      // The API's Commit says when gc purged it; a kept one says null.
      expect(toCommit(await h.cp.getCommit(h.mountId, ids[0]!)).purgedAt).toMatch(/^\d{4}-\d\d-\d\dT.*Z$/);
      expect(toCommit(await h.cp.getCommit(h.mountId, ids[4]!)).purgedAt).toBeNull();
      expect(await codeOf(h.cp.setRef(h.mountId, 'old', { commitId: ids[0]! }, 'test'))).toBe('COMMIT_PURGED');
      for (const i of [1, 3, 4]) expect((await h.cp.getManifest(h.mountId, ids[i]!)).files.length).toBe(2);
      expect((await h.cp.getRef(h.mountId, 'latest')).commitId).toBe(ids[4]);

      // Past the window, the ref-log entry no longer keeps ck1.
      const later = await collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 7 * DAY, now: () => new Date(Date.now() + 8 * DAY) });
      expect(later.purged.map((p) => p.commitId)).toEqual([ids[1]]);
      // A rerun finds nothing more to do.
      const again = await collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 7 * DAY, now: () => new Date(Date.now() + 8 * DAY) });
      expect({ purged: again.purged, manifests: again.manifestsDeleted }).toEqual({ purged: [], manifests: 0 });
    } finally {
      await h.close();
    }
  });

  it('frees what checkpoint rotation removed: rmdir of committed folders, then gc', async () => {
    const h = await startCore();
    try {
      // Five saves, as a Trainer with save_total_limit=2 makes them: a shared config, own weights.
      const ids: string[] = [];
      for (let i = 1; i <= 5; i++) {
        ids.push(await checkpoint(h, `/checkpoint-${i}`, { 'config.json': 'cfg', 'weights.bin': `weights ${i}` }));
        await h.cp.setRef(h.mountId, 'latest', { commitId: ids[ids.length - 1]! }, 'test');
        // The Trainer's rotation: rmtree of the oldest beyond the limit, ending in rmdir.
        if (i > 2) await h.fs.rmdir(`/checkpoint-${i - 2}`);
      }
      expect((await h.fs.readdir('/')).filter((n) => n.startsWith('checkpoint-')).sort()).toEqual(['checkpoint-4', 'checkpoint-5']);
      const r = await runGc(h.cp['meta'], h.ctx.store, { keepWithinMs: 0, graceMs: 0, holder: 'test' });
      expect(r.purged.map((p) => p.commitId).sort()).toEqual(ids.slice(0, 3).sort());
      // Their own weights go; the shared config stays for the kept checkpoints.
      expect(r.objectsDeleted).toBe(3);
      expect(r.bytesFreed).toBe(3 * 'weights 1'.length);
      expect((await h.cp.getRef(h.mountId, 'latest')).commitId).toBe(ids[4]);
      for (const id of ids.slice(3)) {
        for (const f of (await h.cp.getManifest(h.mountId, id)).files) expect(sha256Hex(await h.ctx.store.get(f.key))).toBe(f.sha256);
      }
    } finally {
      await h.close();
    }
  });

  it('--keep-last soft-deletes the older committed folders of each parent, never a referenced one', async () => {
    const h = await startCore();
    try {
      await h.fs.mkdir('/run', 0o755);
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) ids.push(await checkpoint(h, `/run/step${i}`, { 'w.bin': `w${i}` }));
      const other = await checkpoint(h, '/solo', { 'x.bin': 'x' });
      await h.cp.setRef(h.mountId, 'first', { commitId: ids[0]! }, 'test');
      const dry = await collectCommits(h.cp['meta'], h.ctx.store, { keepLast: 2, keepWithinMs: 0, dryRun: true });
      expect(dry.softDeleted.map((d) => d.commitId)).toEqual([ids[1]]);
      expect(dry.purged.map((p) => p.commitId)).toEqual([ids[1]]);
      expect(await h.cp.resolvePath(h.mountId, '/run/step1')).not.toBeNull();

      const r = await collectCommits(h.cp['meta'], h.ctx.store, { keepLast: 2, keepWithinMs: 0 });
      expect(r.softDeleted.map((d) => d.commitId)).toEqual([ids[1]]);
      expect(r.purged.map((p) => p.commitId)).toEqual([ids[1]]);
      for (const p of ['/run/step0', '/run/step2', '/run/step3', '/solo']) expect(await h.cp.resolvePath(h.mountId, p)).not.toBeNull();
      expect(await h.cp.resolvePath(h.mountId, '/run/step1')).toBeNull();
      for (const id of [ids[0]!, ids[2]!, ids[3]!, other]) expect(await hasManifest(h, id)).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('converges when a run stops after a purge, before the manifest is deleted', async () => {
    let failDeletes = true;
    const h = await startCore({
      wrapStore: (s: ObjectStore) => new Proxy(s, {
        get(target, prop, recv) {
          if (prop === 'delete') {
            return async (key: string) => {
              if (failDeletes && key.startsWith('commits/')) throw new Error('stopped');
              return target.delete(key);
            };
          }
          const v = Reflect.get(target, prop, recv) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      }),
    });
    try {
      const id = await checkpoint(h, '/ck', { 'a.bin': 'A' });
      await h.cp.deleteNode(h.mountId, (await h.cp.resolvePath(h.mountId, '/ck'))!.id);
      await expect(collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 0 })).rejects.toThrow('stopped');
      expect((await h.cp.getCommit(h.mountId, id)).purgedAt).not.toBeNull();
      expect(await hasManifest(h, id)).toBe(true);
      failDeletes = false;
      const r = await collectCommits(h.cp['meta'], h.ctx.store, { keepWithinMs: 0 });
      expect({ purged: r.purged, manifests: r.manifestsDeleted }).toEqual({ purged: [], manifests: 1 });
      expect(await hasManifest(h, id)).toBe(false);
    } finally {
      await h.close();
    }
  });

  it('sweeps exactly the objects no kept manifest references; kept commits read back byte for byte', async () => {
    const h = await startCore();
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await checkpoint(h, `/ck${i}`, { 'shared.bin': 'shared', 'half.bin': `half ${i % 2}`, 'own.bin': `own ${i}` }));
      await h.cp.setRef(h.mountId, 'latest', { commitId: ids[4]! }, 'test');
      for (const i of [0, 2, 3]) await h.cp.deleteNode(h.mountId, (await h.cp.resolvePath(h.mountId, `/ck${i}`))!.id);
      const manifests = new Map<string, Manifest>();
      for (const id of ids) manifests.set(id, await h.cp.getManifest(h.mountId, id));
      const keptIds = [ids[1]!, ids[4]!];
      const needed = new Set(keptIds.flatMap((id) => manifests.get(id)!.files.map((f) => f.key)));
      const before = new Set<string>();
      for await (const o of listAll(h.ctx.store, 'objects/')) before.add(o.key);

      const dry = await runGc(h.cp['meta'], h.ctx.store, { keepWithinMs: 0, graceMs: 0, dryRun: true, holder: 'test' });
      const after0 = new Set<string>();
      for await (const o of listAll(h.ctx.store, 'objects/')) after0.add(o.key);
      expect(after0).toEqual(before);
      expect(dry.objectsDeleted).toBe(before.size - needed.size);

      const metric = async (name: string, labels?: Record<string, string>): Promise<number> =>
        (await registry.getSingleMetric(name)!.get()).values.find((v) => !labels || Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;
      const freedBefore = await metric('roset_gc_freed_bytes_total');
      const runsBefore = await metric('roset_gc_runs_total', { outcome: 'ok', dry_run: 'false' });
      const r = await runGc(h.cp['meta'], h.ctx.store, { keepWithinMs: 0, graceMs: 0, holder: 'test' });
      expect(r.purged.map((p) => p.commitId).sort()).toEqual([ids[0], ids[2], ids[3]].sort());
      expect(r.objectsDeleted).toBe(before.size - needed.size);
      expect(r.bytesFreed).toBe(dry.bytesFreed);
      // The metrics count the run and what it freed: objects and manifests.
      expect(await metric('roset_gc_runs_total', { outcome: 'ok', dry_run: 'false' })).toBe(runsBefore + 1);
      expect(await metric('roset_gc_freed_bytes_total')).toBe(freedBefore + r.bytesFreed + r.manifestBytes);
      const after = new Set<string>();
      for await (const o of listAll(h.ctx.store, 'objects/')) after.add(o.key);
      expect(after).toEqual(needed);
      for (const id of keptIds) {
        for (const f of manifests.get(id)!.files) expect(sha256Hex(await h.ctx.store.get(f.key))).toBe(f.sha256);
      }
      expect((await h.cp.getRef(h.mountId, 'latest')).commitId).toBe(ids[4]);
      // Converged: a rerun deletes nothing.
      expect((await runGc(h.cp['meta'], h.ctx.store, { keepWithinMs: 0, graceMs: 0, holder: 'test' })).objectsDeleted).toBe(0);
      // The grace period keeps young unreferenced objects.
      await h.ctx.store.put('objects/ab/' + 'ab'.padEnd(64, '0'), 'crash orphan');
      const young = await runGc(h.cp['meta'], h.ctx.store, { keepWithinMs: 0, graceMs: 3600_000, holder: 'test' });
      expect({ deleted: young.objectsDeleted, grace: young.objectsInGrace }).toEqual({ deleted: 0, grace: 1 });
    } finally {
      await h.close();
    }
  });

  it('never deletes an object an upload found and skipped (dedup against a purged commit), nor one a racing upload needs', async () => {
    // The bucket pauses where the race is: an upload's look-up of an object, or gc's delete of one.
    let pauseHead: ((key: string) => Promise<void>) | null = null;
    let pauseDelete: ((key: string) => Promise<void>) | null = null;
    const h = await startCore({
      wrapStore: (s: ObjectStore) => new Proxy(s, {
        get(target, prop, recv) {
          if (prop === 'head') return async (key: string) => { const r = await target.head(key); if (pauseHead && key.startsWith('objects/')) await pauseHead(key); return r; };
          // A small new object's look-up is its create-only PUT (412: found): the same pause, after its answer.
          if (prop === 'putFile') return afterAnswer(target, () => pauseHead);
          if (prop === 'delete') return async (key: string) => { if (pauseDelete && key.startsWith('objects/')) await pauseDelete(key); return target.delete(key); };
          const v = Reflect.get(target, prop, recv) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      }),
    });
    try {
      const old = await checkpoint(h, '/old', { 'a.bin': 'AAAA', 'b.bin': 'BBBB', 'c.bin': 'CCCC' });
      await h.cp.deleteNode(h.mountId, (await h.cp.resolvePath(h.mountId, '/old'))!.id);
      const gcOpts = { keepWithinMs: 0, graceMs: 0, holder: 'test' };

      // 1. An upload finds a.bin's object (dedup) and stops there; gc runs to its end meanwhile.
      let gcReport: Awaited<ReturnType<typeof runGc>> | null = null;
      pauseHead = async () => {
        pauseHead = null;
        gcReport = await runGc(h.cp['meta'], h.ctx.store, gcOpts);
      };
      const c1 = await checkpoint(h, '/new1', { 'a.bin': 'AAAA' });
      expect(gcReport!.purged.map((p) => p.commitId)).toEqual([old]);
      expect(gcReport!.objectsPinned).toBe(1);

      // 2. gc is deleting an object of a purged commit (tombstone raised) when an upload of the same bytes starts.
      await checkpoint(h, '/old2', { 'd.bin': 'DDDD' });
      await h.cp.deleteNode(h.mountId, (await h.cp.resolvePath(h.mountId, '/old2'))!.id);
      let release!: () => void;
      let deleting!: () => void;
      const deletingNow = new Promise<void>((r) => { deleting = r; });
      pauseDelete = async () => { pauseDelete = null; deleting(); await new Promise<void>((r) => { release = r; }); };
      const gc2 = runGc(h.cp['meta'], h.ctx.store, gcOpts);
      await deletingNow;
      const c2p = checkpoint(h, '/new2', { 'd.bin': 'DDDD', 'c.bin': 'CCCC' });
      await new Promise((r) => setTimeout(r, 200));
      release();
      expect((await gc2).objectsDeleted).toBe(1);
      const c2 = await c2p;

      for (const id of [c1, c2]) {
        for (const f of (await h.cp.getManifest(h.mountId, id)).files) expect(sha256Hex(await h.ctx.store.get(f.key))).toBe(f.sha256);
      }
      // Nothing more to delete once the commits hold their objects.
      expect((await runGc(h.cp['meta'], h.ctx.store, gcOpts)).objectsDeleted).toBe(0);
    } finally {
      await h.close();
    }
  });

  it('runs on a schedule (--gc-interval), one run at a time under the lease', async () => {
    const h = await startCore();
    try {
      const id = await checkpoint(h, '/ck', { 'a.bin': 'A' });
      await h.cp.deleteNode(h.mountId, (await h.cp.resolvePath(h.mountId, '/ck'))!.id);
      // Another process holds the lease: scheduled runs are skipped.
      const until = new Date(Date.now() + 60_000).toISOString();
      expect(await h.cp.meta.acquireGcLease('gc:elsewhere', until, new Date().toISOString())).toBe(true);
      await expect(h.cp.gc({})).rejects.toMatchObject({ rosetCode: 'GC_RUNNING' });
      h.cp.startGcSchedule(50);
      await new Promise((r) => setTimeout(r, 300));
      expect((await h.cp.getCommit(h.mountId, id)).purgedAt).toBeNull();
      await h.cp.meta.releaseGcLease('gc:elsewhere');
      for (let i = 0; i < 100 && (await h.cp.getCommit(h.mountId, id)).purgedAt == null; i++) await new Promise((r) => setTimeout(r, 50));
      h.cp.stopGcSchedule();
      expect((await h.cp.getCommit(h.mountId, id)).purgedAt).not.toBeNull();
      expect(await hasManifest(h, id)).toBe(false);
    } finally {
      h.cp.stopGcSchedule();
      await h.close();
    }
  });

  it('tells where a run is while it runs (GET /v1/gc), and nothing when none runs', async () => {
    let seen: ReturnType<CoreHarness['cp']['gcStatus']> | null = null;
    const h = await startCore();
    try {
      await checkpoint(h, '/ck', { 'a.bin': 'A' });
      await h.cp.deleteNode(h.mountId, (await h.cp.resolvePath(h.mountId, '/ck'))!.id);
      expect(h.cp.gcStatus()).toEqual({ running: false });
      await h.cp.gc({ graceSeconds: 0, keepWithinSeconds: 0 }, (p) => { if (p.phase === 'sweep') seen ??= h.cp.gcStatus(); });
      expect(seen).toMatchObject({ running: true, phase: 'sweep', dryRun: false });
      expect(h.cp.gcStatus()).toEqual({ running: false });
      await expect(h.cp.gc({ graceSeconds: -1 })).rejects.toMatchObject({ rosetCode: 'BAD_REQUEST' });
      await expect(h.cp.gc({ keepLast: 1.5 })).rejects.toMatchObject({ rosetCode: 'BAD_REQUEST' });
      await expect(h.cp.gc({ grace: 0 })).rejects.toMatchObject({ rosetCode: 'BAD_REQUEST' });
      await expect(h.cp.gc({ graceSeconds: null })).rejects.toMatchObject({ rosetCode: 'BAD_REQUEST' });
      await expect(h.cp.gc({ keepWithinSeconds: 1e308 })).rejects.toMatchObject({ rosetCode: 'BAD_REQUEST' });
    } finally {
      await h.close();
    }
  });
});

describe('gc: pin expiry', () => {
  const metric = async (name: string): Promise<number> => (await registry.getSingleMetric(name)!.get()).values[0]?.value ?? 0;
  const orphan = async (h: CoreHarness, text: string): Promise<string> => {
    const sha = sha256Hex(Buffer.from(text));
    await h.ctx.store.put(objectKey(sha), text);
    return sha;
  };
  const register = (h: CoreHarness, id: string, lastSeenAt: Date) =>
    h.cp.meta.upsertAgent({ id, mountId: h.mountId, mountpoint: null, hostname: 'node', registeredAt: lastSeenAt.toISOString(), lastSeenAt: lastSeenAt.toISOString() });
  const present = async (h: CoreHarness, sha: string): Promise<boolean> => (await h.ctx.store.head(objectKey(sha))) !== null;

  it('sweeps, after the grace period, what an agent silent past the bound pinned; never what a heard or an unregistered agent pinned', async () => {
    const h = await startCore();
    try {
      const meta = h.cp.meta;
      const [a, b, c] = [await orphan(h, 'pinned by a dead node'), await orphan(h, 'pinned by a live node'), await orphan(h, 'pinned in process')];
      await register(h, 'agt_gone', new Date(Date.now() - 10 * DAY));
      await register(h, 'agt_live', new Date());
      expect(await meta.pinObject({ agentId: 'agt_gone', nodeId: 'nod_a', sha256: a, at: new Date(Date.now() - 10 * DAY).toISOString() })).toBe(true);
      expect(await meta.pinObject({ agentId: 'agt_live', nodeId: 'nod_b', sha256: b, at: new Date().toISOString() })).toBe(true);
      // The in-process agent (agt_test) is never registered, as that of an embedded roset-mount.
      expect(await meta.pinObject({ agentId: 'agt_test', nodeId: 'nod_c', sha256: c, at: new Date(Date.now() - 30 * DAY).toISOString() })).toBe(true);
      const opts = { keepWithinMs: 0, graceMs: DAY, pinExpiryMs: 7 * DAY, holder: 'test' };
      const expiredBefore = await metric('roset_gc_expired_pins_total');

      // A dry run names the agent and writes nothing.
      const dry = await runGc(meta, h.ctx.store, { ...opts, dryRun: true });
      expect({ agents: dry.agentsExpired, pins: dry.pinsExpired }).toEqual({ agents: ['agt_gone'], pins: 1 });
      expect(await meta.getAgent('agt_gone')).not.toBeNull();
      expect(await metric('roset_gc_expired_pins_total')).toBe(expiredBefore);

      // The dead node's pins expire now; its object is young, so the grace period keeps it this time.
      const first = await runGc(meta, h.ctx.store, opts);
      expect({ agents: first.agentsExpired, pins: first.pinsExpired, deleted: first.objectsDeleted, grace: first.objectsInGrace })
        .toEqual({ agents: ['agt_gone'], pins: 1, deleted: 0, grace: 3 });
      expect(await meta.getAgent('agt_gone')).toBeNull();
      expect(await metric('roset_gc_expired_pins_total')).toBe(expiredBefore + 1);

      // Past the grace period: it goes; the live node's and the in-process pins keep theirs.
      const later = await runGc(meta, h.ctx.store, { ...opts, now: () => new Date(Date.now() + 2 * DAY) });
      expect({ agents: later.agentsExpired, deleted: later.objectsDeleted, pinned: later.objectsPinned }).toEqual({ agents: [], deleted: 1, pinned: 2 });
      expect([await present(h, a), await present(h, b), await present(h, c)]).toEqual([false, true, true]);

      // Once the live node too is silent past the bound, its object goes; the in-process pin never expires.
      const much = await runGc(meta, h.ctx.store, { ...opts, now: () => new Date(Date.now() + 8 * DAY) });
      expect({ agents: much.agentsExpired, pins: much.pinsExpired, deleted: much.objectsDeleted, pinned: much.objectsPinned })
        .toEqual({ agents: ['agt_live'], pins: 1, deleted: 1, pinned: 1 });
      expect([await present(h, b), await present(h, c)]).toEqual([false, true]);

      // A bound below the agent timeout (30 s here) counts as the agent timeout: an agent
      // heard 10 s ago is connected and keeps its pins; one heard a minute ago does not.
      await register(h, 'agt_heard', new Date(Date.now() - 10_000));
      await register(h, 'agt_minute', new Date(Date.now() - 60_000));
      expect(await meta.pinObject({ agentId: 'agt_heard', nodeId: 'nod_d', sha256: c, at: new Date().toISOString() })).toBe(true);
      expect(await meta.pinObject({ agentId: 'agt_minute', nodeId: 'nod_e', sha256: c, at: new Date().toISOString() })).toBe(true);
      expect((await h.cp.gc({ pinExpirySeconds: 0, graceSeconds: 0, keepWithinSeconds: 0 })).agentsExpired).toEqual(['agt_minute']);
    } finally {
      await h.close();
    }
  });

  it('an agent that comes back after its pins expired cannot act as before, and commits objects that exist: it pins and looks up again', async () => {
    // The bucket pauses where the race is: an upload that found its object, before it records that.
    let pauseHead: ((key: string) => Promise<void>) | null = null;
    const h = await startCore({
      wrapStore: (s: ObjectStore) => new Proxy(s, {
        get(target, prop, recv) {
          if (prop === 'head') return async (key: string) => { const r = await target.head(key); if (pauseHead && key.startsWith('objects/')) await pauseHead(key); return r; };
          // A small new object's look-up is its create-only PUT (412: found): the same pause, after its answer.
          if (prop === 'putFile') return afterAnswer(target, () => pauseHead);
          const v = Reflect.get(target, prop, recv) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      }),
    });
    try {
      const meta = h.cp.meta;
      // The in-process agent plays an agent of another node: registered, last heard 10 days ago.
      await register(h, 'agt_test', new Date(Date.now() - 10 * DAY));
      const write = async (p: string, text: string): Promise<void> => {
        const fh = await h.fs.create(p, 0o640, fsSync.constants.O_WRONLY);
        h.fs.write(fh, Buffer.from(text), text.length, 0);
        await h.fs.release(fh);
      };
      await h.fs.mkdir('/ck', 0o755);
      // x.bin: uploaded in the background, its record made, before the node went silent.
      await write('/ck/x.bin', 'uploaded before the partition');
      await h.core.uploader.drained();
      const x = sha256Hex(Buffer.from('uploaded before the partition'));
      expect(await present(h, x)).toBe(true);

      // y.bin: its upload pinned and found its object (left by a crashed upload) and stops
      // there; meanwhile gc expires the node and sweeps both objects, and the node
      // registers again (what AgentLink.onRegistered does in roset-mount).
      const y = await orphan(h, 'found in the bucket');
      let report: Awaited<ReturnType<typeof runGc>> | null = null;
      pauseHead = async (key) => {
        if (key !== objectKey(y)) return;
        pauseHead = null;
        report = await runGc(meta, h.ctx.store, { keepWithinMs: 0, graceMs: 0, pinExpiryMs: 7 * DAY, holder: 'test' });
        // Deregistered: every call of the node is refused until it registers again.
        expect(await codeOf(h.cp.hub.poll('agt_test', { waitMs: 0 }, new AbortController().signal))).toBe('AGENT_NOT_FOUND');
        expect(await codeOf(h.cp.hub.rpc(h.mountId, 'agt_test', { method: 'pinObject', args: [h.mountId, 'agt_test', 'nod_x', x] }))).toBe('AGENT_NOT_FOUND');
        await register(h, 'agt_test', new Date());
        h.core.uploader.distrust();
      };
      await write('/ck/y.bin', 'found in the bucket');
      await h.core.uploader.drained();
      expect(report!).toMatchObject({ agentsExpired: ['agt_test'], pinsExpired: 2, objectsDeleted: 2 });
      // y's upload pinned before the registration and ended after it: it did not record
      // "found", it pinned and looked up again, and sent the bytes. x's record waits.
      expect([await present(h, x), await present(h, y)]).toEqual([false, true]);

      // The commit does not use x's record as it was: pinned again, found absent, sent again.
      const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
      const c = await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, { message: 'after the partition' })).id);
      expect(c.phase).toBe('completed');
      const files = (await h.cp.getManifest(h.mountId, c.id)).files;
      expect(files.map((f) => f.sha256).sort()).toEqual([x, y].sort());
      for (const f of files) expect(sha256Hex(await h.ctx.store.get(f.key))).toBe(f.sha256);
      expect(c.stats.uploadedBytes).toBe(c.stats.bytes);
      // A gc now deletes nothing the commit needs.
      expect((await runGc(meta, h.ctx.store, { keepWithinMs: 0, graceMs: 0, pinExpiryMs: 7 * DAY, holder: 'test' })).objectsDeleted).toBe(0);
    } finally {
      await h.close();
    }
  });
});
