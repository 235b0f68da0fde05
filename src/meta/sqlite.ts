/**
 * SQLite implementation of the control-plane MetadataStore (the embedded default).
 *
 * Owns: `<stateDir>/metadata.db` (WAL). The schema and its migrations are in
 * `sqlite-schema.ts` and run at open.
 *
 * Invariants:
 * - Each interface method runs in one SQLite transaction, so a reader never sees a
 *   commit completed without its folder, or a ref moved without its log entry.
 * - The write barrier is checked inside the transaction that makes a change (`guarded`,
 *   `barrierIn`): better-sqlite3 is synchronous and a write transaction is
 *   `BEGIN IMMEDIATE`, so nothing can raise a barrier between the check and the change,
 *   in this process or in another one sharing the file.
 * - The tree is edges: ancestry and subtrees are recursive queries over `parent_id`,
 *   names are compared with `=` (bytes). No path string is stored for a node.
 */
import { Database, statementCache, type Database as Db, type Statement } from '../util/sqlite-driver.js';
import { CommitError, NamespaceError } from '../errors/index.js';
import { newId } from './ids.js';
import { barrierError, folderDeleted, refHeld } from './barrier.js';
import { migrate } from './sqlite-schema.js';
import type { CommitErrorInfo, CommitProgress, CommitStats, NodeState, NodeType } from '../api/types.js';
import {
  nowTimespec,
  type AgentRecord, type AgentTaskKind, type AutoCommitRulesRecord, type AgentTaskRecord, type ApiKeyRecord, type AttrChange, type Barrier, type CommitPhase, type CommitRecord, type CommittedFile, type CommittedFolder, type PurgeCandidate, type PurgeOptions, type PurgeOutcome, type Cursor, type GroupRecord, type Guard,
  type MetadataStore, type MountRecord, type MoveRequest, type NewNode, type NodeRecord, type NodeWithPath, type RefLogRecord, type RefRecord,
  type SubtreeNode, type Timespec,
} from './types.js';

type Row = Record<string, unknown>;

function rulesFrom(mountId: string, r: Row | undefined): AutoCommitRulesRecord {
  if (!r) return { mountId, rules: [], version: 0, updatedAt: null, updatedBy: null };
  return { mountId, rules: JSON.parse(r.rules as string) as string[], version: r.version as number, updatedAt: r.updated_at as string, updatedBy: r.updated_by as string };
}

function nodeFrom(r: Row): NodeRecord {
  return {
    id: r.id as string, mountId: r.mount_id as string, parentId: (r.parent_id as string | null) ?? null,
    name: r.name as string, type: r.type as NodeRecord['type'], size: Number(r.size), mode: Number(r.mode), uid: Number(r.uid), gid: Number(r.gid),
    atime: { sec: Number(r.atime_s), nsec: Number(r.atime_ns) }, mtime: { sec: Number(r.mtime_s), nsec: Number(r.mtime_ns) },
    ctime: { sec: Number(r.ctime_s), nsec: Number(r.ctime_ns) },
    state: r.state as NodeState, commitId: (r.commit_id as string | null) ?? null, sha256: (r.sha256 as string | null) ?? null,
    ownerAgent: (r.owner_agent as string | null) ?? null, createdAt: r.created_at as string, updatedAt: r.updated_at as string,
    deletedAt: (r.deleted_at as string | null) ?? null,
    ...(r.subfolders === undefined ? {} : { subfolders: Number(r.subfolders) }),
  };
}

/** A node's columns and its live subfolder count (for st_nlink), in one read. */
const NODE = `n.*, (SELECT COUNT(*) FROM nodes c WHERE c.parent_id = n.id AND c.deleted_at IS NULL AND c.type = 'folder') AS subfolders`;

function commitFrom(r: Row): CommitRecord {
  return {
    id: r.id as string, mountId: r.mount_id as string, nodeId: r.node_id as string, path: r.path as string, message: r.message as string,
    groupId: (r.group_id as string | null) ?? null, parentCommitId: (r.parent_commit_id as string | null) ?? null,
    phase: r.phase as CommitPhase,
    error: r.error_code ? { code: r.error_code as string, message: (r.error_message as string) ?? '' } : null,
    stats: { files: Number(r.files), bytes: Number(r.bytes), uploadedBytes: Number(r.uploaded_bytes), dedupedBytes: Number(r.deduped_bytes) },
    progress: r.progress ? JSON.parse(r.progress as string) as CommitProgress : null,
    createdAt: r.created_at as string, completedAt: (r.completed_at as string | null) ?? null,
    purgedAt: (r.purged_at as string | null) ?? null,
  };
}

function refFrom(r: Row): RefRecord {
  return { mountId: r.mount_id as string, name: r.name as string, commitId: r.commit_id as string, updatedAt: r.updated_at as string, updatedBy: r.updated_by as string };
}

function groupFrom(r: Row): GroupRecord {
  return {
    id: r.id as string, mountId: r.mount_id as string, message: r.message as string, status: r.status as GroupRecord['status'],
    createdAt: r.created_at as string, sealedAt: (r.sealed_at as string | null) ?? null, committedAt: (r.committed_at as string | null) ?? null,
  };
}

/** The chain from a node up to its mount's root: `up(id, parent_id, state, deleted_at, name, depth)`. */
const UP = `WITH RECURSIVE up(id, parent_id, state, deleted_at, name, depth) AS (
  SELECT id, parent_id, state, deleted_at, name, 0 FROM nodes WHERE id = ?
  UNION ALL
  SELECT n.id, n.parent_id, n.state, n.deleted_at, n.name, up.depth + 1 FROM nodes n JOIN up ON n.id = up.parent_id
)`;

/** Live nodes strictly below a node, with paths relative to it: `down(id, rel)`. */
const DOWN = `WITH RECURSIVE down(id, rel) AS (
  SELECT id, name FROM nodes WHERE parent_id = ? AND deleted_at IS NULL
  UNION ALL
  SELECT n.id, down.rel || '/' || n.name FROM nodes n JOIN down ON n.parent_id = down.id WHERE n.deleted_at IS NULL
)`;

/** Every node at or below a node, soft-deleted ones included: `every(id)`. */
const EVERY = `WITH RECURSIVE every(id) AS (
  SELECT id FROM nodes WHERE id = ?
  UNION ALL
  SELECT n.id FROM nodes n JOIN every ON n.parent_id = every.id
)`;

/** The nearest non-staging node at or above `id` (itself first): what refuses a change. */
const BARRIER = `${UP} SELECT id, state FROM up WHERE state != 'staging' ORDER BY depth LIMIT 1`;

function agentFrom(r: Row): AgentRecord {
  return {
    id: r.id as string, mountId: r.mount_id as string, mountpoint: (r.mountpoint as string | null) ?? null, hostname: r.hostname as string,
    registeredAt: r.registered_at as string, lastSeenAt: r.last_seen_at as string,
  };
}

function taskFrom(r: Row): AgentTaskRecord {
  return {
    id: r.id as string, agentId: r.agent_id as string, commitId: r.commit_id as string, kind: r.kind as AgentTaskKind,
    args: JSON.parse(r.args as string) as Record<string, unknown>, status: r.status as AgentTaskRecord['status'],
    result: r.result === null || r.result === undefined ? null : JSON.parse(r.result as string),
    error: r.error ? JSON.parse(r.error as string) as AgentTaskRecord['error'] : null,
    createdAt: r.created_at as string, finishedAt: (r.finished_at as string | null) ?? null,
    progress: r.progress === null || r.progress === undefined ? null : JSON.parse(r.progress as string),
  };
}

const isoNow = (): string => new Date().toISOString();

export class SqliteMetadataStore implements MetadataStore {
  private readonly db: Db;
  private readonly prepared: (sql: string) => Statement;
  /**
   * Statements executed since open: tests count the metadata queries a filesystem
   * request costs.
   */
  queries = 0;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    migrate(this.db, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
    this.prepared = statementCache(this.db);
  }

  private stmt(sql: string): Statement {
    this.queries++;
    return this.prepared(sql);
  }

  private all(sql: string, ...params: unknown[]): Row[] {
    return this.stmt(sql).all(...params) as Row[];
  }

  private one(sql: string, ...params: unknown[]): Row | undefined {
    return this.stmt(sql).get(...params) as Row | undefined;
  }

  private run(sql: string, ...params: unknown[]): number {
    return this.stmt(sql).run(...params).changes;
  }

  /** Runs `fn` in a write transaction (BEGIN IMMEDIATE: the write lock is taken first). */
  private write<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  private barrierIn(id: string): Barrier | null {
    const b = this.one(BARRIER, id);
    return b ? { code: b.state === 'sealing' ? 'SEALED' : 'COMMITTED', nodeId: b.id as string } : null;
  }

  /** Throws the barrier's error for a change to `id` under `guard`. */
  private guarded(id: string, guard: Guard, what: string): void {
    if (guard === 'none') return;
    const b = this.barrierIn(id);
    if (!b || (guard === 'not-committed' && b.code === 'SEALED')) return;
    throw barrierError(b, this.pathIn(b.nodeId) ?? b.nodeId, what);
  }

  private pathIn(id: string): string | null {
    // A soft-deleted node keeps its edge: its path is where it was when it was deleted.
    const chain = this.all(`${UP} SELECT parent_id, name FROM up ORDER BY depth`, id);
    if (chain.length === 0 || chain[chain.length - 1]!.parent_id !== null) return null;
    const names = chain.slice(0, -1).map((r) => r.name as string).reverse();
    return `/${names.join('/')}`;
  }

  private liveNode(id: string): NodeRecord | null {
    const r = this.one(`SELECT ${NODE} FROM nodes n WHERE n.id = ? AND n.deleted_at IS NULL`, id);
    return r ? nodeFrom(r) : null;
  }

  private child(parentId: string, name: string): NodeRecord | null {
    const r = this.one(`SELECT ${NODE} FROM nodes n WHERE n.parent_id = ? AND n.name = ? AND n.deleted_at IS NULL`, parentId, name);
    return r ? nodeFrom(r) : null;
  }

  /** An entry changed in these folders: their mtime and ctime move (POSIX). */
  private touchFolders(ids: string[], t: Timespec, at: string): void {
    for (const id of new Set(ids)) {
      this.run('UPDATE nodes SET mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ?, updated_at = ? WHERE id = ?', t.sec, t.nsec, t.sec, t.nsec, at, id);
    }
  }

  async createMount(m: MountRecord): Promise<MountRecord> {
    const t = { sec: Math.floor(Date.parse(m.createdAt) / 1000), nsec: (Date.parse(m.createdAt) % 1000) * 1e6 };
    try {
      this.write(() => {
        this.run('INSERT INTO mounts (id, name, store, created_at) VALUES (?, ?, ?, ?)', m.id, m.name, m.store, m.createdAt);
        // Every mount has a root folder, the only node without a parent.
        this.run(`INSERT INTO nodes (id, mount_id, parent_id, name, type, size, mode, uid, gid, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns,
            state, created_at, updated_at)
          VALUES (?, ?, NULL, '', 'folder', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'staging', ?, ?)`,
        `root_${m.id}`, m.id, 0o40755, process.getuid?.() ?? 0, process.getgid?.() ?? 0, t.sec, t.nsec, t.sec, t.nsec, t.sec, t.nsec, m.createdAt, m.createdAt);
      });
    } catch (err) {
      if (String((err as Error).message).includes('UNIQUE')) throw new NamespaceError('NODE_EXISTS', `A mount named ${m.name} already exists`);
      throw err;
    }
    return m;
  }

  async getMount(id: string): Promise<MountRecord | null> {
    const r = this.one('SELECT * FROM mounts WHERE id = ?', id);
    return r ? { id: r.id as string, name: r.name as string, store: r.store as string, createdAt: r.created_at as string } : null;
  }

  async listMounts(): Promise<MountRecord[]> {
    return this.all('SELECT * FROM mounts ORDER BY created_at, id').map((r) => ({ id: r.id as string, name: r.name as string, store: r.store as string, createdAt: r.created_at as string }));
  }

  async getAutoCommitRules(mountId: string): Promise<AutoCommitRulesRecord> {
    return rulesFrom(mountId, this.one('SELECT * FROM mount_auto_commit WHERE mount_id = ?', mountId));
  }

  async setAutoCommitRules(mountId: string, rules: string[], expectedVersion: number | undefined, at: string, by: string): Promise<AutoCommitRulesRecord | null> {
    return this.write(() => {
      const cur = rulesFrom(mountId, this.one('SELECT * FROM mount_auto_commit WHERE mount_id = ?', mountId));
      if (expectedVersion !== undefined && expectedVersion !== cur.version) return null;
      const version = cur.version + 1;
      this.run(`INSERT INTO mount_auto_commit (mount_id, rules, version, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (mount_id) DO UPDATE SET rules = excluded.rules, version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
      mountId, JSON.stringify(rules), version, at, by);
      return { mountId, rules: [...rules], version, updatedAt: at, updatedBy: by };
    });
  }

  // ---- Nodes: reads ---------------------------------------------------------------

  async getNode(id: string): Promise<NodeRecord | null> {
    const r = this.one(`SELECT ${NODE} FROM nodes n WHERE n.id = ?`, id);
    return r ? nodeFrom(r) : null;
  }

  async lookup(parentId: string, name: string): Promise<NodeRecord | null> {
    return this.child(parentId, name);
  }

  async root(mountId: string): Promise<NodeRecord> {
    const r = this.one('SELECT * FROM nodes WHERE mount_id = ? AND parent_id IS NULL', mountId);
    if (!r) throw new NamespaceError('MOUNT_NOT_FOUND', `No mount ${mountId}`);
    return nodeFrom(r);
  }

  async resolvePath(mountId: string, path: string): Promise<NodeWithPath | null> {
    return this.db.transaction(() => {
      const r = this.one('SELECT * FROM nodes WHERE mount_id = ? AND parent_id IS NULL', mountId);
      if (!r) return null;
      let n: NodeRecord | null = nodeFrom(r);
      for (const name of path.split('/').filter(Boolean)) {
        n = this.child(n.id, name);
        if (!n) return null;
      }
      return { ...n, path };
    })();
  }

  async pathOf(id: string): Promise<string | null> {
    return this.pathIn(id);
  }

  async getNodeWithPath(id: string): Promise<NodeWithPath | null> {
    return this.db.transaction(() => {
      const n = this.liveNode(id);
      const path = n ? this.pathIn(id) : null;
      return n && path !== null ? { ...n, path } : null;
    })();
  }

  async listChildren(parentId: string, page?: Cursor): Promise<NodeRecord[]> {
    if (!page) return this.all('SELECT * FROM nodes WHERE parent_id = ? AND deleted_at IS NULL ORDER BY name', parentId).map(nodeFrom);
    return this.all('SELECT * FROM nodes WHERE parent_id = ? AND deleted_at IS NULL AND name > ? ORDER BY name LIMIT ?',
      parentId, page.cursor ?? '', page.limit).map(nodeFrom);
  }

  async listSubtree(id: string): Promise<SubtreeNode[]> {
    return this.all(`${DOWN} SELECT n.*, down.rel AS rel_path FROM down JOIN nodes n ON n.id = down.id ORDER BY down.rel`, id)
      .map((r) => ({ ...nodeFrom(r), relPath: r.rel_path as string }));
  }

  async hasDescendantInState(id: string, states: NodeState[]): Promise<boolean> {
    return this.descendantIn(id, states);
  }

  private descendantIn(id: string, states: NodeState[]): boolean {
    const marks = states.map(() => '?').join(',');
    return !!this.one(`${DOWN} SELECT 1 FROM down JOIN nodes n ON n.id = down.id WHERE n.state IN (${marks}) LIMIT 1`, id, ...states);
  }

  async countSubfolders(id: string): Promise<number> {
    return Number(this.one("SELECT COUNT(*) AS c FROM nodes WHERE parent_id = ? AND deleted_at IS NULL AND type = 'folder'", id)!.c);
  }

  async barrierOf(id: string): Promise<Barrier | null> {
    return this.barrierIn(id);
  }

  async getNodeForWrite(id: string): Promise<{ node: NodeRecord; barrier: Barrier | null } | null> {
    // One statement: the node and the nearest non-staging node above it.
    const r = this.one(`${UP}, b AS (SELECT id AS b_id, state AS b_state FROM up WHERE state != 'staging' ORDER BY depth LIMIT 1)
      SELECT ${NODE}, b.b_id, b.b_state FROM nodes n LEFT JOIN b ON 1 WHERE n.id = ? AND n.deleted_at IS NULL`, id, id);
    if (!r) return null;
    return { node: nodeFrom(r), barrier: r.b_id ? { code: r.b_state === 'sealing' ? 'SEALED' : 'COMMITTED', nodeId: r.b_id as string } : null };
  }

  // ---- Nodes: changes ---------------------------------------------------------------

  async createNode(n: NewNode): Promise<NodeRecord> {
    const t = n.time ?? nowTimespec();
    const now = isoNow();
    return this.write(() => {
      const p = this.one('SELECT id, mount_id, type FROM nodes WHERE id = ? AND deleted_at IS NULL', n.parentId);
      const parent = p ? { id: p.id as string, mountId: p.mount_id as string, type: p.type as NodeType } : null;
      if (!parent || parent.mountId !== n.mountId) throw new NamespaceError('NODE_NOT_FOUND', 'The parent folder does not exist');
      if (parent.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', `The parent of ${n.name} is not a folder`);
      this.guarded(parent.id, 'writable', `creating ${n.name}`);
      const existing = this.child(parent.id, n.name);
      if (existing) {
        if (existing.type === 'file' && n.type === 'file' && existing.ownerAgent && n.ownerAgent && existing.ownerAgent !== n.ownerAgent) {
          throw new NamespaceError('CONFLICT', `${n.name} is being written from another node`, { name: n.name });
        }
        throw new NamespaceError('NODE_EXISTS', `${n.name} already exists`, { name: n.name });
      }
      const rec: NodeRecord = {
        id: `node_${newId()}`, mountId: n.mountId, parentId: parent.id, name: n.name, type: n.type, size: 0, mode: n.mode, uid: n.uid, gid: n.gid,
        atime: t, mtime: t, ctime: t, state: 'staging', commitId: null, sha256: null, ownerAgent: n.ownerAgent, createdAt: now, updatedAt: now, deletedAt: null,
      };
      this.run(`INSERT INTO nodes (id, mount_id, parent_id, name, type, size, mode, uid, gid, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns,
          state, owner_agent, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'staging', ?, ?, ?)`,
      rec.id, rec.mountId, rec.parentId, rec.name, rec.type, rec.mode, rec.uid, rec.gid, t.sec, t.nsec, t.sec, t.nsec, t.sec, t.nsec, rec.ownerAgent, now, now);
      this.touchFolders([parent.id], t, now);
      return rec;
    });
  }

  async removeNode(mountId: string, parentId: string, name: string, type: NodeType): Promise<NodeRecord> {
    const t = nowTimespec();
    const now = isoNow();
    return this.write(() => {
      const parent = this.liveNode(parentId);
      if (!parent || parent.mountId !== mountId) throw new NamespaceError('NODE_NOT_FOUND', 'The parent folder does not exist');
      const n = this.child(parentId, name);
      if (!n) throw new NamespaceError('NODE_NOT_FOUND', `${name} does not exist`);
      if (type === 'file' && n.type === 'folder') throw new NamespaceError('IS_A_FOLDER', `${name} is a folder`);
      if (type === 'folder' && n.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', `${name} is not a folder`);
      // The node itself counts: a committed folder in a staging folder stays.
      this.guarded(n.id, 'writable', `removing ${name}`);
      if (n.type === 'folder' && this.one('SELECT 1 FROM nodes WHERE parent_id = ? AND deleted_at IS NULL LIMIT 1', n.id)) {
        throw new NamespaceError('FOLDER_NOT_EMPTY', `${name} is not empty`);
      }
      this.run('DELETE FROM nodes WHERE id = ?', n.id);
      this.touchFolders([parentId], t, now);
      return n;
    });
  }

  async moveNode(req: MoveRequest): Promise<{ node: NodeRecord; replaced: NodeRecord | null }> {
    const t = nowTimespec();
    const now = isoNow();
    return this.write(() => {
      const srcParent = this.liveNode(req.srcParentId);
      const dstParent = this.liveNode(req.dstParentId);
      if (!srcParent || srcParent.mountId !== req.mountId) throw new NamespaceError('NODE_NOT_FOUND', 'The source folder does not exist');
      if (!dstParent || dstParent.mountId !== req.mountId) throw new NamespaceError('NODE_NOT_FOUND', 'The destination folder does not exist');
      if (dstParent.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', 'The destination parent is not a folder');
      const src = this.child(req.srcParentId, req.srcName);
      if (!src) throw new NamespaceError('NODE_NOT_FOUND', `${req.srcName} does not exist`);
      // rename(p, p) changes nothing and succeeds, as on any POSIX file system.
      if (req.srcParentId === req.dstParentId && req.srcName === req.dstName) return { node: src, replaced: null };
      // The node itself counts (a committed folder keeps its place), and both folders.
      this.guarded(src.id, 'writable', `moving ${req.srcName}`);
      this.guarded(dstParent.id, 'writable', `moving into ${dstParent.name || '/'}`);
      if (src.type === 'folder') {
        if (this.all(`${UP} SELECT id FROM up`, dstParent.id).some((r) => r.id === src.id)) {
          throw new NamespaceError('INVALID_MOVE', `Cannot move ${req.srcName} into itself`);
        }
        if (this.descendantIn(src.id, ['sealing', 'committed'])) {
          throw new NamespaceError('CONTAINS_COMMITS', `${req.srcName} holds sealing or committed folders and cannot be moved`);
        }
      }
      const dest = this.child(req.dstParentId, req.dstName);
      if (dest) {
        if (req.noReplace) throw new NamespaceError('NODE_EXISTS', `${req.dstName} already exists`, { name: req.dstName });
        if (dest.type === 'folder' && src.type !== 'folder') throw new NamespaceError('IS_A_FOLDER', `${req.dstName} is a folder`);
        if (dest.type !== 'folder' && src.type === 'folder') throw new NamespaceError('NOT_A_FOLDER', `${req.dstName} is not a folder`);
        this.guarded(dest.id, 'writable', `replacing ${req.dstName}`);
        if (dest.type === 'folder' && this.one('SELECT 1 FROM nodes WHERE parent_id = ? AND deleted_at IS NULL LIMIT 1', dest.id)) {
          throw new NamespaceError('FOLDER_NOT_EMPTY', `${req.dstName} is not empty`);
        }
        this.run('DELETE FROM nodes WHERE id = ?', dest.id);
      }
      this.run('UPDATE nodes SET parent_id = ?, name = ?, ctime_s = ?, ctime_ns = ?, updated_at = ? WHERE id = ?',
        req.dstParentId, req.dstName, t.sec, t.nsec, now, src.id);
      this.touchFolders([req.srcParentId, req.dstParentId], t, now);
      return { node: { ...src, parentId: req.dstParentId, name: req.dstName, ctime: t, updatedAt: now }, replaced: dest };
    });
  }

  async setAttrs(mountId: string, id: string, attrs: AttrChange, guard: Guard): Promise<NodeRecord> {
    const t = nowTimespec();
    const now = isoNow();
    return this.write(() => {
      const n = this.liveNode(id);
      if (!n || n.mountId !== mountId) throw new NamespaceError('NODE_NOT_FOUND', `No node ${id}`);
      this.guarded(id, guard, `changing the attributes of ${n.name || '/'}`);
      const next: NodeRecord = {
        ...n, size: attrs.size ?? n.size, mode: attrs.mode === undefined ? n.mode : (n.mode & ~0o7777) | (attrs.mode & 0o7777), uid: attrs.uid ?? n.uid, gid: attrs.gid ?? n.gid,
        atime: attrs.atime ?? n.atime, mtime: attrs.mtime ?? n.mtime, ctime: t, updatedAt: now,
      };
      this.run(`UPDATE nodes SET size = ?, mode = ?, uid = ?, gid = ?, atime_s = ?, atime_ns = ?, mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ?,
          updated_at = ? WHERE id = ?`,
      next.size, next.mode, next.uid, next.gid, next.atime.sec, next.atime.nsec, next.mtime.sec, next.mtime.nsec, t.sec, t.nsec, now, id);
      return next;
    });
  }

  async softDeleteNode(id: string, at: string): Promise<NodeRecord> {
    return this.write(() => {
      const n = this.liveNode(id);
      if (!n) {
        const gone = this.one('SELECT * FROM nodes WHERE id = ?', id);
        if (gone) return nodeFrom(gone);
        throw new NamespaceError('NODE_NOT_FOUND', `No node ${id}`);
      }
      if (!n.parentId) throw new NamespaceError('CROSS_DEVICE', 'The root folder cannot be deleted');
      // Anything inside a committed or sealing folder is refused; a committed folder
      // itself may go to the trash (its commit stays), a sealing one may not.
      this.guarded(n.parentId, 'writable', `deleting ${n.name}`);
      if (n.state === 'sealing' || this.descendantIn(id, ['sealing'])) {
        throw new NamespaceError('SEALED', `${n.name} is sealing for a commit, or holds a folder that is`);
      }
      // A ref keeps its commit's folder in the namespace: checked in this transaction.
      const held = this.one(`${DOWN} SELECT r.name AS ref, c.path AS path FROM refs r JOIN commits c ON c.id = r.commit_id
        WHERE r.mount_id = ? AND (c.node_id = ? OR c.node_id IN (SELECT id FROM down)) ORDER BY r.name LIMIT 1`, id, n.mountId, id);
      if (held) throw refHeld(n.name, held.ref as string, held.path as string);
      this.run(`${DOWN} UPDATE nodes SET deleted_at = ?, updated_at = ? WHERE deleted_at IS NULL AND (id = ? OR id IN (SELECT id FROM down))`,
        id, at, at, id);
      const t = nowTimespec();
      this.touchFolders([n.parentId], t, at);
      return { ...n, deletedAt: at, updatedAt: at };
    });
  }

  // ---- Commits ------------------------------------------------------------------------

  async beginCommit(c: CommitRecord): Promise<CommitRecord> {
    return this.write(() => {
      const folder = this.liveNode(c.nodeId);
      if (!folder) throw new NamespaceError('NODE_NOT_FOUND', `${c.path} does not exist`);
      if (folder.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', 'Only folders can be committed');
      const b = this.barrierIn(c.nodeId);
      if (b?.code === 'COMMITTED') throw new NamespaceError('COMMITTED', `${c.path} is already committed, or inside a committed folder`, { path: c.path });
      if (b) throw new NamespaceError('COMMIT_IN_PROGRESS', `${c.path}, or a folder around it, is being committed`, { path: c.path });
      if (this.descendantIn(c.nodeId, ['sealing'])) throw new NamespaceError('COMMIT_IN_PROGRESS', `A folder inside ${c.path} is being committed`, { path: c.path });
      this.run("UPDATE nodes SET state = 'sealing', commit_id = ?, updated_at = ? WHERE id = ?", c.id, c.createdAt, c.nodeId);
      const seq = (this.one('SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM commits') as Row).s;
      this.run(`INSERT INTO commits (id, mount_id, node_id, path, message, group_id, parent_commit_id, phase, created_at, seq)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, c.id, c.mountId, c.nodeId, c.path, c.message, c.groupId, c.parentCommitId, c.phase, c.createdAt, seq);
      return c;
    });
  }

  async getCommit(id: string): Promise<CommitRecord | null> {
    const r = this.one('SELECT * FROM commits WHERE id = ?', id);
    return r ? commitFrom(r) : null;
  }

  async listCommits(mountId: string, filter: { nodeId?: string; phases?: CommitPhase[] }, page: Cursor): Promise<CommitRecord[]> {
    const where = ['mount_id = ?'];
    const params: unknown[] = [mountId];
    if (filter.nodeId) { where.push('node_id = ?'); params.push(filter.nodeId); }
    if (filter.phases?.length) { where.push(`phase IN (${filter.phases.map(() => '?').join(',')})`); params.push(...filter.phases); }
    if (page.cursor) { where.push('seq < ?'); params.push(Number(page.cursor)); }
    return this.all(`SELECT * FROM commits WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT ?`, ...params, page.limit).map(commitFrom);
  }

  /** The cursor of a commit in `listCommits` order. */
  async commitCursor(id: string): Promise<string | null> {
    const r = this.one('SELECT seq FROM commits WHERE id = ?', id);
    return r ? String(r.seq) : null;
  }

  async listCommitsInPhases(phases: CommitPhase[]): Promise<CommitRecord[]> {
    return this.all(`SELECT * FROM commits WHERE phase IN (${phases.map(() => '?').join(',')}) ORDER BY seq`, ...phases).map(commitFrom);
  }

  async listGroupCommits(groupId: string): Promise<CommitRecord[]> {
    return this.all('SELECT * FROM commits WHERE group_id = ? ORDER BY seq', groupId).map(commitFrom);
  }

  async latestCompletedCommit(mountId: string): Promise<CommitRecord | null> {
    const r = this.one("SELECT * FROM commits WHERE mount_id = ? AND phase = 'completed' ORDER BY completed_at DESC, seq DESC LIMIT 1", mountId);
    return r ? commitFrom(r) : null;
  }

  async setCommitPhase(id: string, phase: 'uploading'): Promise<void> {
    this.run("UPDATE commits SET phase = ? WHERE id = ? AND phase = 'sealing'", phase, id);
  }

  async setCommitProgress(id: string, progress: CommitProgress): Promise<void> {
    this.run("UPDATE commits SET progress = ? WHERE id = ? AND phase IN ('sealing', 'uploading', 'manifested')", JSON.stringify(progress), id);
  }

  async markManifested(id: string, stats: CommitStats, files: CommittedFile[]): Promise<void> {
    return this.write(() => {
      for (const f of files) this.run('UPDATE nodes SET size = ?, sha256 = ? WHERE id = ?', f.size, f.sha256, f.nodeId);
      this.run(`UPDATE commits SET phase = 'manifested', files = ?, bytes = ?, uploaded_bytes = ?, deduped_bytes = ?
        WHERE id = ? AND phase IN ('sealing', 'uploading')`, stats.files, stats.bytes, stats.uploadedBytes, stats.dedupedBytes, id);
    });
  }

  async listCommittedFolders(mountId: string): Promise<CommittedFolder[]> {
    return this.all(`SELECT c.id AS commit_id, n.id AS node_id, n.parent_id, c.completed_at FROM commits c JOIN nodes n ON n.id = c.node_id
      WHERE c.mount_id = ? AND c.phase = 'completed' AND c.purged_at IS NULL AND n.deleted_at IS NULL AND n.parent_id IS NOT NULL ORDER BY c.seq`, mountId)
      .map((r) => ({ commitId: r.commit_id as string, nodeId: r.node_id as string, parentId: r.parent_id as string, completedAt: r.completed_at as string }));
  }

  async listPurgeCandidates(mountId: string): Promise<PurgeCandidate[]> {
    return this.all(`SELECT c.id, c.mount_id, c.node_id, c.path FROM commits c JOIN nodes n ON n.id = c.node_id
      WHERE c.mount_id = ? AND c.phase = 'completed' AND c.purged_at IS NULL AND n.deleted_at IS NOT NULL ORDER BY c.seq`, mountId)
      .map((r) => ({ commitId: r.id as string, mountId: r.mount_id as string, nodeId: r.node_id as string, path: r.path as string }));
  }

  async purgeCommit(id: string, keepSince: string, at: string, opts: PurgeOptions = {}): Promise<PurgeOutcome> {
    // One write transaction: setRef runs in its own, so it sees the purge or the purge sees its ref.
    return this.write((): PurgeOutcome => {
      const c = this.one('SELECT * FROM commits WHERE id = ?', id);
      if (!c) return { purged: false, reason: 'not-found' };
      if (c.purged_at) return { purged: true, nodes: 0 };
      if (c.phase !== 'completed') return { purged: false, reason: 'not-completed' };
      const folder = this.one('SELECT deleted_at FROM nodes WHERE id = ?', c.node_id);
      if (folder && folder.deleted_at === null && !(opts.dryRun && opts.assumeDeleted)) return { purged: false, reason: 'live' };
      if (this.one('SELECT 1 FROM refs WHERE commit_id = ? LIMIT 1', id)) return { purged: false, reason: 'referenced' };
      if (this.one('SELECT 1 FROM ref_log WHERE (from_commit_id = ? OR to_commit_id = ?) AND updated_at >= ? LIMIT 1', id, id, keepSince)) {
        return { purged: false, reason: 'in-ref-log' };
      }
      if (this.one(`${EVERY} SELECT 1 FROM commits o WHERE o.id != ? AND o.purged_at IS NULL AND o.node_id IN (SELECT id FROM every) LIMIT 1`, c.node_id, id)) {
        return { purged: false, reason: 'holds-commits' };
      }
      if (opts.dryRun) return { purged: true, nodes: Number((this.one(`${EVERY} SELECT COUNT(*) AS n FROM every`, c.node_id) as Row).n) };
      const nodes = this.run(`${EVERY} DELETE FROM nodes WHERE id IN (SELECT id FROM every)`, c.node_id);
      this.run('UPDATE commits SET purged_at = ? WHERE id = ?', at, id);
      return { purged: true, nodes };
    });
  }

  async listPurgedWithManifest(): Promise<string[]> {
    return this.all('SELECT id FROM commits WHERE purged_at IS NOT NULL AND manifest_deleted_at IS NULL ORDER BY seq').map((r) => r.id as string);
  }

  async markManifestDeleted(id: string, at: string): Promise<void> {
    this.run('UPDATE commits SET manifest_deleted_at = ? WHERE id = ? AND purged_at IS NOT NULL', at, id);
  }

  async completeCommits(ids: string[], at: string, group?: { id: string }): Promise<void> {
    return this.write(() => {
      for (const id of ids) {
        const c = this.one('SELECT * FROM commits WHERE id = ?', id);
        if (!c || c.phase !== 'manifested') throw new Error(`commit ${id} is not manifested`);
        this.run("UPDATE commits SET phase = 'completed', completed_at = ? WHERE id = ?", at, id);
        // The folder and everything in it become immutable at once; files keep their
        // commit id so reads know which manifest they belong to.
        this.run("UPDATE nodes SET state = 'committed', commit_id = ?, owner_agent = NULL, updated_at = ? WHERE id = ?", id, at, c.node_id);
        this.run(`${DOWN} UPDATE nodes SET state = 'committed', commit_id = COALESCE(commit_id, ?), owner_agent = NULL, updated_at = ?
          WHERE state != 'committed' AND id IN (SELECT id FROM down)`, c.node_id, id, at);
        // The manifest's objects are recorded on the nodes now (markManifested): the pins go.
        this.run(`${DOWN} DELETE FROM gc_pins WHERE node_id IN (SELECT id FROM down)`, c.node_id);
      }
      if (group) this.run("UPDATE commit_groups SET status = 'committed', committed_at = ? WHERE id = ?", at, group.id);
    });
  }

  async failCommits(ids: string[], error: CommitErrorInfo, group?: { id: string }): Promise<void> {
    return this.write(() => {
      for (const id of ids) {
        const c = this.one('SELECT * FROM commits WHERE id = ?', id);
        if (!c || c.phase === 'completed' || c.phase === 'failed') continue;
        this.run("UPDATE commits SET phase = 'failed', error_code = ?, error_message = ? WHERE id = ?", error.code, error.message, id);
        // Only the folder itself was flipped by beginCommit; its staged files never changed state.
        this.run("UPDATE nodes SET state = 'staging', commit_id = NULL, updated_at = ? WHERE id = ? AND commit_id = ?", new Date().toISOString(), c.node_id, id);
      }
      if (group) this.run("UPDATE commit_groups SET status = 'failed' WHERE id = ? AND status = 'pending'", group.id);
    });
  }

  async getRef(mountId: string, name: string): Promise<RefRecord | null> {
    const r = this.one('SELECT * FROM refs WHERE mount_id = ? AND name = ?', mountId, name);
    return r ? refFrom(r) : null;
  }

  async listRefs(mountId: string): Promise<RefRecord[]> {
    return this.all('SELECT * FROM refs WHERE mount_id = ? ORDER BY name', mountId).map(refFrom);
  }

  async setRef(ref: RefRecord, expected: string | null | undefined): Promise<RefRecord | null> {
    return this.write(() => {
      // Checked in this transaction: a purge is another write transaction, before or after this one.
      if (this.one('SELECT purged_at FROM commits WHERE id = ?', ref.commitId)?.purged_at) {
        throw new CommitError('COMMIT_PURGED', `Commit ${ref.commitId} was purged by garbage collection`);
      }
      const folder = this.one('SELECT n.deleted_at AS deleted_at, c.path AS path FROM commits c JOIN nodes n ON n.id = c.node_id WHERE c.id = ?', ref.commitId);
      if (folder?.deleted_at) throw folderDeleted(ref.commitId, folder.path as string);
      const cur = this.one('SELECT * FROM refs WHERE mount_id = ? AND name = ?', ref.mountId, ref.name);
      const curId = cur ? (cur.commit_id as string) : null;
      if (expected !== undefined && expected !== curId) return null;
      this.run(`INSERT INTO refs (mount_id, name, commit_id, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (mount_id, name) DO UPDATE SET commit_id = excluded.commit_id, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
      ref.mountId, ref.name, ref.commitId, ref.updatedAt, ref.updatedBy);
      this.run('INSERT INTO ref_log (mount_id, name, from_commit_id, to_commit_id, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?)',
        ref.mountId, ref.name, curId, ref.commitId, ref.updatedAt, ref.updatedBy);
      return ref;
    });
  }

  async deleteRef(mountId: string, name: string, by: string, at: string): Promise<boolean> {
    return this.write(() => {
      const cur = this.one('SELECT * FROM refs WHERE mount_id = ? AND name = ?', mountId, name);
      if (!cur) return false;
      this.run('DELETE FROM refs WHERE mount_id = ? AND name = ?', mountId, name);
      this.run('INSERT INTO ref_log (mount_id, name, from_commit_id, to_commit_id, updated_at, updated_by) VALUES (?, ?, ?, NULL, ?, ?)',
        mountId, name, cur.commit_id, at, by);
      return true;
    });
  }

  async refLog(mountId: string, name: string): Promise<RefLogRecord[]> {
    return this.all('SELECT * FROM ref_log WHERE mount_id = ? AND name = ? ORDER BY seq', mountId, name).map((r) => ({
      seq: Number(r.seq), mountId: r.mount_id as string, name: r.name as string, fromCommitId: (r.from_commit_id as string | null) ?? null,
      toCommitId: (r.to_commit_id as string | null) ?? null, updatedAt: r.updated_at as string, updatedBy: r.updated_by as string,
    }));
  }

  async createGroup(g: GroupRecord): Promise<GroupRecord> {
    this.run('INSERT INTO commit_groups (id, mount_id, message, status, created_at, sealed_at, committed_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      g.id, g.mountId, g.message, g.status, g.createdAt, g.sealedAt, g.committedAt);
    return g;
  }

  async getGroup(id: string): Promise<GroupRecord | null> {
    const r = this.one('SELECT * FROM commit_groups WHERE id = ?', id);
    return r ? groupFrom(r) : null;
  }

  async markGroupSealed(id: string, at: string): Promise<GroupRecord | null> {
    const changed = this.run("UPDATE commit_groups SET sealed_at = ? WHERE id = ? AND status = 'pending' AND sealed_at IS NULL", at, id);
    return changed === 1 ? this.getGroup(id) : null;
  }

  async acquireCommitLease(id: string, holder: string, until: string, now: string): Promise<boolean> {
    return this.run(`UPDATE commits SET lease_holder = ?, lease_until = ?
      WHERE id = ? AND (lease_holder IS NULL OR lease_holder = ? OR lease_until < ?)`, holder, until, id, holder, now) === 1;
  }

  // ---- Objects: pins, tombstones, the gc lease -------------------------------------------

  async pinObject(pin: { agentId: string; nodeId: string; sha256: string; at: string }): Promise<boolean> {
    // One write transaction: a tombstone is raised in another, before or after this one.
    return this.write(() => {
      if (this.one('SELECT 1 FROM gc_tombstones WHERE sha256 = ?', pin.sha256)) return false;
      this.run(`INSERT INTO gc_pins (agent_id, node_id, sha256, created_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (agent_id, node_id) DO UPDATE SET sha256 = excluded.sha256, created_at = excluded.created_at`, pin.agentId, pin.nodeId, pin.sha256, pin.at);
      return true;
    });
  }

  async unpinNode(nodeId: string): Promise<void> {
    this.run('DELETE FROM gc_pins WHERE node_id = ?', nodeId);
  }

  async tombstoneObject(sha256: string, at: string): Promise<boolean> {
    return this.write(() => {
      if (this.one('SELECT 1 FROM gc_pins WHERE sha256 = ? UNION ALL SELECT 1 FROM nodes WHERE sha256 = ? LIMIT 1', sha256, sha256)) return false;
      this.run('INSERT INTO gc_tombstones (sha256, created_at) VALUES (?, ?) ON CONFLICT (sha256) DO NOTHING', sha256, at);
      return true;
    });
  }

  async removeTombstone(sha256: string): Promise<void> {
    this.run('DELETE FROM gc_tombstones WHERE sha256 = ?', sha256);
  }

  async listTombstones(): Promise<string[]> {
    return this.all('SELECT sha256 FROM gc_tombstones ORDER BY sha256').map((r) => r.sha256 as string);
  }

  async referencedObjects(exceptCommits: string[] = []): Promise<Set<string>> {
    return new Set(this.all(`SELECT DISTINCT sha256 FROM nodes WHERE sha256 IS NOT NULL AND COALESCE(commit_id, '') NOT IN (SELECT value FROM json_each(?))`,
      JSON.stringify(exceptCommits)).map((r) => r.sha256 as string));
  }

  async expireAgentPins(before: string, opts: { dryRun?: boolean } = {}): Promise<{ agents: string[]; pins: number }> {
    // One write transaction: a heartbeat, a pin or a new task is before or after it.
    return this.write(() => {
      const agents = this.all(`SELECT a.id FROM agents a WHERE a.last_seen_at < ?
          AND EXISTS (SELECT 1 FROM gc_pins p WHERE p.agent_id = a.id)
          AND NOT EXISTS (SELECT 1 FROM agent_tasks t JOIN commits c ON c.id = t.commit_id
            WHERE t.agent_id = a.id AND c.phase IN ('sealing', 'uploading', 'manifested'))
        ORDER BY a.id`, before).map((r) => r.id as string);
      let pins = 0;
      for (const id of agents) {
        if (opts.dryRun) {
          pins += (this.one('SELECT COUNT(*) AS n FROM gc_pins WHERE agent_id = ?', id) as Row).n as number;
          continue;
        }
        pins += this.run('DELETE FROM gc_pins WHERE agent_id = ?', id);
        this.run('DELETE FROM agents WHERE id = ?', id);
      }
      return { agents, pins };
    });
  }

  async acquireGcLease(holder: string, until: string, now: string): Promise<boolean> {
    return this.write(() => {
      const cur = this.one('SELECT holder, until FROM gc_lease WHERE id = 1');
      if (cur && cur.holder !== holder && (cur.until as string) >= now) return false;
      this.run('INSERT INTO gc_lease (id, holder, until) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, until = excluded.until', holder, until);
      return true;
    });
  }

  async releaseGcLease(holder: string): Promise<void> {
    this.run('DELETE FROM gc_lease WHERE id = 1 AND holder = ?', holder);
  }

  // ---- Agents -------------------------------------------------------------------------

  async upsertAgent(a: AgentRecord): Promise<AgentRecord> {
    return this.write(() => {
      this.run(`INSERT INTO agents (id, mount_id, mountpoint, hostname, registered_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET mount_id = excluded.mount_id, mountpoint = excluded.mountpoint, hostname = excluded.hostname,
          last_seen_at = excluded.last_seen_at`, a.id, a.mountId, a.mountpoint, a.hostname, a.registeredAt, a.lastSeenAt);
      return agentFrom(this.one('SELECT * FROM agents WHERE id = ?', a.id)!);
    });
  }

  async getAgent(id: string): Promise<AgentRecord | null> {
    const r = this.one('SELECT * FROM agents WHERE id = ?', id);
    return r ? agentFrom(r) : null;
  }

  async listAgents(mountId: string): Promise<AgentRecord[]> {
    return this.all('SELECT * FROM agents WHERE mount_id = ? ORDER BY registered_at, id', mountId).map(agentFrom);
  }

  async touchAgent(id: string, at: string): Promise<boolean> {
    // A heartbeat never moves the clock back (two serve processes may answer one agent).
    return this.run('UPDATE agents SET last_seen_at = MAX(last_seen_at, ?) WHERE id = ?', at, id) === 1;
  }

  async addAgentTask(t: AgentTaskRecord): Promise<AgentTaskRecord> {
    return this.write(() => {
      const seq = (this.one('SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM agent_tasks') as Row).s;
      this.run(`INSERT INTO agent_tasks (id, seq, agent_id, commit_id, kind, args, status, result, error, created_at, finished_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
      t.id, seq, t.agentId, t.commitId, t.kind, JSON.stringify(t.args), t.status, t.result === undefined || t.result === null ? null : JSON.stringify(t.result),
      t.error ? JSON.stringify(t.error) : null, t.createdAt, t.finishedAt);
      return taskFrom(this.one('SELECT * FROM agent_tasks WHERE id = ?', t.id)!);
    });
  }

  async getAgentTask(id: string): Promise<AgentTaskRecord | null> {
    const r = this.one('SELECT * FROM agent_tasks WHERE id = ?', id);
    return r ? taskFrom(r) : null;
  }

  async pendingAgentTasks(agentId: string): Promise<AgentTaskRecord[]> {
    return this.all("SELECT * FROM agent_tasks WHERE agent_id = ? AND status = 'pending' ORDER BY seq", agentId).map(taskFrom);
  }

  async setAgentTaskProgress(id: string, progress: unknown): Promise<void> {
    this.run("UPDATE agent_tasks SET progress = ? WHERE id = ? AND status = 'pending'", JSON.stringify(progress ?? null), id);
  }

  async finishAgentTask(id: string, outcome: { status: 'done'; result: unknown } | { status: 'failed'; error: NonNullable<AgentTaskRecord['error']> }, at: string): Promise<boolean> {
    const result = outcome.status === 'done' && outcome.result !== undefined ? JSON.stringify(outcome.result) : null;
    const error = outcome.status === 'failed' ? JSON.stringify(outcome.error) : null;
    return this.run("UPDATE agent_tasks SET status = ?, result = ?, error = ?, finished_at = ? WHERE id = ? AND status = 'pending'",
      outcome.status, result, error, at, id) === 1;
  }

  async commitTaskAgents(commitId: string): Promise<string[]> {
    return this.all('SELECT DISTINCT agent_id FROM agent_tasks WHERE commit_id = ? ORDER BY agent_id', commitId).map((r) => r.agent_id as string);
  }

  async dropAgentTasks(commitId: string, agentId?: string): Promise<void> {
    if (agentId === undefined) this.run('DELETE FROM agent_tasks WHERE commit_id = ?', commitId);
    else this.run('DELETE FROM agent_tasks WHERE commit_id = ? AND agent_id = ?', commitId, agentId);
  }

  // ---- API keys -----------------------------------------------------------------------

  async insertApiKey(k: ApiKeyRecord): Promise<void> {
    this.run('INSERT INTO api_keys (id, name, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)', k.id, k.name, k.hash, k.createdAt, k.revokedAt);
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    return this.all('SELECT * FROM api_keys ORDER BY created_at, id').map((r) => ({
      id: r.id as string, name: r.name as string, hash: r.hash as string, createdAt: r.created_at as string, revokedAt: (r.revoked_at as string | null) ?? null,
    }));
  }

  async revokeApiKey(id: string, at: string): Promise<boolean> {
    return this.run('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', at, id) === 1;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
