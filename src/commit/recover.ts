/**
 * Recovery: rebuilds the control-plane metadata from the bucket alone (design §3), for
 * when the state directory is lost.
 *
 * Owns: reading `commits/`, `groups/` and `refs/` and replaying them into an empty
 * MetadataStore through its ordinary operations, so recovered metadata obeys the same
 * invariants as live metadata.
 *
 * Invariants:
 * - Only what the bucket proves comes back: a commit needs its manifest; a commit of a
 *   group needs the group record listing it (a group that never sealed left no record,
 *   and its commits never completed).
 * - Commits are replayed oldest first, so ids, order, parents and stats match the
 *   original history. Refs come back at their mirrored position, with one log entry
 *   by `recover` (the ref log itself lives only in the metadata store).
 * - Soft-deleted nodes and staged, uncommitted files are not in the bucket and do not
 *   come back.
 */
import type { Manifest } from '../api/types.js';
import { CommitError } from '../errors/index.js';
import { baseName, joinPath, parentOf } from '../meta/paths.js';
import { timespecFromMs, type MetadataStore } from '../meta/types.js';
import type { ObjectStore } from '../store/types.js';
import { listAll } from '../store/types.js';

export interface RecoverReport {
  mounts: Array<{ id: string; name: string }>;
  commits: number;
  files: number;
  groups: number;
  refs: Array<{ name: string; commitId: string }>;
  skipped: Array<{ key: string; reason: string }>;
}

export interface RecoverOptions {
  /** Name for the mount found in the bucket (the daemon looks its mount up by name). */
  mountName: string;
  onProgress?: (done: number, total: number) => void;
}

interface GroupRecordFile {
  id: string;
  mountId: string;
  message: string;
  commitIds: string[];
  createdAt: string;
  sealedAt: string | null;
  committedAt: string;
}

async function readJson<T>(store: ObjectStore, key: string): Promise<T> {
  return JSON.parse((await store.get(key)).toString('utf8')) as T;
}

export async function recoverFromBucket(store: ObjectStore, meta: MetadataStore, opts: RecoverOptions): Promise<RecoverReport> {
  if ((await meta.listMounts()).length > 0) throw new CommitError('BAD_REQUEST', 'The metadata store is not empty: recover only into a new state directory');
  const report: RecoverReport = { mounts: [], commits: 0, files: 0, groups: 0, refs: [], skipped: [] };

  const groups = new Map<string, GroupRecordFile>();
  for await (const o of listAll(store, 'groups/')) {
    if (!o.key.endsWith('.json')) continue;
    const g = await readJson<GroupRecordFile>(store, o.key);
    groups.set(g.id, g);
  }

  const manifests: Array<{ m: Manifest; completedAt: string }> = [];
  for await (const o of listAll(store, 'commits/')) {
    if (!o.key.endsWith('.json')) continue;
    let m: Manifest;
    try {
      m = await readJson<Manifest>(store, o.key);
    } catch (err) {
      report.skipped.push({ key: o.key, reason: `unreadable manifest: ${(err as Error).message}` });
      continue;
    }
    if (m.groupId) {
      const g = groups.get(m.groupId);
      if (!g || !g.commitIds.includes(m.id)) {
        report.skipped.push({ key: o.key, reason: `group ${m.groupId} never committed` });
        continue;
      }
      manifests.push({ m, completedAt: g.committedAt });
    } else {
      manifests.push({ m, completedAt: o.lastModified.toISOString() });
    }
  }
  manifests.sort((a, b) => a.m.createdAt.localeCompare(b.m.createdAt) || a.m.id.localeCompare(b.m.id));

  const mountIds = [...new Set(manifests.map((x) => x.m.mountId))];
  for (const [i, id] of mountIds.entries()) {
    const name = i === 0 ? opts.mountName : id;
    await meta.createMount({ id, name, store: store.description, createdAt: manifests.find((x) => x.m.mountId === id)!.m.createdAt });
    report.mounts.push({ id, name });
  }

  const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  /** The folder at `path`, made with any missing folders above it; its id. */
  const ensureFolder = async (mountId: string, path: string): Promise<string> => {
    let cur = (await meta.root(mountId)).id;
    for (const name of path.split('/').filter(Boolean)) {
      cur = (await meta.lookup(cur, name))?.id
        ?? (await meta.createNode({ mountId, parentId: cur, name, type: 'folder', mode: 0o40755, ...owner, ownerAgent: null })).id;
    }
    return cur;
  };

  for (const [i, { m, completedAt }] of manifests.entries()) {
    const folderId = await ensureFolder(m.mountId, m.path);
    const committedFiles = [];
    for (const f of m.files) {
      const path = joinPath(m.path, f.path);
      const parentId = await ensureFolder(m.mountId, parentOf(path));
      // A file inside a folder committed earlier is already there, committed.
      if (await meta.lookup(parentId, baseName(path))) continue;
      const node = await meta.createNode({
        mountId: m.mountId, parentId, name: baseName(path), type: 'file', mode: 0o100000 | f.mode, ...owner, ownerAgent: null, time: timespecFromMs(f.mtime),
      });
      committedFiles.push({ nodeId: node.id, size: f.size, sha256: f.sha256 });
    }
    const stats = m.stats ?? { files: m.files.length, bytes: m.files.reduce((s, f) => s + f.size, 0), uploadedBytes: 0, dedupedBytes: 0 };
    await meta.beginCommit({
      id: m.id, mountId: m.mountId, nodeId: folderId, path: m.path, message: m.message, groupId: m.groupId, parentCommitId: m.parentCommitId,
      phase: 'sealing', error: null, stats, createdAt: m.createdAt, completedAt: null,
    });
    await meta.markManifested(m.id, stats, committedFiles);
    await meta.completeCommits([m.id], completedAt);
    report.commits++;
    report.files += m.files.length;
    opts.onProgress?.(i + 1, manifests.length);
  }

  for (const g of groups.values()) {
    if (!g.commitIds.every((id) => manifests.some((x) => x.m.id === id))) {
      report.skipped.push({ key: `groups/${g.id}.json`, reason: 'a commit of the group has no manifest' });
      continue;
    }
    await meta.createGroup({ id: g.id, mountId: g.mountId, message: g.message, status: 'committed', createdAt: g.createdAt, sealedAt: g.sealedAt, committedAt: g.committedAt });
    report.groups++;
  }

  for await (const o of listAll(store, 'refs/')) {
    if (!o.key.endsWith('.json')) continue;
    const r = await readJson<{ name: string; commitId: string; updatedAt: string }>(store, o.key);
    const c = await meta.getCommit(r.commitId);
    if (!c || c.phase !== 'completed') {
      report.skipped.push({ key: o.key, reason: `ref ${r.name} points at ${r.commitId}, which was not recovered` });
      continue;
    }
    await meta.setRef({ mountId: c.mountId, name: r.name, commitId: c.id, updatedAt: r.updatedAt, updatedBy: 'recover' }, undefined);
    report.refs.push({ name: r.name, commitId: c.id });
  }
  return report;
}
