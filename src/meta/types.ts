/**
 * Control-plane metadata: the records and the interface every metadata backend
 * implements (SQLite now; PostgreSQL is meant to be a second implementation of this
 * same interface, not a rewrite).
 *
 * Owns: the shape of mounts, nodes, commits, refs, the ref log, commit groups and API
 * keys, and the atomic operations on them.
 *
 * Invariants:
 * - Every method is atomic on its own. Multi-row state changes that must never be seen
 *   half-done (a commit completing together with its folder; a group completing with
 *   all its commits; a ref moving together with its log entry) are single methods.
 * - Paths are mount-relative, absolute, normalized (`/a/b`), `/` is the root folder.
 * - At most one live (not soft-deleted) node per (mount, path).
 */
import type { CommitErrorInfo, CommitStats, GroupStatus, NodeState, NodeType } from '../api/types.js';

export interface MountRecord {
  id: string;
  name: string;
  store: string;
  createdAt: string;
}

export interface NodeRecord {
  id: string;
  mountId: string;
  parentId: string | null;
  path: string;
  name: string;
  type: NodeType;
  size: number;
  mode: number;
  mtimeMs: number;
  state: NodeState;
  commitId: string | null;
  /** Content address of a committed file. */
  sha256: string | null;
  /** The data-plane agent that stages this file's bytes; null for folders and committed files. */
  ownerAgent: string | null;
  createdAt: string;
  updatedAt: string;
  deletedAt: string | null;
}

/**
 * Where a commit is in its lifecycle. The API shows sealing/uploading/manifested as
 * `pending`. Transitions: sealing → uploading → manifested → completed, and any
 * non-terminal phase → failed.
 */
export type CommitPhase = 'sealing' | 'uploading' | 'manifested' | 'completed' | 'failed';

export interface CommitRecord {
  id: string;
  mountId: string;
  nodeId: string;
  path: string;
  message: string;
  groupId: string | null;
  parentCommitId: string | null;
  phase: CommitPhase;
  error: CommitErrorInfo | null;
  stats: CommitStats;
  createdAt: string;
  completedAt: string | null;
}

export interface RefRecord {
  mountId: string;
  name: string;
  commitId: string;
  updatedAt: string;
  updatedBy: string;
}

export interface RefLogRecord {
  seq: number;
  mountId: string;
  name: string;
  fromCommitId: string | null;
  toCommitId: string | null;
  updatedAt: string;
  updatedBy: string;
}

export interface GroupRecord {
  id: string;
  mountId: string;
  message: string;
  status: GroupStatus;
  createdAt: string;
  sealedAt: string | null;
  committedAt: string | null;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  /** sha256 of the whole token, hex. The token itself is never stored. */
  hash: string;
  createdAt: string;
}

/** A committed file, as recorded when a commit's manifest is written. */
export interface CommittedFile {
  nodeId: string;
  size: number;
  sha256: string;
}

export interface NewNode {
  mountId: string;
  parentId: string;
  parentPath: string;
  name: string;
  type: NodeType;
  mode: number;
  ownerAgent: string | null;
}

export interface Cursor {
  cursor?: string;
  limit: number;
}

export interface MetadataStore {
  // Mounts
  createMount(m: MountRecord): Promise<MountRecord>;
  getMount(id: string): Promise<MountRecord | null>;
  listMounts(): Promise<MountRecord[]>;

  // Nodes
  getNode(id: string): Promise<NodeRecord | null>;
  getNodeByPath(mountId: string, path: string): Promise<NodeRecord | null>;
  /** Live nodes whose path is one of `paths` (used for ancestor checks). */
  getNodesByPaths(mountId: string, paths: string[]): Promise<NodeRecord[]>;
  listChildren(parentId: string, page?: Cursor): Promise<NodeRecord[]>;
  /** Live nodes strictly inside `path`. */
  listDescendants(mountId: string, path: string): Promise<NodeRecord[]>;
  /** Whether any live node strictly inside `path` is in one of `states`. */
  hasDescendantInState(mountId: string, path: string, states: NodeState[]): Promise<boolean>;
  /** Throws NamespaceError NODE_EXISTS when a live node already has the path. */
  insertNode(n: NewNode): Promise<NodeRecord>;
  updateNodeAttrs(id: string, attrs: { size?: number; mode?: number; mtimeMs?: number }): Promise<void>;
  /** Removes a node for good (staging data only; committed data is only soft-deleted). */
  removeNode(id: string): Promise<void>;
  softDeleteNode(id: string, at: string): Promise<NodeRecord>;
  /** Moves a node (and its subtree) to a new parent and name; replaces `replaceId` if given. */
  moveNode(id: string, newParent: NodeRecord, newName: string, replaceId: string | null): Promise<void>;

  // Commits
  /** Inserts the commit and flips its folder to `sealing`, only if the folder is still `staging`. */
  beginCommit(c: CommitRecord): Promise<CommitRecord>;
  getCommit(id: string): Promise<CommitRecord | null>;
  listCommits(mountId: string, filter: { nodeId?: string; phases?: CommitPhase[] }, page: Cursor): Promise<CommitRecord[]>;
  /** The opaque cursor that continues `listCommits` after this commit. */
  commitCursor(id: string): Promise<string | null>;
  listCommitsInPhases(phases: CommitPhase[]): Promise<CommitRecord[]>;
  listGroupCommits(groupId: string): Promise<CommitRecord[]>;
  latestCompletedCommit(mountId: string): Promise<CommitRecord | null>;
  setCommitPhase(id: string, phase: 'uploading'): Promise<void>;
  /** Records the manifest's files on the commit's nodes and moves the commit to `manifested`. */
  markManifested(id: string, stats: CommitStats, files: CommittedFile[]): Promise<void>;
  /** Completes commits and their folders (subtrees become `committed`) in one step; a group moves with them. */
  completeCommits(ids: string[], at: string, group?: { id: string }): Promise<void>;
  /** Fails commits (and a group), returning their folders to `staging` in one step. */
  failCommits(ids: string[], error: CommitErrorInfo, group?: { id: string }): Promise<void>;

  // Refs
  getRef(mountId: string, name: string): Promise<RefRecord | null>;
  listRefs(mountId: string): Promise<RefRecord[]>;
  /**
   * Compare-and-swap. `expected` undefined: unconditional; null: the ref must not exist;
   * a string: the ref must point there. Returns null when the comparison fails.
   */
  setRef(ref: RefRecord, expected: string | null | undefined): Promise<RefRecord | null>;
  deleteRef(mountId: string, name: string, by: string, at: string): Promise<boolean>;
  refLog(mountId: string, name: string): Promise<RefLogRecord[]>;

  // Groups
  createGroup(g: GroupRecord): Promise<GroupRecord>;
  getGroup(id: string): Promise<GroupRecord | null>;
  markGroupSealed(id: string, at: string): Promise<GroupRecord | null>;

  // API keys
  insertApiKey(k: ApiKeyRecord): Promise<void>;
  listApiKeys(): Promise<ApiKeyRecord[]>;

  close(): Promise<void>;
}
