/** Wire objects for SDK and CLI tests, with overridable fields. */
import type { Commit, CommitGroup, Mount, Node, Ref } from '../../src/api/types.js';

const T = '2025-01-01T00:00:00.000Z';

export function node(over: Partial<Node> = {}): Node {
  return {
    id: 'n1', mountId: 'mnt_a', parentId: 'root', path: '/ckpt/step-1', name: 'step-1', type: 'folder', size: 0,
    state: 'staging', commitId: null, createdAt: T, updatedAt: T, deletedAt: null, ...over,
  };
}

export function commit(over: Partial<Commit> = {}): Commit {
  const pending = (over.status ?? 'pending') === 'pending';
  return {
    id: 'cmt_1', mountId: 'mnt_a', nodeId: 'n1', path: '/ckpt/step-1', message: '', groupId: null, status: 'pending', error: null,
    stats: { files: 0, bytes: 0, uploadedBytes: 0, dedupedBytes: 0 },
    progress: pending ? { phase: 'sealing', filesTotal: 0, filesDone: 0, bytesTotal: 0, bytesUploaded: 0 } : null,
    createdAt: T, completedAt: null, purgedAt: null, ...over,
  };
}

export function ref(over: Partial<Ref> = {}): Ref {
  const c = over.commit ?? commit({ id: over.commitId ?? 'cmt_1', status: 'completed', completedAt: T });
  return { name: 'latest', mountId: 'mnt_a', commitId: c.id, commit: c, updatedAt: T, updatedBy: 'key_1', ...over };
}

export function group(over: Partial<CommitGroup> = {}): CommitGroup {
  return { id: 'grp_1', message: '', status: 'pending', commitIds: [], createdAt: T, sealedAt: null, committedAt: null, ...over };
}

export function mount(over: Partial<Mount> = {}): Mount {
  return { id: 'mnt_a', name: 'default', store: 'file:///tmp/store', createdAt: T, mountpoints: [], ...over };
}
