/**
 * Garbage collection of commits: `--keep-last`, then purge, then the manifests of purged
 * commits.
 *
 * Owns: which commits leave the history, and the order of the steps that remove them.
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
 * - Objects (`objects/`) are not touched here.
 */
import { RosetError } from '../errors/index.js';
import type { MetadataStore, PurgeRefusal } from '../meta/types.js';
import type { ObjectStore } from '../store/types.js';
import { manifestKey } from './layout.js';

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
  phase: 'keep-last' | 'purge' | 'manifests';
  done: number;
  total: number;
}

export interface GcReport {
  dryRun: boolean;
  /** Folders `--keep-last` soft-deleted (or would). */
  softDeleted: Array<{ commitId: string; nodeId: string }>;
  /** Folders `--keep-last` could not delete (inside a committed folder, sealing). */
  notDeleted: Array<{ commitId: string; nodeId: string; code: string }>;
  /** Commits purged (or that would be), with the nodes that left the metadata. */
  purged: Array<{ commitId: string; path: string; nodes: number }>;
  /** Candidates kept, and why. */
  kept: Array<{ commitId: string; path: string; reason: PurgeRefusal }>;
  /** Manifests deleted from the bucket (or that would be), and their bytes. */
  manifestsDeleted: number;
  manifestBytes: number;
}

export async function collectCommits(meta: MetadataStore, store: ObjectStore, opts: GcOptions): Promise<GcReport> {
  const dryRun = opts.dryRun ?? false;
  const now = opts.now ?? (() => new Date());
  const keepSince = new Date(now().getTime() - opts.keepWithinMs).toISOString();
  const report: GcReport = { dryRun, softDeleted: [], notDeleted: [], purged: [], kept: [], manifestsDeleted: 0, manifestBytes: 0 };
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
          report.softDeleted.push(v);
          continue;
        }
        try {
          await meta.softDeleteNode(v.nodeId, now().toISOString());
          report.softDeleted.push(v);
        } catch (err) {
          if (!(err instanceof RosetError)) throw err;
          report.notDeleted.push({ ...v, code: err.rosetCode });
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
