/**
 * Garbage collection: `--keep-last`, then purge of commits, then the manifests of purged
 * commits, then the sweep of `objects/`.
 *
 * Owns: which commits leave the history, which objects leave the bucket, and the order
 * of the steps that remove them.
 *
 * What is purged (docs/SEMANTICS.md, "Garbage collection"): a completed commit whose
 * folder is soft-deleted, that no ref points at, and that no ref-log entry (from or to)
 * written within `keepWithinMs` names. `keepLast` first soft-deletes, under each parent
 * folder, the live committed folders beyond the newest N, never one a ref points at.
 * Purging removes the commit's soft-deleted folder and its subtree from the metadata,
 * marks the commit purged, then deletes its manifest from the bucket.
 *
 * Invariants:
 * - A ref never points at a purged commit. The decision is the metadata store's:
 *   `purgeCommit` checks refs and the ref log in the transaction that purges, and
 *   `setRef` refuses a purged commit in the transaction that moves the ref (row locks
 *   on PostgreSQL), so a racing setRef and purge cannot both win. Nothing here checks
 *   first and changes later.
 * - Safe to stop anywhere (SIGKILL) and to run again; a rerun converges:
 *   - killed after a `--keep-last` soft delete: the folder is a purge candidate next time;
 *   - killed after a purge, before its manifest is deleted: the commit is listed by
 *     `listPurgedWithManifest` until its manifest is deleted and recorded as deleted
 *     (deleting an absent manifest is a no-op);
 *   - nothing is deleted from the bucket before the metadata says it may go.
 * - `dryRun` writes nothing: the same checks run in the store's transactions, which
 *   then write nothing, and the folders `--keep-last` would delete count as deleted.
 *
 * The sweep (mark and sweep from a listing of `objects/`, so objects a crashed upload
 * left behind go too). Marked: every object a kept manifest names (the manifests of
 * manifested and completed commits that are not purged) and every object a node not
 * purged records (`referencedObjects`). Swept: each other object under a valid key
 * `objects/<sha[0:2]>/<sha>`, last modified more than `graceMs` ago, by three steps:
 * 1. `tombstoneObject(sha)`: one transaction that refuses while a pin names the object
 *    or a node records it, and otherwise writes a tombstone;
 * 2. delete the object;
 * 3. remove the tombstone.
 * Uploads (src/core/uploader.ts) pin `(agent, node, sha)` with `pinObject`, one
 * transaction that refuses while a tombstone exists, BEFORE they ask the bucket whether
 * the object exists; a refused pin waits and pins again. A pin goes when the file's
 * commit completes (in the transaction that completes it: by then markManifested has
 * recorded the object on the node), when the file is removed, or when the node's next
 * upload replaces it. The pin and the tombstone of one object are decided in
 * transactions that exclude each other (SQLite: one writer; PostgreSQL: an advisory
 * lock on the sha), so the interleavings are:
 * - pin first: the tombstone is refused; the object stays whatever its age. The upload
 *   may find the object and skip sending it (dedup): it is still there.
 * - tombstone first: the pin is refused until step 3; by then the object is deleted, so
 *   the upload's look-up finds nothing and sends the bytes again.
 * - the pin goes at completion, the object is recorded on the committed node first
 *   (markManifested commits before completeCommits), and the tombstone reads pins and
 *   nodes in one statement: it sees the pin or the node, so it is refused.
 * - the snapshot of a seal and the commit's own upload go through the same uploader, so
 *   the same pin covers a pending commit, a snapshot and a background upload.
 * A tombstone left by a gc killed between steps 1 and 3 blocks pins of that object until
 * the next gc, which first finishes the tombstones it finds (steps 2 and 3: while a
 * tombstone stands no pin can be taken, so no upload relies on the object). Pins
 * outside a run of gc are never refused.
 *
 * Pin expiry (`pinExpiryMs`; a crashed agent's pins would otherwise keep objects
 * forever). Before the mark, `expireAgentPins` deregisters, in one transaction, each
 * registered agent (an agent of another node) last heard from (poll, answer, rpc)
 * before now - pinExpiryMs that holds a pin and has no task of a pending commit, and
 * drops its pins; its objects are then swept like any unreferenced object. Why it is
 * safe for an agent that was only cut off and comes back with staged files whose
 * upload records name those objects:
 * - deregistered, every call it makes (poll, answer, rpc, so pinObject too) is refused
 *   with AGENT_NOT_FOUND until it registers again: it cannot be handed a task or take a
 *   pin as the agent it was;
 * - each registration makes its uploader distrust every upload record made before it
 *   (Uploader.distrust): a record is used again only after a new pin and a new look-up
 *   in the bucket, the order of any upload, so an object gc deleted meanwhile is sent
 *   again, and one it is deleting (a tombstone) waits; an upload that pinned before the
 *   registration and ends after it is checked again the same way;
 * - an agent with a task of a pending commit keeps its pins: between its upload's
 *   answer and markManifested, the driver relies on them (that commit fails with
 *   AGENT_UNAVAILABLE if the agent stays silent past the agent timeout);
 * - a heartbeat and the expiry are decided in transactions that exclude each other
 *   (SQLite: one writer; PostgreSQL: the delete re-reads the row a heartbeat updated),
 *   so an agent heard after the bound keeps its pins;
 * - the pins of an agent with no registration never expire: the in-process agent of an
 *   embedded `roset-mount`, whose pins stay across a restart on the same state
 *   directory (it trusts its upload records across restarts, as before).
 * The control plane never uses a bound below its agent timeout, so a connected agent
 * (heard at least three times per agent timeout) never expires; safety does not rest
 * on that, only the cost of uploading again does.
 */
import { CommitError, RosetError } from '../errors/index.js';
import type { MetadataStore } from '../meta/types.js';
import type { ObjectStore } from '../store/types.js';
import type { GcReport, Manifest } from '../api/types.js';

export type { GcReport } from '../api/types.js';
import { listAll } from '../store/types.js';
import type { Logger } from 'pino';
import { gcDeletedObjectsTotal, gcExpiredPinsTotal, gcFreedBytesTotal, gcPurgedCommitsTotal, gcRunsTotal } from '../metrics/index.js';
import { failpoint } from '../util/failpoints.js';
import { manifestKey, objectKey } from './layout.js';

export interface GcOptions {
  /** Keep the newest N committed folders under each parent; undefined: keep all. */
  keepLast?: number;
  /** Ref-log entries this recent keep the commits they name. */
  keepWithinMs: number;
  dryRun?: boolean;
  /** The clock (tests). */
  now?: () => Date;
  onProgress?: (p: GcProgress) => void;
}

export interface GcProgress {
  phase: 'keep-last' | 'purge' | 'manifests' | 'mark' | 'sweep';
  done: number;
  total: number;
}


export interface SweepOptions {
  /** Objects last modified less than this long ago stay. */
  graceMs: number;
  /**
   * Pins of a registered agent not heard from for this long expire (see the header);
   * undefined: no pin expires.
   */
  pinExpiryMs?: number;
  /** For the failpoint `gc.after-tombstone` (crash tests), and what expired. */
  log?: Logger;
  dryRun?: boolean;
  now?: () => Date;
  onProgress?: (p: GcProgress) => void;
}

export async function collectCommits(meta: MetadataStore, store: ObjectStore, opts: GcOptions): Promise<GcReport> {
  const dryRun = opts.dryRun ?? false;
  const now = opts.now ?? (() => new Date());
  const keepSince = new Date(now().getTime() - opts.keepWithinMs).toISOString();
  const report: GcReport = {
    dryRun, softDeleted: [], notDeleted: [], purged: [], kept: [], manifestsDeleted: 0, manifestBytes: 0,
    objectsListed: 0, objectsDeleted: 0, bytesFreed: 0, objectsInGrace: 0, objectsPinned: 0, agentsExpired: [], pinsExpired: 0,
  };
  const progress = (phase: GcProgress['phase'], done: number, total: number): void => opts.onProgress?.({ phase, done, total });

  for (const mount of await meta.listMounts()) {
    // 1. --keep-last: soft-delete the older committed folders of each parent.
    const wouldDelete: Array<{ commitId: string; nodeId: string }> = [];
    if (opts.keepLast !== undefined) {
      const referenced = new Set((await meta.listRefs(mount.id)).map((r) => r.commitId));
      const byParent = new Map<string, Array<{ commitId: string; nodeId: string }>>();
      for (const f of await meta.listCommittedFolders(mount.id)) {
        const list = byParent.get(f.parentId) ?? [];
        list.push(f);
        byParent.set(f.parentId, list);
      }
      const victims = [...byParent.values()].flatMap((list) => list.slice(0, Math.max(0, list.length - opts.keepLast!)))
        .filter((f) => !referenced.has(f.commitId));
      let done = 0;
      for (const v of victims) {
        progress('keep-last', done++, victims.length);
        if (dryRun) {
          wouldDelete.push(v);
          report.softDeleted.push({ commitId: v.commitId, nodeId: v.nodeId });
          continue;
        }
        try {
          await meta.softDeleteNode(v.nodeId, now().toISOString());
          report.softDeleted.push({ commitId: v.commitId, nodeId: v.nodeId });
        } catch (err) {
          if (!(err instanceof RosetError)) throw err;
          report.notDeleted.push({ commitId: v.commitId, nodeId: v.nodeId, code: err.rosetCode });
        }
      }
    }

    // 2. Purge: each decided in the store's own transaction.
    const candidates = [
      ...(await meta.listPurgeCandidates(mount.id)).map((c) => ({ commitId: c.commitId, path: c.path, assumeDeleted: false })),
      ...await Promise.all(wouldDelete.map(async (v) => ({ commitId: v.commitId, path: (await meta.getCommit(v.commitId))?.path ?? '', assumeDeleted: true }))),
    ];
    let done = 0;
    for (const c of candidates) {
      progress('purge', done++, candidates.length);
      const out = await meta.purgeCommit(c.commitId, keepSince, now().toISOString(), { dryRun, assumeDeleted: c.assumeDeleted });
      if (out.purged) report.purged.push({ commitId: c.commitId, path: c.path, nodes: out.nodes });
      else report.kept.push({ commitId: c.commitId, path: c.path, reason: out.reason });
    }
  }

  // 3. Manifests of purged commits, this run's and any an interrupted run left.
  const manifests = dryRun ? report.purged.map((p) => p.commitId) : await meta.listPurgedWithManifest();
  let done = 0;
  for (const id of manifests) {
    progress('manifests', done++, manifests.length);
    const head = await store.head(manifestKey(id));
    if (head) report.manifestBytes += head.size;
    if (dryRun) {
      if (head) report.manifestsDeleted++;
      continue;
    }
    if (head) {
      await store.delete(manifestKey(id));
      report.manifestsDeleted++;
    }
    await meta.markManifestDeleted(id, now().toISOString());
  }
  return report;
}

const OBJECT_KEY = /^objects\/([0-9a-f]{2})\/([0-9a-f]{64})$/;

/**
 * The sweep of `objects/` (see the header). `report` gains the object counts. In a dry
 * run, `purgedNow` names the commits the dry run would purge: their manifests do not
 * count as kept.
 */
export async function sweepObjects(meta: MetadataStore, store: ObjectStore, opts: SweepOptions, report: GcReport, purgedNow: Set<string> = new Set()): Promise<void> {
  const dryRun = opts.dryRun ?? false;
  const now = opts.now ?? (() => new Date());
  const progress = (phase: GcProgress['phase'], done: number, total: number): void => opts.onProgress?.({ phase, done, total });

  // Tombstones an interrupted run left: no pin was taken since they were raised.
  if (!dryRun) {
    for (const sha of await meta.listTombstones()) {
      await store.delete(objectKey(sha));
      await meta.removeTombstone(sha);
    }
  }

  // Pins of agents gone past the bound (a dry run ignores every pin anyway).
  if (opts.pinExpiryMs !== undefined) {
    const expired = await meta.expireAgentPins(new Date(now().getTime() - opts.pinExpiryMs).toISOString(), { dryRun });
    report.agentsExpired = expired.agents;
    report.pinsExpired = expired.pins;
    if (expired.agents.length > 0) {
      opts.log?.warn({ agents: expired.agents, pins: expired.pins, dryRun }, 'agents not heard from within the pin expiry: deregistered, their pins dropped');
    }
  }

  // Mark.
  const kept = await meta.referencedObjects([...purgedNow]);
  const commits = (await meta.listCommitsInPhases(['manifested', 'completed'])).filter((c) => !c.purgedAt && !purgedNow.has(c.id));
  let done = 0;
  for (const c of commits) {
    progress('mark', done++, commits.length);
    const body = await store.get(manifestKey(c.id));
    for (const f of (JSON.parse(body.toString('utf8')) as Manifest).files) kept.add(f.sha256);
  }

  // Sweep, from the listing.
  const cutoff = now().getTime() - opts.graceMs;
  for await (const o of listAll(store, 'objects/')) {
    report.objectsListed++;
    progress('sweep', report.objectsListed, 0);
    const m = OBJECT_KEY.exec(o.key);
    if (!m || m[2]!.slice(0, 2) !== m[1] || kept.has(m[2]!)) continue;
    const sha = m[2]!;
    if (o.lastModified.getTime() > cutoff) {
      report.objectsInGrace++;
      continue;
    }
    if (dryRun) {
      report.objectsDeleted++;
      report.bytesFreed += o.size;
      continue;
    }
    if (!(await meta.tombstoneObject(sha, now().toISOString()))) {
      report.objectsPinned++;
      continue;
    }
    if (opts.log) await failpoint('gc.after-tombstone', opts.log);
    await store.delete(o.key);
    await meta.removeTombstone(sha);
    report.objectsDeleted++;
    report.bytesFreed += o.size;
  }
}

export interface RunGcOptions extends GcOptions {
  graceMs: number;
  /** See SweepOptions. */
  pinExpiryMs?: number;
  log?: Logger;
  /** Who holds the gc lease while this run lasts. */
  holder: string;
  /** How long a lease lasts without renewal (default 60 s); renewed as the run goes. */
  leaseMs?: number;
}

/**
 * One gc: `collectCommits`, then `sweepObjects`, under the gc lease in the metadata
 * store (GC_RUNNING if another run holds it). The lease is renewed at each step of
 * progress once a third of it has passed; a run that cannot renew it stops.
 */
export async function runGc(meta: MetadataStore, store: ObjectStore, opts: RunGcOptions): Promise<GcReport> {
  const leaseMs = opts.leaseMs ?? 60_000;
  const now = opts.now ?? (() => new Date());
  let renewedAt = 0;
  const renew = async (): Promise<void> => {
    const t = Date.now();
    if (t - renewedAt < leaseMs / 3) return;
    const at = now();
    if (!(await meta.acquireGcLease(opts.holder, new Date(at.getTime() + leaseMs).toISOString(), at.toISOString()))) {
      throw new CommitError('GC_RUNNING', 'Another garbage collection holds the gc lease');
    }
    renewedAt = t;
  };
  await renew();
  let pendingRenew: Promise<void> = Promise.resolve();
  const onProgress = (p: GcProgress): void => {
    opts.onProgress?.(p);
    pendingRenew = pendingRenew.then(renew);
  };
  const dryRun = String(opts.dryRun ?? false);
  try {
    const report = await collectCommits(meta, store, { ...opts, onProgress });
    await pendingRenew;
    await sweepObjects(meta, store, { ...opts, onProgress }, report, report.dryRun ? new Set(report.purged.map((p) => p.commitId)) : undefined);
    await pendingRenew;
    gcRunsTotal.inc({ outcome: 'ok', dry_run: dryRun });
    if (!report.dryRun) {
      gcFreedBytesTotal.inc(report.bytesFreed + report.manifestBytes);
      gcDeletedObjectsTotal.inc(report.objectsDeleted);
      gcPurgedCommitsTotal.inc(report.purged.length);
      gcExpiredPinsTotal.inc(report.pinsExpired);
    }
    return report;
  } catch (err) {
    gcRunsTotal.inc({ outcome: 'failed', dry_run: dryRun });
    throw err;
  } finally {
    await pendingRenew.catch(() => undefined);
    await meta.releaseGcLease(opts.holder);
  }
}
