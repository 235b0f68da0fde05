/**
 * The schema of the control-plane metadata in SQLite, and its migrations.
 *
 * Owns: `PRAGMA user_version` of `metadata.db` and every step from one version to the
 * next. Versions:
 * - 1: release 0.1.0. Nodes keyed by their full path string (`nodes.path`), subtrees
 *   found with `LIKE` (which folds ASCII case and treats `%` and `_` as wildcards), times
 *   in milliseconds. A 0.1.0 database has `user_version` 0 and these tables.
 * - 2: nodes are edges `(parent_id, name)`, unique among live nodes and compared byte
 *   for byte; subtrees by ancestry; uid, gid, atime, mtime and ctime to the nanosecond.
 * - 3: many nodes: agents and their tasks (seal, upload, release), the lease of the
 *   process driving a commit, and revocable API keys.
 * - 4: progress: `commits.progress` (how far a pending commit has come, JSON) and
 *   `agent_tasks.progress` (what an agent last reported while running a task, JSON).
 * - 5: garbage collection: `commits.purged_at` (the commit was purged: its folder left
 *   the metadata) and `commits.manifest_deleted_at` (its manifest left the store);
 *   `gc_pins` (objects a staged file's upload may rely on), `gc_tombstones` (objects
 *   gc is deleting), `gc_lease` (one gc at a time).
 * - 6: auto-commit rules per mount, set through the API: `mount_auto_commit` (one row
 *   per mount that ever had rules set: the rule texts as a JSON array, a version moved
 *   on by every set).
 *
 * Invariants:
 * - Migrations run at open, all of them in one transaction: a database is at one
 *   version or the next, never between.
 * - A database newer than this code refuses to open (an old binary must not write a
 *   schema it does not know).
 */
import type { Database as Db } from '../util/sqlite-driver.js';

export const SCHEMA_VERSION = 6;

const NODES_V2 = `
CREATE TABLE nodes (
  id TEXT PRIMARY KEY, mount_id TEXT NOT NULL, parent_id TEXT, name TEXT NOT NULL,
  type TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0, mode INTEGER NOT NULL,
  uid INTEGER NOT NULL DEFAULT 0, gid INTEGER NOT NULL DEFAULT 0,
  atime_s INTEGER NOT NULL, atime_ns INTEGER NOT NULL, mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
  ctime_s INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
  state TEXT NOT NULL, commit_id TEXT, sha256 TEXT, owner_agent TEXT,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, deleted_at TEXT
);
-- One live node per edge; '=' on TEXT compares bytes (BINARY collation).
CREATE UNIQUE INDEX nodes_live_edge ON nodes(parent_id, name) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX nodes_root ON nodes(mount_id) WHERE parent_id IS NULL;
-- A folder's subfolder count (st_nlink) costs its subfolders, not all its children.
CREATE INDEX nodes_subfolders ON nodes(parent_id) WHERE deleted_at IS NULL AND type = 'folder';
`;

const REST_V2 = `
CREATE TABLE IF NOT EXISTS mounts (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, store TEXT NOT NULL, created_at TEXT NOT NULL
);
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

const V3 = `
ALTER TABLE commits ADD COLUMN lease_holder TEXT;
ALTER TABLE commits ADD COLUMN lease_until TEXT;
ALTER TABLE api_keys ADD COLUMN revoked_at TEXT;
CREATE TABLE agents (
  id TEXT PRIMARY KEY, mount_id TEXT NOT NULL, mountpoint TEXT, hostname TEXT NOT NULL,
  registered_at TEXT NOT NULL, last_seen_at TEXT NOT NULL
);
CREATE TABLE agent_tasks (
  id TEXT PRIMARY KEY, seq INTEGER NOT NULL, agent_id TEXT NOT NULL, commit_id TEXT NOT NULL, kind TEXT NOT NULL,
  args TEXT NOT NULL, status TEXT NOT NULL, result TEXT, error TEXT, created_at TEXT NOT NULL, finished_at TEXT
);
CREATE INDEX agent_tasks_pending ON agent_tasks(agent_id, seq) WHERE status = 'pending';
CREATE INDEX agent_tasks_commit ON agent_tasks(commit_id);
`;

const V4 = `
ALTER TABLE commits ADD COLUMN progress TEXT;
ALTER TABLE agent_tasks ADD COLUMN progress TEXT;
`;

const V5 = `
ALTER TABLE commits ADD COLUMN purged_at TEXT;
ALTER TABLE commits ADD COLUMN manifest_deleted_at TEXT;
CREATE INDEX ref_log_from ON ref_log(from_commit_id);
CREATE INDEX ref_log_to ON ref_log(to_commit_id);
CREATE INDEX refs_commit ON refs(commit_id);
CREATE INDEX nodes_sha256 ON nodes(sha256) WHERE sha256 IS NOT NULL;
CREATE TABLE gc_pins (
  agent_id TEXT NOT NULL, node_id TEXT NOT NULL, sha256 TEXT NOT NULL, created_at TEXT NOT NULL,
  PRIMARY KEY (agent_id, node_id)
);
CREATE INDEX gc_pins_sha256 ON gc_pins(sha256);
CREATE INDEX gc_pins_node ON gc_pins(node_id);
CREATE TABLE gc_tombstones (sha256 TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE gc_lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, until TEXT NOT NULL);
`;

const V6 = `
CREATE TABLE mount_auto_commit (
  mount_id TEXT PRIMARY KEY, rules TEXT NOT NULL, version INTEGER NOT NULL, updated_at TEXT NOT NULL, updated_by TEXT NOT NULL
);
`;

/**
 * The steps after 2, by the version they bring a database to. A version with no step
 * here is skipped.
 */
const STEPS: ReadonlyArray<readonly [number, string]> = [[3, V3], [4, V4], [5, V5], [6, V6]];

function hasTable(db: Db, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
}

/** The version of an opened database: 0 for an empty one. */
function currentVersion(db: Db): number {
  const v = db.pragma('user_version', { simple: true }) as number;
  if (v !== 0) return v;
  return hasTable(db, 'nodes') ? 1 : 0;
}

/**
 * 1 → 2: paths become edges. Every live and soft-deleted node keeps its id, parent id
 * and name (0.1.0 already stored both); milliseconds become seconds and nanoseconds;
 * atime starts equal to mtime (0.1.0 did not store it), ctime is the row's last
 * update; owner and group are the daemon's (what 0.1.0 reported for every node).
 */
function migrate1to2(db: Db, owner: { uid: number; gid: number }): void {
  db.exec('ALTER TABLE nodes RENAME TO nodes_v1');
  db.exec('DROP INDEX IF EXISTS nodes_live_path');
  db.exec('DROP INDEX IF EXISTS nodes_parent');
  db.exec(NODES_V2);
  db.prepare(`INSERT INTO nodes (id, mount_id, parent_id, name, type, size, mode, uid, gid,
      atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, state, commit_id, sha256, owner_agent, created_at, updated_at, deleted_at)
    SELECT id, mount_id, parent_id, name, type, size, mode, ?, ?,
      mtime_ms / 1000, (mtime_ms % 1000) * 1000000, mtime_ms / 1000, (mtime_ms % 1000) * 1000000,
      CAST(strftime('%s', updated_at) AS INTEGER), 0,
      state, commit_id, sha256, owner_agent, created_at, updated_at, deleted_at
    FROM nodes_v1`).run(owner.uid, owner.gid);
  db.exec('DROP TABLE nodes_v1');
}

/** Brings `db` to SCHEMA_VERSION. */
export function migrate(db: Db, owner: { uid: number; gid: number }): { from: number; to: number } {
  const from = currentVersion(db);
  if (from > SCHEMA_VERSION) {
    throw new Error(`metadata.db has schema version ${from}, newer than this release understands (${SCHEMA_VERSION}); upgrade Roset`);
  }
  if (from === SCHEMA_VERSION) return { from, to: from };
  db.transaction(() => {
    if (from === 0) db.exec(NODES_V2);
    if (from === 1) migrate1to2(db, owner);
    if (from < 2) db.exec(REST_V2);
    for (const [v, sql] of STEPS) if (from < v) db.exec(sql);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
  return { from, to: SCHEMA_VERSION };
}
