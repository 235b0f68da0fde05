/**
 * Wire types of the `/v1` API (design §4), shared by the server, the TypeScript SDK
 * and the CLI. JSON is camelCase; timestamps are ISO-8601 strings.
 *
 * Invariant: these shapes match `openapi/roset-v1.json`; change both together.
 */

export type NodeType = 'file' | 'folder';
export type NodeState = 'staging' | 'sealing' | 'committed';
export type CommitStatus = 'pending' | 'completed' | 'failed';
export type GroupStatus = 'pending' | 'committed' | 'failed';

export interface Mount {
  id: string;
  name: string;
  store: string;
  createdAt: string;
  /** Local mountpoints of agents currently serving this mount. */
  mountpoints: string[];
}

/** A `roset-mount` agent on another node, as `GET /v1/agents` lists it. */
export interface AgentInfo {
  id: string;
  mountId: string;
  mountpoint: string | null;
  hostname: string;
  registeredAt: string;
  /** Its last poll or answer: its heartbeat. */
  lastSeenAt: string;
  /** Heard from within the control plane's agent timeout. */
  connected: boolean;
}

export interface Node {
  id: string;
  mountId: string;
  parentId: string | null;
  path: string;
  name: string;
  type: NodeType;
  size: number;
  state: NodeState;
  commitId: string | null;
  createdAt: string;
  updatedAt: string;
  deletedAt: string | null;
}

export interface CommitStats {
  files: number;
  bytes: number;
  uploadedBytes: number;
  dedupedBytes: number;
}

export interface CommitErrorInfo {
  code: string;
  message: string;
}

/**
 * How far a pending commit has come, as its driver last recorded it (at most about
 * twice a second). Totals are the sealed snapshot's files and bytes (known once the
 * seal is done); `filesDone` counts files in the store (uploaded or already there),
 * `bytesUploaded` their bytes, counted as each file finishes.
 */
export interface CommitProgress {
  phase: 'sealing' | 'uploading' | 'manifest';
  filesTotal: number;
  filesDone: number;
  bytesTotal: number;
  bytesUploaded: number;
}

export interface Commit {
  id: string;
  mountId: string;
  nodeId: string;
  path: string;
  message: string;
  groupId: string | null;
  status: CommitStatus;
  error: CommitErrorInfo | null;
  stats: CommitStats;
  /** null unless the commit is pending. */
  progress: CommitProgress | null;
  createdAt: string;
  completedAt: string | null;
  /**
   * When garbage collection purged the commit: its folder and manifest are gone, so it
   * can be listed but not read or pointed at by a ref. null while it is kept.
   */
  purgedAt: string | null;
}

export interface Ref {
  name: string;
  mountId: string;
  commitId: string;
  commit: Commit;
  updatedAt: string;
  updatedBy: string;
}

/** One auto-commit rule of a mount, as the API lists it. */
export interface AutoCommitRuleInfo {
  /** The rule as set: `FOLDERS:MARKER[:REF]`. */
  rule: string;
  /** FOLDERS: the glob of mount-relative folder paths. */
  folders: string;
  /** The marker's file name (a preset such as `@dcp` resolved). */
  marker: string;
  ref: string | null;
}

/** A mount's auto-commit rules (`GET /v1/mounts/{mountId}/auto-commit`). */
export interface AutoCommitRules {
  mountId: string;
  rules: AutoCommitRuleInfo[];
  /** 0 while never set; one more on every set. */
  version: number;
  updatedAt: string | null;
  updatedBy: string | null;
}

export interface RefLogEntry {
  name: string;
  mountId: string;
  fromCommitId: string | null;
  toCommitId: string | null;
  updatedAt: string;
  updatedBy: string;
}

export interface CommitGroup {
  id: string;
  message: string;
  status: GroupStatus;
  commitIds: string[];
  createdAt: string;
  /** Set when the group is sealed; its commits then complete or fail together. */
  sealedAt: string | null;
  committedAt: string | null;
}

export interface ManifestFile {
  /** Path relative to the committed folder, with `/` separators and no leading `/`. */
  path: string;
  size: number;
  mode: number;
  /** Modification time in milliseconds since the epoch. */
  mtime: number;
  sha256: string;
  /** Object key relative to the store prefix: `objects/<sha[0:2]>/<sha>`. */
  key: string;
  /**
   * Hashes of the object's fixed-size blocks, so a reader can verify each block as it
   * arrives (docs/SEMANTICS.md, "Block hashes"). Absent in manifests written by 0.1.0
   * and for files an earlier commit uploaded: such files are verified whole.
   */
  blocks?: ManifestBlocks;
}

export interface ManifestBlocks {
  /** Bytes per block (8 MiB); every block but the last has exactly this many. */
  size: number;
  /** BLAKE3 (256 bits) of each block, lowercase hex. */
  alg: 'blake3';
  /** One per block, in order: ceil(file size / size) of them; none for an empty file. */
  hashes: string[];
}

export interface Manifest {
  id: string;
  mountId: string;
  path: string;
  message: string;
  groupId: string | null;
  parentCommitId: string | null;
  createdAt: string;
  /** Totals as measured when the manifest was written; `roset recover` restores them. */
  stats: CommitStats;
  files: ManifestFile[];
}

/** An API key as the API shows it: never its hash, and its token only once, at creation. */
export interface ApiKey {
  id: string;
  name: string;
  createdAt: string;
  /** When the key was revoked; from then on it is refused (401 UNAUTHORIZED). */
  revokedAt: string | null;
}

/** The reply to `POST /v1/keys`: the only time the token is ever shown. */
export interface CreatedApiKey extends ApiKey {
  token: string;
}

export interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> };
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface Health {
  status: 'ok';
  version: string;
}

// Request and response bodies that are not one of the objects above.

export interface CreateMountRequest {
  name: string;
}

export interface ResolveRequest {
  /** Mount-relative absolute paths, e.g. `/checkpoints/step-1`. */
  paths: string[];
}

export interface ResolveResponse {
  /** One entry per requested path; `null` when nothing lives there. */
  nodes: Record<string, Node | null>;
}

/** Exactly one of `parentPath` and `parentId`. */
export interface CreateNodeRequest {
  parentPath?: string;
  parentId?: string;
  name: string;
  type: NodeType;
}

export interface CommitRequest {
  message?: string;
  groupId?: string;
}

export interface UpdateRefRequest {
  commitId: string;
  /** Compare-and-swap: absent = unconditional; `null` = the ref must not exist yet. */
  expectedCommitId?: string | null;
}

export interface CreateKeyRequest {
  /** 1-128 characters, none of them a control character: who or what holds the key. */
  name: string;
}

export interface CreateCommitGroupRequest {
  message?: string;
}

/** `POST /v1/gc`: the options of one garbage collection. */
export interface GcRequest {
  keepLast?: number;
  keepWithinSeconds?: number;
  graceSeconds?: number;
  /** Pins of an agent not heard from for this long expire (the agent is deregistered); default 7 days, never below the agent timeout. */
  pinExpirySeconds?: number;
  dryRun?: boolean;
}

/** What one garbage collection removed (or, in a dry run, would remove). */
export interface GcReport {
  dryRun: boolean;
  /** Folders `--keep-last` soft-deleted (or would). */
  softDeleted: Array<{ commitId: string; nodeId: string }>;
  /** Folders `--keep-last` could not delete (inside a committed folder, sealing). */
  notDeleted: Array<{ commitId: string; nodeId: string; code: string }>;
  /** Commits purged (or that would be), with the nodes that left the metadata. */
  purged: Array<{ commitId: string; path: string; nodes: number }>;
  /** Candidates kept, and why. */
  kept: Array<{ commitId: string; path: string; reason: 'not-found' | 'not-completed' | 'live' | 'referenced' | 'in-ref-log' | 'holds-commits' }>;
  /** Manifests deleted from the bucket (or that would be), and their bytes. */
  manifestsDeleted: number;
  manifestBytes: number;
  /** Objects listed, deleted (or that would be), and their bytes. */
  objectsListed: number;
  objectsDeleted: number;
  bytesFreed: number;
  /** Unreferenced objects kept: younger than the grace period, or pinned by an upload. */
  objectsInGrace: number;
  objectsPinned: number;
  /**
   * Agents not heard from within the pin expiry whose pins gc dropped (or would), which
   * it deregistered, and how many pins went.
   */
  agentsExpired: string[];
  pinsExpired: number;
}

/** `GET /v1/gc`: the run of the answering process, if one runs there. */
export interface GcStatus {
  running: boolean;
  phase?: 'keep-last' | 'purge' | 'manifests' | 'mark' | 'sweep';
  /** Items done in this step (sweep: objects listed so far). */
  done?: number;
  /** Items in this step; 0 where it is not known in advance (sweep). */
  total?: number;
  startedAt?: string;
  dryRun?: boolean;
}
