/**
 * SQLite implementation of the control-plane MetadataStore (the embedded default).
 *
 * Owns: `<stateDir>/metadata.db` (WAL). Schema migrations run at open.
 * Invariants: each interface method runs in one SQLite transaction, so a reader never
 * sees a commit completed without its folder, or a ref moved without its log entry.
 */
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';
import { NamespaceError } from '../errors/index.js';
import { newId } from './ids.js';
import type { CommitErrorInfo, CommitStats, NodeState } from '../api/types.js';
import type {
  ApiKeyRecord, CommitPhase, CommitRecord, CommittedFile, Cursor, GroupRecord, MetadataStore, MountRecord, NewNode, NodeRecord,
  RefLogRecord, RefRecord,
} from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS mounts (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, store TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
  id TEXT PRIMARY KEY, mount_id TEXT NOT NULL, parent_id TEXT, path TEXT NOT NULL, name TEXT NOT NULL,
  type TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0, mode INTEGER NOT NULL, mtime_ms INTEGER NOT NULL,
  state TEXT NOT NULL, commit_id TEXT, sha256 TEXT, owner_agent TEXT,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, deleted_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS nodes_live_path ON nodes(mount_id, path) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(parent_id, name);
CREATE TABLE IF NOT EXISTS commits (
  id TEXT PRIMARY KEY, mount_id TEXT NOT NULL, node_id TEXT NOT NULL, path TEXT NOT NULL, message TEXT NOT NULL,
  group_id TEXT, parent_commit_id TEXT, phase TEXT NOT NULL, error_code TEXT, error_message TEXT,
  files INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0, uploaded_bytes INTEGER NOT NULL DEFAULT 0,
  deduped_bytes INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, completed_at TEXT, seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS commits_mount_seq ON commits(mount_id, seq);
CREATE INDEX IF NOT EXISTS commits_node ON commits(node_id);
CREATE INDEX IF NOT EXISTS commits_group ON commits(group_id);
CREATE TABLE IF NOT EXISTS refs (
  mount_id TEXT NOT NULL, name TEXT NOT NULL, commit_id TEXT NOT NULL, updated_at TEXT NOT NULL, updated_by TEXT NOT NULL,
  PRIMARY KEY (mount_id, name)
);
CREATE TABLE IF NOT EXISTS ref_log (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, mount_id TEXT NOT NULL, name TEXT NOT NULL, from_commit_id TEXT, to_commit_id TEXT,
  updated_at TEXT NOT NULL, updated_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ref_log_name ON ref_log(mount_id, name, seq);
CREATE TABLE IF NOT EXISTS commit_groups (
  id TEXT PRIMARY KEY, mount_id TEXT NOT NULL, message TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
  sealed_at TEXT, committed_at TEXT
);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL
);
`;

type Row = Record<string, unknown>;

function nodeFrom(r: Row): NodeRecord {
  return {
    id: r.id as string, mountId: r.mount_id as string, parentId: (r.parent_id as string | null) ?? null, path: r.path as string,
    name: r.name as string, type: r.type as NodeRecord['type'], size: Number(r.size), mode: Number(r.mode), mtimeMs: Number(r.mtime_ms),
    state: r.state as NodeState, commitId: (r.commit_id as string | null) ?? null, sha256: (r.sha256 as string | null) ?? null,
    ownerAgent: (r.owner_agent as string | null) ?? null, createdAt: r.created_at as string, updatedAt: r.updated_at as string,
    deletedAt: (r.deleted_at as string | null) ?? null,
  };
}

function commitFrom(r: Row): CommitRecord {
  return {
    id: r.id as string, mountId: r.mount_id as string, nodeId: r.node_id as string, path: r.path as string, message: r.message as string,
    groupId: (r.group_id as string | null) ?? null, parentCommitId: (r.parent_commit_id as string | null) ?? null,
    phase: r.phase as CommitPhase,
    error: r.error_code ? { code: r.error_code as string, message: (r.error_message as string) ?? '' } : null,
    stats: { files: Number(r.files), bytes: Number(r.bytes), uploadedBytes: Number(r.uploaded_bytes), dedupedBytes: Number(r.deduped_bytes) },
    createdAt: r.created_at as string, completedAt: (r.completed_at as string | null) ?? null,
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

/** `LIKE` pattern for everything strictly below `path`. */
function below(path: string): string {
  const escaped = path.replace(/[\\%_]/g, (c) => `\\${c}`);
  return path === '/' ? '/%' : `${escaped}/%`;
}

export class SqliteMetadataStore implements MetadataStore {
  private readonly db: Db;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
  }

  private all(sql: string, ...params: unknown[]): Row[] {
    return this.db.prepare(sql).all(...params) as Row[];
  }

  private one(sql: string, ...params: unknown[]): Row | undefined {
    return this.db.prepare(sql).get(...params) as Row | undefined;
  }

  private run(sql: string, ...params: unknown[]): number {
    return this.db.prepare(sql).run(...params).changes;
  }

  async createMount(m: MountRecord): Promise<MountRecord> {
    const tx = this.db.transaction(() => {
      this.run('INSERT INTO mounts (id, name, store, created_at) VALUES (?, ?, ?, ?)', m.id, m.name, m.store, m.createdAt);
      // Every mount has a root folder at "/".
      this.run(`INSERT INTO nodes (id, mount_id, parent_id, path, name, type, size, mode, mtime_ms, state, created_at, updated_at)
        VALUES (?, ?, NULL, '/', '', 'folder', 0, ?, ?, 'staging', ?, ?)`, `root_${m.id}`, m.id, 0o40755, Date.parse(m.createdAt), m.createdAt, m.createdAt);
    });
    try {
      tx();
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

  async getNode(id: string): Promise<NodeRecord | null> {
    const r = this.one('SELECT * FROM nodes WHERE id = ?', id);
    return r ? nodeFrom(r) : null;
  }

  async getNodeByPath(mountId: string, path: string): Promise<NodeRecord | null> {
    const r = this.one('SELECT * FROM nodes WHERE mount_id = ? AND path = ? AND deleted_at IS NULL', mountId, path);
    return r ? nodeFrom(r) : null;
  }

  async getNodesByPaths(mountId: string, paths: string[]): Promise<NodeRecord[]> {
    if (paths.length === 0) return [];
    const marks = paths.map(() => '?').join(',');
    return this.all(`SELECT * FROM nodes WHERE mount_id = ? AND deleted_at IS NULL AND path IN (${marks})`, mountId, ...paths).map(nodeFrom);
  }

  async listChildren(parentId: string, page?: Cursor): Promise<NodeRecord[]> {
    if (!page) return this.all('SELECT * FROM nodes WHERE parent_id = ? AND deleted_at IS NULL ORDER BY name', parentId).map(nodeFrom);
    return this.all('SELECT * FROM nodes WHERE parent_id = ? AND deleted_at IS NULL AND name > ? ORDER BY name LIMIT ?',
      parentId, page.cursor ?? '', page.limit).map(nodeFrom);
  }

  async listDescendants(mountId: string, path: string): Promise<NodeRecord[]> {
    return this.all("SELECT * FROM nodes WHERE mount_id = ? AND deleted_at IS NULL AND path LIKE ? ESCAPE '\\' ORDER BY path", mountId, below(path)).map(nodeFrom);
  }

  async hasDescendantInState(mountId: string, path: string, states: NodeState[]): Promise<boolean> {
    const marks = states.map(() => '?').join(',');
    return !!this.one(`SELECT 1 FROM nodes WHERE mount_id = ? AND deleted_at IS NULL AND path LIKE ? ESCAPE '\\' AND state IN (${marks}) LIMIT 1`,
      mountId, below(path), ...states);
  }

  async insertNode(n: NewNode): Promise<NodeRecord> {
    const now = new Date().toISOString();
    const path = n.parentPath === '/' ? `/${n.name}` : `${n.parentPath}/${n.name}`;
    const rec: NodeRecord = {
      id: `node_${newId()}`, mountId: n.mountId, parentId: n.parentId, path, name: n.name, type: n.type, size: 0, mode: n.mode,
      mtimeMs: Date.now(), state: 'staging', commitId: null, sha256: null, ownerAgent: n.ownerAgent, createdAt: now, updatedAt: now, deletedAt: null,
    };
    try {
      this.run(`INSERT INTO nodes (id, mount_id, parent_id, path, name, type, size, mode, mtime_ms, state, owner_agent, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, 'staging', ?, ?, ?)`,
      rec.id, rec.mountId, rec.parentId, rec.path, rec.name, rec.type, rec.mode, rec.mtimeMs, rec.ownerAgent, now, now);
    } catch (err) {
      if (String((err as Error).message).includes('UNIQUE')) throw new NamespaceError('NODE_EXISTS', `${path} already exists`, { path });
      throw err;
    }
    return rec;
  }

  async updateNodeAttrs(id: string, attrs: { size?: number; mode?: number; mtimeMs?: number }): Promise<void> {
    this.run(`UPDATE nodes SET size = COALESCE(?, size), mode = COALESCE(?, mode), mtime_ms = COALESCE(?, mtime_ms), updated_at = ? WHERE id = ?`,
      attrs.size ?? null, attrs.mode ?? null, attrs.mtimeMs ?? null, new Date().toISOString(), id);
  }

  async removeNode(id: string): Promise<void> {
    this.run('DELETE FROM nodes WHERE id = ?', id);
  }

  async softDeleteNode(id: string, at: string): Promise<NodeRecord> {
    const tx = this.db.transaction(() => {
      const n = this.one('SELECT * FROM nodes WHERE id = ?', id);
      if (!n) throw new NamespaceError('NODE_NOT_FOUND', `No node ${id}`);
      this.run("UPDATE nodes SET deleted_at = ?, updated_at = ? WHERE mount_id = ? AND deleted_at IS NULL AND (id = ? OR path LIKE ? ESCAPE '\\')",
        at, at, n.mount_id, id, below(n.path as string));
      return nodeFrom(this.one('SELECT * FROM nodes WHERE id = ?', id)!);
    });
    return tx();
  }

  async moveNode(id: string, newParent: NodeRecord, newName: string, replaceId: string | null): Promise<void> {
    const tx = this.db.transaction(() => {
      const n = this.one('SELECT * FROM nodes WHERE id = ?', id);
      if (!n) throw new NamespaceError('NODE_NOT_FOUND', `No node ${id}`);
      if (replaceId) this.run('DELETE FROM nodes WHERE id = ?', replaceId);
      const oldPath = n.path as string;
      const newPath = newParent.path === '/' ? `/${newName}` : `${newParent.path}/${newName}`;
      const now = new Date().toISOString();
      this.run("UPDATE nodes SET path = ? || substr(path, ?), updated_at = ? WHERE mount_id = ? AND deleted_at IS NULL AND path LIKE ? ESCAPE '\\'",
        newPath, oldPath.length + 1, now, n.mount_id, below(oldPath));
      this.run('UPDATE nodes SET parent_id = ?, name = ?, path = ?, updated_at = ? WHERE id = ?', newParent.id, newName, newPath, now, id);
    });
    try {
      tx();
    } catch (err) {
      if (String((err as Error).message).includes('UNIQUE')) throw new NamespaceError('NODE_EXISTS', `${newName} already exists`);
      throw err;
    }
  }

  async beginCommit(c: CommitRecord): Promise<CommitRecord> {
    const tx = this.db.transaction(() => {
      const changed = this.run("UPDATE nodes SET state = 'sealing', commit_id = ?, updated_at = ? WHERE id = ? AND state = 'staging' AND deleted_at IS NULL",
        c.id, c.createdAt, c.nodeId);
      if (changed !== 1) return false;
      const seq = (this.one('SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM commits') as Row).s;
      this.run(`INSERT INTO commits (id, mount_id, node_id, path, message, group_id, parent_commit_id, phase, created_at, seq)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, c.id, c.mountId, c.nodeId, c.path, c.message, c.groupId, c.parentCommitId, c.phase, c.createdAt, seq);
      return true;
    });
    if (!tx()) throw new NamespaceError('COMMIT_IN_PROGRESS', `${c.path} is not in STAGING: a commit of it is in progress or done`, { path: c.path });
    return c;
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

  async markManifested(id: string, stats: CommitStats, files: CommittedFile[]): Promise<void> {
    const tx = this.db.transaction(() => {
      const upd = this.db.prepare('UPDATE nodes SET size = ?, sha256 = ? WHERE id = ?');
      for (const f of files) upd.run(f.size, f.sha256, f.nodeId);
      this.run(`UPDATE commits SET phase = 'manifested', files = ?, bytes = ?, uploaded_bytes = ?, deduped_bytes = ?
        WHERE id = ? AND phase IN ('sealing', 'uploading')`, stats.files, stats.bytes, stats.uploadedBytes, stats.dedupedBytes, id);
    });
    tx();
  }

  async completeCommits(ids: string[], at: string, group?: { id: string }): Promise<void> {
    const tx = this.db.transaction(() => {
      for (const id of ids) {
        const c = this.one('SELECT * FROM commits WHERE id = ?', id);
        if (!c || c.phase !== 'manifested') throw new Error(`commit ${id} is not manifested`);
        this.run("UPDATE commits SET phase = 'completed', completed_at = ? WHERE id = ?", at, id);
        const folder = this.one('SELECT * FROM nodes WHERE id = ?', c.node_id)!;
        // The folder and everything in it become immutable at once; files keep their
        // commit id so reads know which manifest they belong to.
        this.run("UPDATE nodes SET state = 'committed', commit_id = ?, owner_agent = NULL, updated_at = ? WHERE id = ?", id, at, c.node_id);
        this.run(`UPDATE nodes SET state = 'committed', commit_id = COALESCE(commit_id, ?), owner_agent = NULL, updated_at = ?
          WHERE mount_id = ? AND deleted_at IS NULL AND state != 'committed' AND path LIKE ? ESCAPE '\\'`, id, at, c.mount_id, below(folder.path as string));
      }
      if (group) this.run("UPDATE commit_groups SET status = 'committed', committed_at = ? WHERE id = ?", at, group.id);
    });
    tx();
  }

  async failCommits(ids: string[], error: CommitErrorInfo, group?: { id: string }): Promise<void> {
    const tx = this.db.transaction(() => {
      for (const id of ids) {
        const c = this.one('SELECT * FROM commits WHERE id = ?', id);
        if (!c || c.phase === 'completed' || c.phase === 'failed') continue;
        this.run("UPDATE commits SET phase = 'failed', error_code = ?, error_message = ? WHERE id = ?", error.code, error.message, id);
        // Only the folder itself was flipped by beginCommit; its staged files never changed state.
        this.run("UPDATE nodes SET state = 'staging', commit_id = NULL, updated_at = ? WHERE id = ? AND commit_id = ?", new Date().toISOString(), c.node_id, id);
      }
      if (group) this.run("UPDATE commit_groups SET status = 'failed' WHERE id = ? AND status = 'pending'", group.id);
    });
    tx();
  }

  async getRef(mountId: string, name: string): Promise<RefRecord | null> {
    const r = this.one('SELECT * FROM refs WHERE mount_id = ? AND name = ?', mountId, name);
    return r ? refFrom(r) : null;
  }

  async listRefs(mountId: string): Promise<RefRecord[]> {
    return this.all('SELECT * FROM refs WHERE mount_id = ? ORDER BY name', mountId).map(refFrom);
  }

  async setRef(ref: RefRecord, expected: string | null | undefined): Promise<RefRecord | null> {
    const tx = this.db.transaction(() => {
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
    return tx();
  }

  async deleteRef(mountId: string, name: string, by: string, at: string): Promise<boolean> {
    const tx = this.db.transaction(() => {
      const cur = this.one('SELECT * FROM refs WHERE mount_id = ? AND name = ?', mountId, name);
      if (!cur) return false;
      this.run('DELETE FROM refs WHERE mount_id = ? AND name = ?', mountId, name);
      this.run('INSERT INTO ref_log (mount_id, name, from_commit_id, to_commit_id, updated_at, updated_by) VALUES (?, ?, ?, NULL, ?, ?)',
        mountId, name, cur.commit_id, at, by);
      return true;
    });
    return tx();
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

  async insertApiKey(k: ApiKeyRecord): Promise<void> {
    this.run('INSERT INTO api_keys (id, name, hash, created_at) VALUES (?, ?, ?, ?)', k.id, k.name, k.hash, k.createdAt);
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    return this.all('SELECT * FROM api_keys ORDER BY created_at').map((r) => ({ id: r.id as string, name: r.name as string, hash: r.hash as string, createdAt: r.created_at as string }));
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
