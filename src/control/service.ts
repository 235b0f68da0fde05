/**
 * The control plane: namespace, commits, refs, groups, mounts and API keys, with their
 * rules. The HTTP API is a thin layer over this class, and the in-process data plane
 * reaches the control plane only through the `ControlApi` interface it implements.
 *
 * Owns: validation and the write barrier's source of truth (folder states), ref
 * compare-and-swap and its bucket mirror, key verification.
 *
 * Invariants:
 * - The write barrier is enforced by the metadata store, inside the transaction of each
 *   change (src/meta/types.ts, "THE WRITE BARRIER LIVES HERE"); this class never checks
 *   a state and then changes something in a second step.
 * - The data plane addresses nodes by id; paths are resolved here only for the API.
 * - A ref only ever points at a `completed` commit of its own mount.
 * - API keys are stored as sha256 hashes and compared in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { ApiKey, AutoCommitRules, Commit, CommitGroup, CommitProgress, Manifest, Mount, Node, NodeType, Ref, RefLogEntry } from '../api/types.js';
import { CommitEngine, type EngineOptions } from '../commit/engine.js';
import { runGc, type GcProgress, type GcReport } from '../commit/gc.js';
import { TaskBus } from '../commit/task-bus.js';
import { AgentHub, type AgentStoreConfig } from './agent-hub.js';
import { manifestKey, refKey } from '../commit/layout.js';
import { ApiError, CommitError, NamespaceError, RosetError, StoreError } from '../errors/index.js';
import type { ObjectStore } from '../store/types.js';
import { AgentRegistry, type Agent } from '../commit/agents.js';
import { ids } from '../meta/ids.js';
import type {
  ApiKeyRecord, AttrChange, AutoCommitRulesRecord, Barrier, CommitPhase, CommitRecord, GroupRecord, Guard, MetadataStore, MoveRequest, NewNode, NodeRecord, NodeWithPath, RefRecord, SubtreeNode,
} from '../meta/types.js';
import { barrierError } from '../meta/barrier.js';
import { parseAutoCommitRule, parseRuleList } from '../meta/auto-commit-rules.js';
import { joinPath, normalizePath, validateName } from '../meta/paths.js';

export const REF_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const DEFAULT_DIR_MODE = 0o40755;
/** Folders made through the API belong to the daemon's user, as every node did before ownership was stored. */
const API_OWNER = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

/**
 * What the data plane needs from the control plane: nodes by id, and changes that
 * check the barrier in their own transaction.
 */
export interface ControlApi {
  /** The mount's root folder. */
  root(mountId: string): Promise<NodeRecord>;
  /** The live child `name` of a folder. */
  lookupChild(parentId: string, name: string): Promise<NodeRecord | null>;
  /** A live node of this mount by id; null once it is gone. */
  lookupById(mountId: string, id: string): Promise<NodeRecord | null>;
  /** A live node and what refuses a change to it, read together (open for writing). */
  nodeForWrite(mountId: string, id: string): Promise<{ node: NodeRecord; barrier: Barrier | null } | null>;
  children(nodeId: string): Promise<NodeRecord[]>;
  countSubfolders(nodeId: string): Promise<number>;
  createChild(n: NewNode): Promise<NodeRecord>;
  /** Removes a staging file or an empty staging folder (unlink, rmdir). */
  removeChild(mountId: string, parentId: string, name: string, type: NodeType): Promise<NodeRecord>;
  moveChild(req: MoveRequest): Promise<{ node: NodeRecord; replaced: NodeRecord | null }>;
  setNodeAttrs(mountId: string, id: string, attrs: AttrChange, guard: Guard): Promise<NodeRecord>;
  /** The barrier error for a change to `id`, thrown; nothing if it may change. */
  assertWritable(mountId: string, id: string): Promise<void>;
  /** The error a change refused by `b` answers (SEALED or COMMITTED, with the folder's path). */
  barrierError(b: Barrier): Promise<RosetError>;
  /** Live nodes inside a folder, by ancestry. */
  subtree(folderId: string): Promise<SubtreeNode[]>;
  /** The current path of a node, for messages; null once it is gone. */
  pathOf(id: string): Promise<string | null>;
  /** The live node at a mount-relative path: for bindings and tools that speak paths, once, at their edge. */
  resolvePath(mountId: string, path: string): Promise<NodeWithPath | null>;
  /**
   * Pins the object a staged file's upload is about to rely on, before it looks for it
   * in the bucket (see src/commit/gc.ts). False while gc is deleting that object: wait,
   * and pin again.
   */
  pinObject(mountId: string, agentId: string, nodeId: string, sha256: string): Promise<boolean>;
  /** The auto-commit rules the mount keeps (set through the API), with their version. */
  autoCommitRules(mountId: string): Promise<AutoCommitRules>;
}

export interface ControlPlaneOptions extends EngineOptions {
  /** What agents on other nodes are told about the bucket (absent: agents cannot register). */
  agentStore?: AgentStoreConfig;
}

/** The largest duration (and keep-last) `POST /v1/gc` takes: 100 years in seconds. */
const GC_MAX_SECONDS = 3_153_600_000;

export class ControlPlane implements ControlApi {
  readonly agents = new AgentRegistry();
  /** Wake-ups between the agents' polls and answers and the commits waiting on them (in this process). */
  readonly bus = new TaskBus();
  readonly engine: CommitEngine;
  /** Agents on other nodes: registration, task polls and answers, their namespace calls. */
  readonly hub: AgentHub;
  private defaultMountId: string | null = null;
  private readonly holder: string;
  /** A gc runs here now (the metadata lease keeps other processes out; this, other requests of this one). */
  private gcRunning = false;
  /** Where the run of this process is, for `GET /v1/gc`. */
  private gcProgress: (GcProgress & { startedAt: string; dryRun: boolean }) | null = null;
  private gcTimer: NodeJS.Timeout | null = null;
  /** How long an agent of another node may stay silent: the least pin expiry gc accepts. */
  private readonly agentTimeoutMs: number;
  /** Told of every change of a mount's auto-commit rules made in this process (the embedded daemon applies them at once). */
  private readonly ruleListeners = new Set<(r: AutoCommitRules) => void>();

  constructor(
    readonly meta: MetadataStore,
    readonly store: ObjectStore,
    private readonly log: Logger,
    options: ControlPlaneOptions,
  ) {
    this.holder = options.holder;
    this.agentTimeoutMs = options.agentTimeoutMs ?? 30_000;
    this.engine = new CommitEngine(meta, store, this.agents, this.bus, log.child({ component: 'commit' }), options);
    this.hub = new AgentHub(meta, this, this.bus, log.child({ component: 'agents' }), {
      agentTimeoutMs: this.agentTimeoutMs,
      store: options.agentStore ?? null,
    });
  }

  // ---- Mounts -----------------------------------------------------------------

  /** Returns the id of the mount named `name`, creating it on first start. */
  async ensureMount(name: string): Promise<string> {
    const find = async (): Promise<string | undefined> => (await this.meta.listMounts()).find((m) => m.name === name)?.id;
    let id = await find();
    if (!id) {
      try {
        id = (await this.meta.createMount({ id: ids.mount(), name, store: this.store.description, createdAt: new Date().toISOString() })).id;
      } catch (err) {
        // Another process on the same database made it first (two `roset serve` starting together).
        id = await find();
        if (!id) throw err;
      }
    }
    this.defaultMountId ??= id;
    return id;
  }

  async mountIdFor(header: string | undefined): Promise<string> {
    if (header) {
      if (!(await this.meta.getMount(header))) throw new NamespaceError('MOUNT_NOT_FOUND', `No mount ${header}`);
      return header;
    }
    if (!this.defaultMountId) throw new NamespaceError('MOUNT_NOT_FOUND', 'No default mount');
    return this.defaultMountId;
  }

  /** Mounts with where they are mounted: by this process's agent and by every connected agent on another node. */
  async listMounts(): Promise<Mount[]> {
    const out: Mount[] = [];
    for (const m of await this.meta.listMounts()) {
      const local = this.agents.forMount(m.id).map((a) => a.mountpoint);
      const remote = (await this.hub.list(m.id)).filter((a) => a.connected).map((a) => a.mountpoint);
      out.push({ ...m, mountpoints: [...new Set([...local, ...remote].filter((p): p is string => !!p))] });
    }
    return out;
  }

  async createMount(name: unknown): Promise<Mount> {
    const n = validateName(name);
    const m = await this.meta.createMount({ id: ids.mount(), name: n, store: this.store.description, createdAt: new Date().toISOString() });
    return { ...m, mountpoints: [] };
  }

  // ---- Auto-commit rules ----------------------------------------------------------

  async autoCommitRules(mountId: string): Promise<AutoCommitRules> {
    return toAutoCommitRules(await this.meta.getAutoCommitRules(mountId));
  }

  /** `GET /v1/mounts/{mountId}/auto-commit`. */
  async getAutoCommitRules(mountId: string): Promise<AutoCommitRules> {
    return this.autoCommitRules(await this.mountIdFor(mountId));
  }

  /**
   * `PUT /v1/mounts/{mountId}/auto-commit`: replaces the list, every rule checked by the
   * parser `roset-mount` uses. With `expectedVersion`, only if the list is still at that
   * version (AUTO_COMMIT_CONFLICT otherwise), so that adding one rule never drops
   * another added meanwhile.
   */
  async setAutoCommitRules(mountIdParam: string, body: { rules?: unknown; expectedVersion?: unknown }, by: string): Promise<AutoCommitRules> {
    const mountId = await this.mountIdFor(mountIdParam);
    const rules = parseRuleList(body.rules).map((r) => r.text);
    const ev = body.expectedVersion;
    if (ev !== undefined && (typeof ev !== 'number' || !Number.isSafeInteger(ev) || ev < 0)) throw new ApiError('BAD_REQUEST', 'expectedVersion must be a non-negative integer');
    const set = await this.meta.setAutoCommitRules(mountId, rules, ev, new Date().toISOString(), by);
    if (!set) {
      const cur = await this.meta.getAutoCommitRules(mountId);
      throw new ApiError('AUTO_COMMIT_CONFLICT', `The auto-commit rules are at version ${cur.version}, not ${String(ev)}: read them again`, { version: cur.version });
    }
    const out = toAutoCommitRules(set);
    this.log.info({ mountId, rules, version: set.version, by }, 'auto-commit rules set');
    for (const l of this.ruleListeners) l(out);
    // Agents of this mount waiting in a poll answer now with the new version; agents
    // polling another process on the database see it at that poll's next re-read.
    for (const a of await this.meta.listAgents(mountId)) this.bus.wakeAgent(a.id);
    return out;
  }

  /** Calls `listener` with a mount's rules after every change made through this process; returns the unsubscribe. */
  onAutoCommitRules(listener: (r: AutoCommitRules) => void): () => void {
    this.ruleListeners.add(listener);
    return () => { this.ruleListeners.delete(listener); };
  }

  // ---- Namespace: the data plane (by id) ---------------------------------------------

  async root(mountId: string): Promise<NodeRecord> {
    return this.meta.root(mountId);
  }

  async lookupChild(parentId: string, name: string): Promise<NodeRecord | null> {
    return this.meta.lookup(parentId, name);
  }

  async lookupById(mountId: string, id: string): Promise<NodeRecord | null> {
    const n = await this.meta.getNode(id);
    return n && n.mountId === mountId && !n.deletedAt ? n : null;
  }

  async nodeForWrite(mountId: string, id: string): Promise<{ node: NodeRecord; barrier: Barrier | null } | null> {
    const r = await this.meta.getNodeForWrite(id);
    return r && r.node.mountId === mountId ? r : null;
  }

  async children(nodeId: string): Promise<NodeRecord[]> {
    return this.meta.listChildren(nodeId);
  }

  async countSubfolders(nodeId: string): Promise<number> {
    return this.meta.countSubfolders(nodeId);
  }

  async createChild(n: NewNode): Promise<NodeRecord> {
    return this.meta.createNode({ ...n, name: validateName(n.name) });
  }

  /**
   * unlink and rmdir. rmdir of a committed folder (the folder a commit sealed, not a
   * folder inside it) takes it out of the namespace as a whole: the API's soft delete,
   * whose transaction refuses inside a committed folder, while a ref points at the
   * folder's commit, and while anything in it is sealing. Anything else inside a
   * committed folder is refused (COMMITTED) by `removeNode`, so no file ever leaves a
   * committed folder that stays: see docs/SEMANTICS.md, "Removing committed folders".
   */
  async removeChild(mountId: string, parentId: string, name: string, type: NodeType): Promise<NodeRecord> {
    if (type === 'folder') {
      const n = await this.meta.lookup(parentId, name);
      if (n && n.mountId === mountId && n.type === 'folder' && n.state === 'committed' && n.parentId === parentId) {
        return this.softDelete(n, 'rmdir');
      }
    }
    const gone = await this.meta.removeNode(mountId, parentId, name, type);
    // A pin left behind would only keep an object longer.
    if (gone.type === 'file') await this.meta.unpinNode(gone.id);
    return gone;
  }

  async pinObject(mountId: string, agentId: string, nodeId: string, sha256: string): Promise<boolean> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new ApiError('BAD_REQUEST', 'sha256 must be 64 lowercase hex digits');
    void mountId;
    return this.meta.pinObject({ agentId, nodeId, sha256, at: new Date().toISOString() });
  }

  /** The soft delete of a live node; a refusal because a ref holds it is logged. */
  private async softDelete(n: NodeRecord, via: 'rmdir' | 'api'): Promise<NodeRecord> {
    try {
      return await this.meta.softDeleteNode(n.id, new Date().toISOString());
    } catch (err) {
      if (err instanceof RosetError && err.rosetCode === 'REFERENCED_BY_REF') {
        this.log.warn({ node: n.id, name: n.name, via, err: err.message }, 'delete refused: a ref points at this folder');
      }
      throw err;
    }
  }

  async moveChild(req: MoveRequest): Promise<{ node: NodeRecord; replaced: NodeRecord | null }> {
    return this.meta.moveNode({ ...req, dstName: validateName(req.dstName) });
  }

  async setNodeAttrs(mountId: string, id: string, attrs: AttrChange, guard: Guard): Promise<NodeRecord> {
    return this.meta.setAttrs(mountId, id, attrs, guard);
  }

  async assertWritable(mountId: string, id: string): Promise<void> {
    const r = await this.nodeForWrite(mountId, id);
    if (!r) throw new NamespaceError('NODE_NOT_FOUND', `No node ${id}`);
    if (r.barrier) throw await this.barrierError(r.barrier);
  }

  /** The error a change refused by `b` answers. */
  async barrierError(b: Barrier): Promise<NamespaceError> {
    return barrierError(b, (await this.meta.pathOf(b.nodeId)) ?? b.nodeId);
  }

  async subtree(folderId: string): Promise<SubtreeNode[]> {
    return this.meta.listSubtree(folderId);
  }

  async pathOf(id: string): Promise<string | null> {
    return this.meta.pathOf(id);
  }

  async resolvePath(mountId: string, path: string): Promise<NodeWithPath | null> {
    return this.meta.resolvePath(mountId, normalizePath(path));
  }

  // ---- Namespace: the API (paths resolved here, once) --------------------------------

  async resolve(mountId: string, paths: unknown): Promise<Record<string, Node | null>> {
    if (!Array.isArray(paths) || paths.length > 1000) throw new ApiError('BAD_REQUEST', 'paths must be an array of at most 1000 strings');
    const out: Record<string, Node | null> = {};
    for (const p of paths) {
      const n = await this.meta.resolvePath(mountId, normalizePath(p));
      out[p as string] = n ? toNode(n) : null;
    }
    return out;
  }

  async getNode(mountId: string, id: string): Promise<NodeWithPath> {
    const n = await this.meta.getNode(id);
    if (!n || n.mountId !== mountId) throw new NamespaceError('NODE_NOT_FOUND', `No node ${id}`);
    const path = await this.meta.pathOf(id);
    if (path === null) throw new NamespaceError('NODE_NOT_FOUND', `No node ${id}`);
    return { ...n, path };
  }

  async listChildrenPage(mountId: string, id: string, cursor: string | undefined, limit: number): Promise<{ items: NodeWithPath[]; nextCursor: string | null }> {
    const n = await this.getNode(mountId, id);
    if (n.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', `${n.path} is not a folder`);
    const items = await this.meta.listChildren(id, { cursor, limit: limit + 1 });
    const more = items.length > limit;
    const page = items.slice(0, limit).map((c) => ({ ...c, path: joinPath(n.path, c.name) }));
    return { items: page, nextCursor: more ? page[page.length - 1]!.name : null };
  }

  /**
   * `POST /v1/nodes`: creates a folder, with any missing folders above it (as `mkdir
   * -p`, so the seed SDK's `create_folder(parent, name)` works on a fresh mount).
   * Creating an existing leaf is NODE_EXISTS. Files are written through a mount, which
   * stages their bytes and owns them; a file made here would have no owner able to
   * commit it, so it is refused.
   */
  async createNode(req: { mountId: string; parentPath?: unknown; parentId?: unknown; name: unknown; type: unknown }): Promise<NodeWithPath> {
    const name = validateName(req.name);
    if (req.type === 'file') throw new ApiError('FILE_CREATE_NOT_SUPPORTED', 'Files are created by writing them through a mount (open, write, close); the API creates folders only');
    if (req.type !== 'folder') throw new ApiError('BAD_REQUEST', 'type must be "folder"');
    let parent: NodeWithPath | null;
    if (req.parentId !== undefined && req.parentId !== null) {
      if (typeof req.parentId !== 'string') throw new ApiError('BAD_REQUEST', 'parentId must be a string');
      const p = await this.meta.getNodeWithPath(req.parentId);
      parent = p && p.mountId === req.mountId ? p : null;
      if (!parent) throw new NamespaceError('NODE_NOT_FOUND', 'The parent folder does not exist');
    } else if (req.parentPath !== undefined) {
      parent = await this.ensureFolders(req.mountId, normalizePath(req.parentPath));
    } else {
      throw new ApiError('BAD_REQUEST', 'parentPath or parentId is required');
    }
    const n = await this.meta.createNode({ mountId: req.mountId, parentId: parent.id, name, type: 'folder', mode: DEFAULT_DIR_MODE, ...API_OWNER, ownerAgent: null });
    return { ...n, path: joinPath(parent.path, name) };
  }

  /** The folder at `path`, creating missing folders on the way (each create checks the barrier). */
  private async ensureFolders(mountId: string, path: string): Promise<NodeWithPath> {
    let cur: NodeWithPath = { ...(await this.meta.root(mountId)), path: '/' };
    for (const name of path.split('/').filter(Boolean)) {
      let next = await this.meta.lookup(cur.id, name);
      if (!next) {
        try {
          next = await this.meta.createNode({ mountId, parentId: cur.id, name, type: 'folder', mode: DEFAULT_DIR_MODE, ...API_OWNER, ownerAgent: null });
        } catch (err) {
          // Created meanwhile by someone else: use theirs.
          if (!(err instanceof NamespaceError && err.rosetCode === 'NODE_EXISTS')) throw err;
          next = await this.meta.lookup(cur.id, name);
          if (!next) throw err;
        }
      }
      const childPath = joinPath(cur.path, name);
      if (next.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', `${childPath} is not a folder`, { path: childPath });
      cur = { ...next, path: childPath };
    }
    return cur;
  }

  /** API soft delete: the node goes to the trash; staged or committed data stays until purged. */
  async deleteNode(mountId: string, id: string): Promise<NodeWithPath> {
    const n = await this.getNode(mountId, id);
    // A well-formed request that the root's role refuses: a 409 like rmdir of the root,
    // not a 400, which would tell the client its request was malformed.
    if (!n.parentId) throw new NamespaceError('CROSS_DEVICE', 'The root folder cannot be deleted');
    if (n.deletedAt) return n;
    const gone = await this.softDelete(n, 'api');
    return { ...gone, path: n.path };
  }

  registerAgent(agent: Agent): void {
    this.agents.register(agent);
  }

  unregisterAgent(id: string): void {
    this.agents.unregister(id);
  }

  // ---- Commits ------------------------------------------------------------------

  async commit(mountId: string, nodeId: string, body: { message?: unknown; groupId?: unknown }): Promise<CommitRecord> {
    if (body.message !== undefined && body.message !== null && typeof body.message !== 'string') throw new ApiError('BAD_REQUEST', 'message must be a string');
    if (typeof body.message === 'string' && body.message.length > 4096) throw new ApiError('BAD_REQUEST', 'message is longer than 4096 characters');
    if (body.groupId !== undefined && body.groupId !== null && typeof body.groupId !== 'string') throw new ApiError('BAD_REQUEST', 'groupId must be a string');
    const node = await this.getNode(mountId, nodeId);
    if (node.deletedAt) throw new NamespaceError('NODE_NOT_FOUND', `${node.path} is deleted`);
    if (node.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', 'Only folders can be committed');
    const groupId = (body.groupId as string | undefined) ?? null;
    if (groupId) {
      const g = await this.meta.getGroup(groupId);
      if (!g || g.mountId !== mountId) throw new CommitError('GROUP_NOT_FOUND', `No commit group ${groupId}`);
      if (g.status !== 'pending' || g.sealedAt) throw new CommitError('GROUP_NOT_PENDING', `Commit group ${groupId} is already sealed`);
    }
    // The barrier rises in beginCommit's transaction, which also refuses a commit inside
    // a committed folder or around or inside one that is sealing.
    const parent = await this.meta.latestCompletedCommit(mountId);
    const commit = await this.meta.beginCommit({
      id: ids.commit(), mountId, nodeId: node.id, path: node.path, message: (body.message as string | undefined) ?? '', groupId,
      parentCommitId: parent?.id ?? null, phase: 'sealing', error: null,
      stats: { files: 0, bytes: 0, uploadedBytes: 0, dedupedBytes: 0 }, createdAt: new Date().toISOString(), completedAt: null,
    });
    this.engine.start(commit);
    return commit;
  }

  async getCommit(mountId: string, id: string): Promise<CommitRecord> {
    const c = await this.meta.getCommit(id);
    if (!c || c.mountId !== mountId) throw new CommitError('COMMIT_NOT_FOUND', `No commit ${id}`);
    return c;
  }

  async listCommits(mountId: string, q: { nodeId?: string; status?: string; cursor?: string; limit: number }): Promise<{ items: CommitRecord[]; nextCursor: string | null }> {
    let phases: CommitPhase[] | undefined;
    switch (q.status) {
      case undefined: break;
      case 'pending': phases = ['sealing', 'uploading', 'manifested']; break;
      case 'completed': phases = ['completed']; break;
      case 'failed': phases = ['failed']; break;
      default: throw new ApiError('BAD_REQUEST', 'status must be pending, completed or failed');
    }
    if (q.cursor !== undefined && !/^\d{1,15}$/.test(q.cursor)) throw new ApiError('BAD_REQUEST', 'Invalid cursor');
    const items = await this.meta.listCommits(mountId, { nodeId: q.nodeId, phases }, { cursor: q.cursor, limit: q.limit + 1 });
    const more = items.length > q.limit;
    const page = items.slice(0, q.limit);
    const last = page[page.length - 1];
    return { items: page, nextCursor: more && last ? await this.meta.commitCursor(last.id) : null };
  }

  async getManifest(mountId: string, id: string): Promise<Manifest> {
    const c = await this.getCommit(mountId, id);
    if (c.phase !== 'manifested' && c.phase !== 'completed') throw new CommitError('COMMIT_NOT_COMPLETED', `Commit ${id} has no manifest (${toCommit(c).status})`);
    if (c.purgedAt) throw new CommitError('COMMIT_PURGED', `Commit ${id} was purged by garbage collection: its manifest is gone`);
    return JSON.parse((await this.store.get(manifestKey(id))).toString('utf8')) as Manifest;
  }

  // ---- Garbage collection -------------------------------------------------------

  /**
   * One garbage collection (src/commit/gc.ts) over every mount of the metadata store,
   * under the gc lease; GC_RUNNING while another runs. Body: `keepLast` (integer ≥ 0),
   * `keepWithinSeconds` (default 7 days), `graceSeconds` (default 24 h),
   * `pinExpirySeconds` (default 7 days; a smaller value than the agent timeout counts as
   * the agent timeout: a connected agent never looks expired), `dryRun`.
   */
  async gc(body: Record<string, unknown>, onProgress?: (p: GcProgress) => void): Promise<GcReport> {
    const num = (k: string, dflt: number | undefined, int: boolean): number | undefined => {
      const v = body[k];
      if (v === undefined) return dflt;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > GC_MAX_SECONDS || (int && !Number.isInteger(v))) {
        throw new ApiError('BAD_REQUEST', `${k} must be a number from 0 to ${GC_MAX_SECONDS}${int ? ' (an integer)' : ''}`);
      }
      return v;
    };
    const unknown = Object.keys(body).filter((k) => !['keepLast', 'keepWithinSeconds', 'graceSeconds', 'pinExpirySeconds', 'dryRun'].includes(k));
    if (unknown.length > 0) throw new ApiError('BAD_REQUEST', `Unknown field ${JSON.stringify(unknown[0]).slice(0, 64)}`);
    const keepLast = num('keepLast', undefined, true);
    const keepWithinMs = num('keepWithinSeconds', 7 * 86400, false)! * 1000;
    const graceMs = num('graceSeconds', 86400, false)! * 1000;
    // Never below the agent timeout: a connected agent is heard within it, so it never
    // looks gone (expiring one would be safe, see gc.ts, but would make it upload again).
    const pinExpiryMs = Math.max(num('pinExpirySeconds', 7 * 86400, false)! * 1000, this.agentTimeoutMs);
    if (body.dryRun !== undefined && typeof body.dryRun !== 'boolean') throw new ApiError('BAD_REQUEST', 'dryRun must be a boolean');
    if (this.gcRunning) throw new CommitError('GC_RUNNING', 'A garbage collection is running in this process');
    this.gcRunning = true;
    const startedAt = new Date().toISOString();
    const dryRun = body.dryRun === true;
    this.gcProgress = { phase: 'keep-last', done: 0, total: 0, startedAt, dryRun };
    try {
      const report = await runGc(this.meta, this.store, {
        keepLast, keepWithinMs, graceMs, pinExpiryMs, dryRun, holder: `gc:${this.holder}`, log: this.log,
        onProgress: (p) => { this.gcProgress = { ...p, startedAt, dryRun }; onProgress?.(p); },
      });
      this.log.info({ dryRun: report.dryRun, purged: report.purged.length, objectsDeleted: report.objectsDeleted, bytesFreed: report.bytesFreed, pinsExpired: report.pinsExpired }, 'garbage collection done');
      return report;
    } finally {
      this.gcRunning = false;
      this.gcProgress = null;
    }
  }

  /** The run of this process now: its step and how far it is; `running: false` when none runs here. */
  gcStatus(): { running: boolean; phase?: GcProgress['phase']; done?: number; total?: number; startedAt?: string; dryRun?: boolean } {
    return this.gcProgress ? { running: true, ...this.gcProgress } : { running: false };
  }

  /**
   * Runs gc with its defaults every `intervalMs` (`--gc-interval`), until
   * `stopGcSchedule`. A run that finds another one holding the lease (here or in another
   * process sharing the metadata) is skipped; a failed run is logged and the next one
   * starts on time.
   */
  startGcSchedule(intervalMs: number): void {
    this.stopGcSchedule();
    const tick = (): void => {
      this.gc({}).catch((err: unknown) => {
        const code = (err as RosetError).rosetCode;
        if (code === 'GC_RUNNING') this.log.info('scheduled garbage collection skipped: another one is running');
        else this.log.warn({ code, err: (err as Error).message }, 'scheduled garbage collection failed');
      });
    };
    this.gcTimer = setInterval(tick, intervalMs);
    this.gcTimer.unref();
  }

  stopGcSchedule(): void {
    if (this.gcTimer) clearInterval(this.gcTimer);
    this.gcTimer = null;
  }

  // ---- Refs ---------------------------------------------------------------------

  private refName(name: string): string {
    if (!REF_NAME.test(name)) throw new CommitError('INVALID_REF_NAME', `Invalid ref name ${JSON.stringify(name)}`);
    return name;
  }

  async getRef(mountId: string, name: string): Promise<Ref> {
    const r = await this.meta.getRef(mountId, this.refName(name));
    if (!r) throw new CommitError('REF_NOT_FOUND', `No ref ${name}`);
    return this.toRef(r);
  }

  async listRefs(mountId: string): Promise<Ref[]> {
    return Promise.all((await this.meta.listRefs(mountId)).map((r) => this.toRef(r)));
  }

  async setRef(mountId: string, name: string, body: { commitId?: unknown; expectedCommitId?: unknown }, by: string): Promise<Ref> {
    this.refName(name);
    if (typeof body.commitId !== 'string') throw new ApiError('BAD_REQUEST', 'commitId is required');
    if (body.expectedCommitId !== undefined && body.expectedCommitId !== null && typeof body.expectedCommitId !== 'string') {
      throw new ApiError('BAD_REQUEST', 'expectedCommitId must be a string or null');
    }
    const c = await this.meta.getCommit(body.commitId);
    if (!c || c.mountId !== mountId) throw new CommitError('COMMIT_NOT_FOUND', `No commit ${body.commitId}`);
    if (c.phase !== 'completed') throw new CommitError('COMMIT_NOT_COMPLETED', `Commit ${c.id} is ${toCommit(c).status}; a ref can only point at a completed commit`);
    // Checked again by the metadata store in the transaction that moves the ref.
    if (c.purgedAt) throw new CommitError('COMMIT_PURGED', `Commit ${c.id} was purged by garbage collection`);
    const rec: RefRecord = { mountId, name, commitId: c.id, updatedAt: new Date().toISOString(), updatedBy: by };
    const set = await this.meta.setRef(rec, body.expectedCommitId as string | null | undefined);
    if (!set) {
      const cur = await this.meta.getRef(mountId, name);
      throw new CommitError('REF_CONFLICT', `Ref ${name} points at ${cur?.commitId ?? 'nothing'}, not ${String(body.expectedCommitId)}`,
        { currentCommitId: cur?.commitId ?? null });
    }
    await this.mirrorRef(rec);
    return this.toRef(set);
  }

  async deleteRef(mountId: string, name: string, by: string): Promise<void> {
    this.refName(name);
    if (!(await this.meta.deleteRef(mountId, name, by, new Date().toISOString()))) throw new CommitError('REF_NOT_FOUND', `No ref ${name}`);
    try {
      await this.store.delete(refKey(name));
    } catch (err) {
      this.log.error({ ref: name, err: (err as Error).message }, 'could not delete the ref mirror from the bucket');
    }
  }

  async refLog(mountId: string, name: string): Promise<RefLogEntry[]> {
    this.refName(name);
    const log = await this.meta.refLog(mountId, name);
    if (log.length === 0) throw new CommitError('REF_NOT_FOUND', `No ref ${name}`);
    return log.map(({ seq: _seq, ...e }) => e);
  }

  /**
   * The bucket's ref mirror makes the bucket recoverable on its own. The metadata
   * store is the authority: a failed mirror write is logged and repaired by the next
   * move or by `resyncRefMirrors` at start.
   */
  private async mirrorRef(r: RefRecord): Promise<void> {
    try {
      await this.store.put(refKey(r.name), `${JSON.stringify({ name: r.name, commitId: r.commitId, updatedAt: r.updatedAt })}\n`);
    } catch (err) {
      this.log.error({ ref: r.name, err: (err as StoreError).message }, 'could not mirror the ref to the bucket');
    }
  }

  async resyncRefMirrors(mountId: string): Promise<void> {
    for (const r of await this.meta.listRefs(mountId)) await this.mirrorRef(r);
  }

  private async toRef(r: RefRecord): Promise<Ref> {
    const c = await this.meta.getCommit(r.commitId);
    if (!c) throw new CommitError('INTERNAL', `Ref ${r.name} points at a missing commit`);
    return { name: r.name, mountId: r.mountId, commitId: r.commitId, commit: toCommit(c), updatedAt: r.updatedAt, updatedBy: r.updatedBy };
  }

  // ---- Commit groups ------------------------------------------------------------

  async createGroup(mountId: string, body: { message?: unknown }): Promise<CommitGroup> {
    if (body.message !== undefined && body.message !== null && typeof body.message !== 'string') throw new ApiError('BAD_REQUEST', 'message must be a string');
    const g: GroupRecord = { id: ids.group(), mountId, message: (body.message as string | undefined) ?? '', status: 'pending', createdAt: new Date().toISOString(), sealedAt: null, committedAt: null };
    await this.meta.createGroup(g);
    return this.toGroup(g);
  }

  async getGroup(mountId: string, id: string): Promise<CommitGroup> {
    const g = await this.meta.getGroup(id);
    if (!g || g.mountId !== mountId) throw new CommitError('GROUP_NOT_FOUND', `No commit group ${id}`);
    return this.toGroup(g);
  }

  async sealGroup(mountId: string, id: string): Promise<CommitGroup> {
    await this.getGroup(mountId, id);
    const sealed = await this.meta.markGroupSealed(id, new Date().toISOString());
    if (!sealed) throw new CommitError('GROUP_NOT_PENDING', `Commit group ${id} is already sealed`);
    await this.engine.tryCompleteGroup(id);
    return this.getGroup(mountId, id);
  }

  private async toGroup(g: GroupRecord): Promise<CommitGroup> {
    const commits = await this.meta.listGroupCommits(g.id);
    return { id: g.id, message: g.message, status: g.status, commitIds: commits.map((c) => c.id), createdAt: g.createdAt, committedAt: g.committedAt, sealedAt: g.sealedAt };
  }

  // ---- API keys -----------------------------------------------------------------

  async createApiKey(name: unknown): Promise<{ token: string; record: ApiKeyRecord }> {
    const token = `rsk_${randomBytes(24).toString('base64url')}`;
    const record: ApiKeyRecord = { id: ids.apiKey(), name: validateKeyName(name), hash: hashToken(token), createdAt: new Date().toISOString(), revokedAt: null };
    await this.meta.insertApiKey(record);
    return { token, record };
  }

  /**
   * Every key, revoked ones included, oldest first. Keys are only ever added (a revoked
   * key stays listed), so the cursor is a plain offset: digits, as commits use.
   */
  async listApiKeys(cursor: string | undefined, limit: number): Promise<{ items: ApiKey[]; nextCursor: string | null }> {
    if (cursor !== undefined && !/^\d{1,15}$/.test(cursor)) throw new ApiError('BAD_REQUEST', 'Invalid cursor');
    const start = cursor === undefined ? 0 : Number(cursor);
    const all = await this.meta.listApiKeys();
    const items = all.slice(start, start + limit).map(toApiKey);
    return { items, nextCursor: start + limit < all.length ? String(start + limit) : null };
  }

  /**
   * Revokes a key: it is refused from the next request on. Revoking a revoked key
   * changes nothing and answers the key as it is (so a resent request succeeds).
   */
  async revokeApiKey(id: string): Promise<ApiKey> {
    await this.meta.revokeApiKey(id, new Date().toISOString());
    const key = (await this.meta.listApiKeys()).find((k) => k.id === id);
    if (!key) throw new ApiError('KEY_NOT_FOUND', `No API key ${id}`);
    return toApiKey(key);
  }

  /** The live key matching `token`, compared in constant time against every stored hash. */
  async verifyApiKey(token: string): Promise<ApiKeyRecord | null> {
    const key = await this.lookupApiKey(token);
    return key && !key.revokedAt ? key : null;
  }

  /**
   * The key matching `token`, revoked or not (a live one first), so that a revoked key
   * can be told apart from a wrong one. Every stored hash is compared, live and revoked.
   */
  async lookupApiKey(token: string): Promise<ApiKeyRecord | null> {
    const keys = await this.meta.listApiKeys();
    const live = keys.filter((k) => !k.revokedAt);
    const revoked = keys.filter((k) => k.revokedAt);
    const candidate = Buffer.from(hashToken(token), 'hex');
    const i = matchKeyHash(candidate, live.map((k) => Buffer.from(k.hash, 'hex')));
    const j = matchKeyHash(candidate, revoked.map((k) => Buffer.from(k.hash, 'hex')));
    return i >= 0 ? live[i]! : j >= 0 ? revoked[j]! : null;
  }
}

/** Key names: 1-128 characters, none a control character (NUL, newline, DEL, ...) or half a surrogate pair. */
export function validateKeyName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || [...name].length > 128 || /[\p{Cc}\p{Cs}]/u.test(name)) {
    throw new ApiError('INVALID_KEY_NAME', 'name must be a string of 1-128 characters, none of them a control character');
  }
  return name;
}

export function toApiKey(k: ApiKeyRecord): ApiKey {
  return { id: k.id, name: k.name, createdAt: k.createdAt, revokedAt: k.revokedAt };
}

/** What is stored for an API key: the sha256 of the token, in hex. The token itself is never stored. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * The index of the first stored hash equal to `candidate`, or -1.
 *
 * Every stored hash is compared, with `timingSafeEqual` and no early exit, so the time
 * taken tells a caller neither which key matched, nor whether one did, nor how close a
 * guess came. A stored hash of the wrong length (never written by `hashToken`) counts
 * as a mismatch but still costs one comparison, against a zero buffer, since
 * `timingSafeEqual` throws on unequal lengths. `equal` is a parameter only so that
 * tests can count the comparisons.
 */
export function matchKeyHash(candidate: Buffer, stored: readonly Buffer[], equal: (a: Buffer, b: Buffer) => boolean = timingSafeEqual): number {
  let found = -1;
  for (let i = 0; i < stored.length; i++) {
    const s = stored[i]!;
    const sameLength = s.length === candidate.length;
    const same = equal(candidate, sameLength ? s : Buffer.alloc(candidate.length)) && sameLength;
    if (same && found < 0) found = i;
  }
  return found;
}

export function toNode(n: NodeWithPath): Node {
  return {
    id: n.id, mountId: n.mountId, parentId: n.parentId, path: n.path, name: n.name, type: n.type, size: n.size, state: n.state,
    commitId: n.commitId, createdAt: n.createdAt, updatedAt: n.updatedAt, deletedAt: n.deletedAt,
  };
}

export function toCommit(c: CommitRecord): Commit {
  let status: Commit['status'];
  switch (c.phase) {
    case 'sealing': case 'uploading': case 'manifested': status = 'pending'; break;
    case 'completed': status = 'completed'; break;
    case 'failed': status = 'failed'; break;
    default: { const never: never = c.phase; throw new Error(`unknown phase ${String(never)}`); }
  }
  return {
    id: c.id, mountId: c.mountId, nodeId: c.nodeId, path: c.path, message: c.message, groupId: c.groupId, status, error: c.error,
    stats: c.stats, progress: status === 'pending' ? progressOf(c) : null, createdAt: c.createdAt, completedAt: c.completedAt,
    purgedAt: c.purgedAt ?? null,
  };
}

/** A pending commit's progress; before its driver's first report, zeros in the phase it is in. */
function progressOf(c: CommitRecord): CommitProgress {
  if (c.progress) return c.progress;
  return { phase: c.phase === 'sealing' ? 'sealing' : c.phase === 'manifested' ? 'manifest' : 'uploading', filesTotal: 0, filesDone: 0, bytesTotal: 0, bytesUploaded: 0 };
}

/** The wire form of a mount's rules; each kept text parses, as it was checked when set. */
export function toAutoCommitRules(r: AutoCommitRulesRecord): AutoCommitRules {
  return {
    mountId: r.mountId,
    rules: r.rules.map((text) => {
      const p = parseAutoCommitRule(text);
      return { rule: text, folders: p.glob, marker: p.marker, ref: p.ref };
    }),
    version: r.version, updatedAt: r.updatedAt, updatedBy: r.updatedBy,
  };
}
