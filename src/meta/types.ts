/**
 * Control-plane metadata: the records and the interface every metadata backend
 * implements: SQLite (`sqlite.ts`, the embedded default) and PostgreSQL
 * (`postgres.ts`, for several processes sharing one database).
 *
 * Owns: the shape of mounts (and their auto-commit rules), nodes, commits, refs, the ref log, commit groups and API
 * keys, and the atomic operations on them.
 *
 * The namespace is a tree of edges. A node is identified by its id; its place is the
 * edge (parent id, name). Names are compared byte for byte (no case folding, no
 * pattern matching), a subtree is found by following parent ids, and a rename changes
 * one row whatever the size of the subtree. Paths exist only at the edges of the
 * system: `resolvePath` turns one into a node once, `pathOf` turns a node into one for
 * display.
 *
 * Invariants:
 * - Every method is atomic on its own. Multi-row state changes that must never be seen
 *   half-done (a commit completing together with its folder; a group completing with
 *   all its commits; a ref moving together with its log entry) are single methods.
 * - THE WRITE BARRIER LIVES HERE. Every method that changes the namespace (create,
 *   remove, move, setAttrs with a guard, softDelete, beginCommit) reads the effective
 *   state of the node and of its ancestors in the same transaction that makes the
 *   change, and refuses with SEALED or COMMITTED (see `Barrier`). No caller may check
 *   first and change later: with several writers on one database (the PostgreSQL
 *   backend), only the check inside the transaction holds. A backend must keep this
 *   with transactions and row locks (lock the ancestor chain, or run SERIALIZABLE).
 * - At most one live (not soft-deleted) node per (parent id, name).
 */
import type { CommitErrorInfo, CommitProgress, CommitStats, GroupStatus, NodeState, NodeType } from '../api/types.js';

/** A point in time with the kernel's precision: whole seconds and nanoseconds (0 ≤ nsec < 1e9). */
export interface Timespec {
  sec: number;
  nsec: number;
}

export const timespecFromMs = (ms: number): Timespec => {
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: Math.round((ms - sec * 1000) * 1e6) };
};

export const msOf = (t: Timespec): number => t.sec * 1000 + Math.floor(t.nsec / 1e6);

/**
 * Now. The wall clock gives milliseconds; the monotonic clock's sub-millisecond part
 * fills the nanoseconds, so two changes in one millisecond rarely share a time. Never
 * an offset from a monotonic start: a daemon up for weeks would drift from the wall
 * clock as NTP corrects it.
 */
export function nowTimespec(): Timespec {
  const ms = Date.now();
  const t = timespecFromMs(ms);
  return { sec: t.sec, nsec: t.nsec + Number(process.hrtime.bigint() % 1_000_000n) };
}

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
  name: string;
  type: NodeType;
  size: number;
  /** File type bits and permission bits, as in st_mode. */
  mode: number;
  uid: number;
  gid: number;
  atime: Timespec;
  mtime: Timespec;
  /** Last change of the node's attributes or its entry (st_ctime). */
  ctime: Timespec;
  /** The node's own state. Its effective state also depends on its ancestors: see `Barrier`. */
  state: NodeState;
  /** Live subfolders of a folder (st_nlink is 2 + this), where the read included it. */
  subfolders?: number;
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
  /** What the driver last recorded (`setCommitProgress`); null before its first report. Stores always return it. */
  progress?: CommitProgress | null;
  createdAt: string;
  completedAt: string | null;
  /** When garbage collection purged the commit (its folder left the metadata); null or absent while it is kept. */
  purgedAt?: string | null;
}

/** A live committed folder and its commit: what `--keep-last` counts under each parent. */
export interface CommittedFolder {
  commitId: string;
  nodeId: string;
  parentId: string;
  completedAt: string;
}

/** A completed, unpurged commit whose folder is soft-deleted: what gc may purge. */
export interface PurgeCandidate {
  commitId: string;
  mountId: string;
  nodeId: string;
  path: string;
}

/**
 * Why `purgeCommit` kept a commit: `not-found`, `not-completed`, `live` (its folder is
 * not soft-deleted), `referenced` (a ref points at it), `in-ref-log` (a ref-log entry
 * at or after `keepSince` names it), `holds-commits` (its folder holds the folder of
 * another commit that is not purged).
 */
export type PurgeRefusal = 'not-found' | 'not-completed' | 'live' | 'referenced' | 'in-ref-log' | 'holds-commits';

export interface PurgeOptions {
  dryRun?: boolean;
  assumeDeleted?: boolean;
}

export type PurgeOutcome = { purged: true; nodes: number } | { purged: false; reason: PurgeRefusal };

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
  /** When the key was revoked; a revoked key is refused from the next request on. */
  revokedAt: string | null;
}

/**
 * A data-plane agent (one `roset-mount`) as the control plane knows it. Agents on other
 * nodes reach the control plane over HTTP; `lastSeenAt` is their heartbeat, moved by
 * every poll and every result they send.
 */
export interface AgentRecord {
  id: string;
  mountId: string;
  /** Where the agent serves the mount on its node (display only). */
  mountpoint: string | null;
  hostname: string;
  registeredAt: string;
  lastSeenAt: string;
}

export type AgentTaskKind = 'seal' | 'upload' | 'release';

/**
 * Work the control plane hands an agent, kept in the metadata store so that whichever
 * `roset serve` the agent polls can deliver it, and whichever one drives the commit can
 * read its result. One task per (commit, kind, agent): `id` is made from the three, so a
 * driver that takes over a commit finds the tasks its predecessor created.
 */
export interface AgentTaskRecord {
  id: string;
  agentId: string;
  commitId: string;
  kind: AgentTaskKind;
  /** seal: {folderId, timeoutMs}; upload: {folderId}; release: {completed}. */
  args: Record<string, unknown>;
  status: 'pending' | 'done' | 'failed';
  /** What the agent answered (upload: an AgentUploadResult). */
  result: unknown;
  error: { code: string; message: string; details?: Record<string, unknown> } | null;
  createdAt: string;
  finishedAt: string | null;
  /** What the agent last reported while running the task (upload: an UploadProgress); stores always return it. */
  progress?: unknown;
}

export const agentTaskId = (commitId: string, kind: AgentTaskKind, agentId: string): string => `${commitId}.${kind}.${agentId}`;

/** A committed file, as recorded when a commit's manifest is written. */
export interface CommittedFile {
  nodeId: string;
  size: number;
  sha256: string;
}

/** A node with its current path, for the edges of the system (API replies, messages). */
export interface NodeWithPath extends NodeRecord {
  path: string;
}

/** A node inside a subtree, with its path relative to the subtree's root (`a/b.bin`). */
export interface SubtreeNode extends NodeRecord {
  relPath: string;
}

/**
 * Why a change is refused: the nearest node at or above the target that is not
 * STAGING. SEALED: a folder is sealing for a commit (the write barrier); COMMITTED: the
 * node is inside (or is) a committed folder. The nearest one decides, so a file in a
 * committed folder nested inside a sealing one is COMMITTED.
 */
export interface Barrier {
  code: 'SEALED' | 'COMMITTED';
  nodeId: string;
}

/**
 * How much of the barrier a change must respect:
 * - `writable`: refused inside any sealing or committed folder (every namespace change);
 * - `not-committed`: refused only inside a committed folder: a handle opened for
 *   writing before a seal may finish its work (publish its size, set its times) while
 *   the seal waits for it;
 * - `none`: no check (the commit engine and recovery, which own the states).
 */
export type Guard = 'writable' | 'not-committed' | 'none';

export interface NewNode {
  mountId: string;
  parentId: string;
  name: string;
  type: NodeType;
  mode: number;
  uid: number;
  gid: number;
  ownerAgent: string | null;
  /** Creation time (atime, mtime and ctime); now if absent. */
  time?: Timespec;
}

export interface AttrChange {
  size?: number;
  /** Permission bits (0o7777); the file type bits stay. */
  mode?: number;
  uid?: number;
  gid?: number;
  atime?: Timespec;
  mtime?: Timespec;
}

export interface MoveRequest {
  mountId: string;
  srcParentId: string;
  srcName: string;
  dstParentId: string;
  dstName: string;
  /** RENAME_NOREPLACE: refuse with NODE_EXISTS when the destination exists. */
  noReplace: boolean;
}

export interface Cursor {
  cursor?: string;
  limit: number;
}

/** A mount's auto-commit rules kept through the API (`src/meta/auto-commit-rules.ts` says what a rule means). */
export interface AutoCommitRulesRecord {
  mountId: string;
  /** The rule texts, in the order they were set. */
  rules: string[];
  /** 0 while the rules were never set; one more on every set, so a daemon can tell it holds the latest. */
  version: number;
  updatedAt: string | null;
  updatedBy: string | null;
}

export interface MetadataStore {
  // Mounts
  createMount(m: MountRecord): Promise<MountRecord>;
  getMount(id: string): Promise<MountRecord | null>;
  listMounts(): Promise<MountRecord[]>;
  /** The mount's auto-commit rules: no rules at version 0 if never set. */
  getAutoCommitRules(mountId: string): Promise<AutoCommitRulesRecord>;
  /**
   * Replaces the mount's auto-commit rules and moves the version on by one, atomically.
   * With `expectedVersion`, only if the version is still that one: null otherwise
   * (compare-and-swap for a read-modify-write such as adding one rule).
   */
  setAutoCommitRules(mountId: string, rules: string[], expectedVersion: number | undefined, at: string, by: string): Promise<AutoCommitRulesRecord | null>;

  // Nodes: reads
  /** A node by id, live or soft-deleted. */
  getNode(id: string): Promise<NodeRecord | null>;
  /** The live child `name` of `parentId` (byte-for-byte name match). */
  lookup(parentId: string, name: string): Promise<NodeRecord | null>;
  /** The mount's root folder. */
  root(mountId: string): Promise<NodeRecord>;
  /** The live node at a normalized mount-relative path, with the path. */
  resolvePath(mountId: string, path: string): Promise<NodeWithPath | null>;
  /** The current path of a node (of a soft-deleted one: where it was); null if there is no such node. */
  pathOf(id: string): Promise<string | null>;
  /** A live node with its current path. */
  getNodeWithPath(id: string): Promise<NodeWithPath | null>;
  listChildren(parentId: string, page?: Cursor): Promise<NodeRecord[]>;
  /** Live nodes strictly inside `id`, found by ancestry, with paths relative to it, sorted by path. */
  listSubtree(id: string): Promise<SubtreeNode[]>;
  /** Whether any live node strictly inside `id` is in one of `states`. */
  hasDescendantInState(id: string, states: NodeState[]): Promise<boolean>;
  /** Live subfolders of a folder (for st_nlink). */
  countSubfolders(id: string): Promise<number>;
  /** What refuses a change to `id` (its own state or an ancestor's), or null. */
  barrierOf(id: string): Promise<Barrier | null>;
  /**
   * A live node and what refuses a change to it, read together: what an open for
   * writing needs, in one query.
   */
  getNodeForWrite(id: string): Promise<{ node: NodeRecord; barrier: Barrier | null } | null>;

  // Nodes: changes. Each checks the barrier in its own transaction (see the header).
  /**
   * Creates a node under a live folder, refusing inside a sealing or committed folder.
   * NODE_EXISTS if the name is taken (CONFLICT if it is a file staged by another agent).
   * The parent's mtime and ctime move.
   */
  createNode(n: NewNode): Promise<NodeRecord>;
  /**
   * Removes the child `name` of `parentId` for good (unlink, rmdir; staging data only),
   * refusing inside a sealing or committed folder, a committed node, and a folder that
   * is not empty. `type` is what the caller expects the node to be.
   */
  removeNode(mountId: string, parentId: string, name: string, type: NodeType): Promise<NodeRecord>;
  /**
   * Renames an edge. Refused if either parent is inside a sealing or committed folder,
   * if the node is sealing or committed, or holds a sealing or committed folder, or if
   * the destination is inside the node. A replaced destination is removed in the same
   * transaction. Both parents' mtime and ctime move, and the node's ctime.
   */
  moveNode(req: MoveRequest): Promise<{ node: NodeRecord; replaced: NodeRecord | null }>;
  /** Changes attributes of a live node of `mountId` under `guard`; ctime moves. Returns the node as changed. */
  setAttrs(mountId: string, id: string, attrs: AttrChange, guard: Guard): Promise<NodeRecord>;
  /**
   * API soft delete: the node and its subtree go to the trash. Refused (COMMITTED) for
   * anything inside a committed folder, and (SEALED) for a node that is sealing, holds a
   * sealing folder, or is inside one. A committed folder itself may be deleted: its
   * commit stays in history. Refused (REFERENCED_BY_REF) while a ref points at the
   * commit of the node or of a folder inside it, checked in the same transaction.
   */
  softDeleteNode(id: string, at: string): Promise<NodeRecord>;

  // Commits
  /**
   * Raises the barrier: inserts the commit and flips its folder to `sealing`, in one
   * transaction that refuses (COMMIT_IN_PROGRESS) unless the folder is staging, no
   * folder above it is sealing and none inside it is, and (COMMITTED) if a folder above
   * it is committed.
   */
  beginCommit(c: CommitRecord): Promise<CommitRecord>;
  getCommit(id: string): Promise<CommitRecord | null>;
  listCommits(mountId: string, filter: { nodeId?: string; phases?: CommitPhase[] }, page: Cursor): Promise<CommitRecord[]>;
  /** The opaque cursor that continues `listCommits` after this commit. */
  commitCursor(id: string): Promise<string | null>;
  listCommitsInPhases(phases: CommitPhase[]): Promise<CommitRecord[]>;
  listGroupCommits(groupId: string): Promise<CommitRecord[]>;
  latestCompletedCommit(mountId: string): Promise<CommitRecord | null>;
  setCommitPhase(id: string, phase: 'uploading'): Promise<void>;
  /** Records how far a commit has come; only while it is pending (a finished commit keeps what it had). */
  setCommitProgress(id: string, progress: CommitProgress): Promise<void>;
  /** Records the manifest's files on the commit's nodes and moves the commit to `manifested`. */
  markManifested(id: string, stats: CommitStats, files: CommittedFile[]): Promise<void>;
  /** Live committed folders of a mount with their completed commits, oldest commit first. */
  listCommittedFolders(mountId: string): Promise<CommittedFolder[]>;
  /** Completed commits of a mount, not purged, whose folder is soft-deleted, oldest first. */
  listPurgeCandidates(mountId: string): Promise<PurgeCandidate[]>;
  /**
   * Purges a commit, in one transaction that refuses (returning why) unless it is
   * completed, its folder is soft-deleted, no ref points at it, no ref-log entry at or
   * after `keepSince` names it (from or to), and its folder holds no other unpurged
   * commit's folder. A purge removes the folder and everything below it from the
   * metadata and marks the commit purged. With `setRef`, which refuses a purged commit
   * in its own transaction, a ref never points at a purged commit (the two lock the
   * commit row on PostgreSQL). Purging a purged commit answers `{ purged: true, nodes: 0 }`.
   * `dryRun`: the same checks, nothing written (`nodes` counts what would go);
   * `assumeDeleted` (with `dryRun`): the folder counts as soft-deleted, for a folder
   * that `--keep-last` would delete first.
   */
  purgeCommit(id: string, keepSince: string, at: string, opts?: PurgeOptions): Promise<PurgeOutcome>;
  /** Purged commits whose manifest has not been recorded as deleted from the store. */
  listPurgedWithManifest(): Promise<string[]>;
  /** Records that a purged commit's manifest is gone from the store. */
  markManifestDeleted(id: string, at: string): Promise<void>;
  // Objects: pins, tombstones, the gc lease (the protocol is in src/commit/gc.ts)
  /**
   * Pins `sha256` for a staged file's upload (one pin per (agent, node): a new upload of
   * the node replaces its pin), in a transaction that first looks for a tombstone of
   * that object: if there is one, nothing is written and the answer is false (gc is
   * deleting the object: wait until the tombstone is gone, then upload).
   */
  pinObject(pin: { agentId: string; nodeId: string; sha256: string; at: string }): Promise<boolean>;
  /** Drops the pin of a node (its file was removed). */
  unpinNode(nodeId: string): Promise<void>;
  /**
   * Raises a tombstone for an object gc is about to delete, in a transaction that
   * refuses (false, nothing written) while a pin names it or a node not purged records
   * it as its content.
   */
  tombstoneObject(sha256: string, at: string): Promise<boolean>;
  removeTombstone(sha256: string): Promise<void>;
  listTombstones(): Promise<string[]>;
  /** Every object a node not purged records as its content (a dry run leaves out the nodes of the commits it would purge). */
  referencedObjects(exceptCommits?: string[]): Promise<Set<string>>;
  /**
   * Pin expiry (the rule is in src/commit/gc.ts): in one transaction, deregisters every
   * agent last heard from before `before` that holds a pin and has no task of a pending
   * commit (sealing, uploading, manifested), and drops its pins. Such an agent must
   * register again before it can pin, poll or answer (AGENT_NOT_FOUND), and its next
   * registration makes it check again every upload it relied on. Pins of an agent with
   * no registration (the in-process agent of `roset-mount`) never expire. Returns the
   * agents and the number of pins dropped; `dryRun` reads the same and writes nothing.
   */
  expireAgentPins(before: string, opts?: { dryRun?: boolean }): Promise<{ agents: string[]; pins: number }>;
  /** Takes or renews the one gc lease (as acquireCommitLease); `releaseGcLease` gives it up. */
  acquireGcLease(holder: string, until: string, now: string): Promise<boolean>;
  releaseGcLease(holder: string): Promise<void>;
  /**
   * Completes commits and their folders (subtrees become `committed`) in one step; a
   * group moves with them. The pins of the committed files go in the same step: their
   * objects are now recorded on the nodes.
   */
  completeCommits(ids: string[], at: string, group?: { id: string }): Promise<void>;
  /** Fails commits (and a group), returning their folders to `staging` in one step. */
  failCommits(ids: string[], error: CommitErrorInfo, group?: { id: string }): Promise<void>;

  // Refs
  getRef(mountId: string, name: string): Promise<RefRecord | null>;
  listRefs(mountId: string): Promise<RefRecord[]>;
  /**
   * Compare-and-swap. `expected` undefined: unconditional; null: the ref must not exist;
   * a string: the ref must point there. Returns null when the comparison fails.
   * Refused (COMMIT_FOLDER_DELETED) when the commit's folder was soft-deleted, checked
   * in the same transaction; with `softDeleteNode` it keeps every ref on a live folder.
   * Refused (COMMIT_PURGED) for a commit that garbage collection purged, checked in the
   * transaction that moves the ref.
   */
  setRef(ref: RefRecord, expected: string | null | undefined): Promise<RefRecord | null>;
  deleteRef(mountId: string, name: string, by: string, at: string): Promise<boolean>;
  refLog(mountId: string, name: string): Promise<RefLogRecord[]>;

  // Groups
  createGroup(g: GroupRecord): Promise<GroupRecord>;
  getGroup(id: string): Promise<GroupRecord | null>;
  markGroupSealed(id: string, at: string): Promise<GroupRecord | null>;

  /**
   * Takes or renews the lease that lets `holder` drive commit `id` until `until`: granted
   * when nobody holds it, when the lease ran out before `now`, or when `holder` already
   * holds it. Exactly one process drives a commit; one that loses its lease stops.
   */
  acquireCommitLease(id: string, holder: string, until: string, now: string): Promise<boolean>;

  // Agents and their tasks
  /** Registers an agent, or refreshes its mount, mountpoint, hostname and heartbeat. */
  upsertAgent(a: AgentRecord): Promise<AgentRecord>;
  getAgent(id: string): Promise<AgentRecord | null>;
  listAgents(mountId: string): Promise<AgentRecord[]>;
  /** A heartbeat; false if the agent is not registered. */
  touchAgent(id: string, at: string): Promise<boolean>;
  /** Inserts a task unless one with its id exists; returns the stored one either way. */
  addAgentTask(t: AgentTaskRecord): Promise<AgentTaskRecord>;
  getAgentTask(id: string): Promise<AgentTaskRecord | null>;
  /** An agent's pending tasks, oldest first. */
  pendingAgentTasks(agentId: string): Promise<AgentTaskRecord[]>;
  /** Records a pending task's outcome; false if it was not pending (answered already). */
  /** Records what an agent reports while running a pending task (JSON); ignored once the task is answered. */
  setAgentTaskProgress(id: string, progress: unknown): Promise<void>;
  finishAgentTask(id: string, outcome: { status: 'done'; result: unknown } | { status: 'failed'; error: NonNullable<AgentTaskRecord['error']> }, at: string): Promise<boolean>;
  /** The agents that were given a task for this commit (its participants). */
  commitTaskAgents(commitId: string): Promise<string[]>;
  /** Forgets a commit's tasks (one agent's, or all) once they are answered and released. */
  dropAgentTasks(commitId: string, agentId?: string): Promise<void>;

  // API keys
  insertApiKey(k: ApiKeyRecord): Promise<void>;
  /** Every key, revoked ones included, oldest first. */
  listApiKeys(): Promise<ApiKeyRecord[]>;
  /** Revokes a key; false if there is no such key or it was revoked already. */
  revokeApiKey(id: string, at: string): Promise<boolean>;

  close(): Promise<void>;
}
