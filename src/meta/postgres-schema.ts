/**
 * The schema of the control-plane metadata in PostgreSQL, and its migrations.
 *
 * Owns: the `roset_schema` table (one row per applied version) and every step from one
 * version to the next. Versions:
 * - 1: what SQLite schema 3 holds (`sqlite-schema.ts`): mounts; nodes as edges
 *   `(parent_id, name)`, unique among live nodes; commits with the lease of the process
 *   driving them; refs and the ref log; commit groups; API keys with `revoked_at`;
 *   agents and their tasks.
 * - 2: what SQLite schema 4 adds: `commits.progress` (how far a pending commit has
 *   come) and `agent_tasks.progress` (what an agent last reported while running a
 *   task), both JSON.
 * - 3: garbage collection: `commits.purged_at`, `commits.manifest_deleted_at`, the
 *   tables `gc_pins`, `gc_tombstones` and `gc_lease`, as SQLite schema 5.
 * - 4: auto-commit rules per mount (`mount_auto_commit`), as SQLite schema 6.
 *
 * Column choices, so that both backends answer alike:
 * - Every text column is `COLLATE "C"`: equality and order are byte for byte (UTF-8
 *   byte order, as SQLite's BINARY), whatever the database's default collation. Names
 *   are never matched with LIKE.
 * - Times of nodes are whole seconds (bigint) and nanoseconds (integer); sizes, counts,
 *   uid and gid are bigint. Record times (`created_at`, ...) are ISO 8601 strings, as
 *   the interface carries them, so they come back exactly as written and order as
 *   text.
 * - Sequence numbers (commits, ref log, agent tasks) are identity columns.
 *
 * Invariants:
 * - Migrations run at open, all of them in one transaction under a transaction-level
 *   advisory lock (`MIGRATION_LOCK`): processes starting together wait for one another,
 *   and a database is at one version or the next, never between.
 * - A database newer than this code refuses to open (an old binary must not write a
 *   schema it does not know).
 */
import type { PoolClient } from 'pg';

export const PG_SCHEMA_VERSION = 4;

/** The key of `pg_advisory_xact_lock` taken by migrations ("roset" in ASCII, as a number). */
export const MIGRATION_LOCK = 0x726f736574;

const VERSION_TABLE = `
CREATE TABLE IF NOT EXISTS roset_schema (
  version integer PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
)`;

const V1 = `
CREATE TABLE mounts (
  id text COLLATE "C" PRIMARY KEY,
  name text COLLATE "C" NOT NULL UNIQUE,
  store text COLLATE "C" NOT NULL,
  created_at text COLLATE "C" NOT NULL
);

CREATE TABLE nodes (
  id text COLLATE "C" PRIMARY KEY,
  mount_id text COLLATE "C" NOT NULL,
  parent_id text COLLATE "C",
  name text COLLATE "C" NOT NULL,
  type text COLLATE "C" NOT NULL CHECK (type IN ('file', 'folder')),
  size bigint NOT NULL DEFAULT 0,
  mode integer NOT NULL,
  uid bigint NOT NULL DEFAULT 0,
  gid bigint NOT NULL DEFAULT 0,
  atime_s bigint NOT NULL, atime_ns integer NOT NULL,
  mtime_s bigint NOT NULL, mtime_ns integer NOT NULL,
  ctime_s bigint NOT NULL, ctime_ns integer NOT NULL,
  state text COLLATE "C" NOT NULL CHECK (state IN ('staging', 'sealing', 'committed')),
  commit_id text COLLATE "C",
  sha256 text COLLATE "C",
  owner_agent text COLLATE "C",
  created_at text COLLATE "C" NOT NULL,
  updated_at text COLLATE "C" NOT NULL,
  deleted_at text COLLATE "C"
);
-- One live node per edge. Partial, so it is not a key for row locks: an update of
-- parent_id takes no stronger lock by itself; the store locks explicitly (postgres.ts).
CREATE UNIQUE INDEX nodes_live_edge ON nodes (parent_id, name) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX nodes_root ON nodes (mount_id) WHERE parent_id IS NULL;
-- A folder's subfolder count (st_nlink) costs its subfolders, not all its children.
CREATE INDEX nodes_subfolders ON nodes (parent_id) WHERE deleted_at IS NULL AND type = 'folder';

CREATE TABLE commits (
  id text COLLATE "C" PRIMARY KEY,
  seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  mount_id text COLLATE "C" NOT NULL,
  node_id text COLLATE "C" NOT NULL,
  path text COLLATE "C" NOT NULL,
  message text COLLATE "C" NOT NULL,
  group_id text COLLATE "C",
  parent_commit_id text COLLATE "C",
  phase text COLLATE "C" NOT NULL CHECK (phase IN ('sealing', 'uploading', 'manifested', 'completed', 'failed')),
  error_code text COLLATE "C",
  error_message text COLLATE "C",
  files bigint NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0,
  uploaded_bytes bigint NOT NULL DEFAULT 0,
  deduped_bytes bigint NOT NULL DEFAULT 0,
  created_at text COLLATE "C" NOT NULL,
  completed_at text COLLATE "C",
  lease_holder text COLLATE "C",
  lease_until text COLLATE "C"
);
CREATE INDEX commits_mount_seq ON commits (mount_id, seq);
CREATE INDEX commits_node ON commits (node_id);
CREATE INDEX commits_group ON commits (group_id);
CREATE INDEX commits_active ON commits (seq) WHERE phase IN ('sealing', 'uploading', 'manifested');

CREATE TABLE refs (
  mount_id text COLLATE "C" NOT NULL,
  name text COLLATE "C" NOT NULL,
  commit_id text COLLATE "C" NOT NULL,
  updated_at text COLLATE "C" NOT NULL,
  updated_by text COLLATE "C" NOT NULL,
  PRIMARY KEY (mount_id, name)
);

CREATE TABLE ref_log (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  mount_id text COLLATE "C" NOT NULL,
  name text COLLATE "C" NOT NULL,
  from_commit_id text COLLATE "C",
  to_commit_id text COLLATE "C",
  updated_at text COLLATE "C" NOT NULL,
  updated_by text COLLATE "C" NOT NULL
);
CREATE INDEX ref_log_name ON ref_log (mount_id, name, seq);

CREATE TABLE commit_groups (
  id text COLLATE "C" PRIMARY KEY,
  mount_id text COLLATE "C" NOT NULL,
  message text COLLATE "C" NOT NULL,
  status text COLLATE "C" NOT NULL CHECK (status IN ('pending', 'committed', 'failed')),
  created_at text COLLATE "C" NOT NULL,
  sealed_at text COLLATE "C",
  committed_at text COLLATE "C"
);

CREATE TABLE api_keys (
  id text COLLATE "C" PRIMARY KEY,
  name text COLLATE "C" NOT NULL,
  hash text COLLATE "C" NOT NULL UNIQUE,
  created_at text COLLATE "C" NOT NULL,
  revoked_at text COLLATE "C"
);

CREATE TABLE agents (
  id text COLLATE "C" PRIMARY KEY,
  mount_id text COLLATE "C" NOT NULL,
  mountpoint text COLLATE "C",
  hostname text COLLATE "C" NOT NULL,
  registered_at text COLLATE "C" NOT NULL,
  last_seen_at text COLLATE "C" NOT NULL
);

-- args, result and error are JSON text, kept as written (json, not jsonb).
CREATE TABLE agent_tasks (
  id text COLLATE "C" PRIMARY KEY,
  seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  agent_id text COLLATE "C" NOT NULL,
  commit_id text COLLATE "C" NOT NULL,
  kind text COLLATE "C" NOT NULL,
  args json NOT NULL,
  status text COLLATE "C" NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
  result json,
  error json,
  created_at text COLLATE "C" NOT NULL,
  finished_at text COLLATE "C"
);
CREATE INDEX agent_tasks_pending ON agent_tasks (agent_id, seq) WHERE status = 'pending';
CREATE INDEX agent_tasks_commit ON agent_tasks (commit_id);
`;

const V2 = `
ALTER TABLE commits ADD COLUMN progress json;
ALTER TABLE agent_tasks ADD COLUMN progress json;
`;

const V3 = `
ALTER TABLE commits ADD COLUMN purged_at text COLLATE "C";
ALTER TABLE commits ADD COLUMN manifest_deleted_at text COLLATE "C";
CREATE INDEX ref_log_from ON ref_log (from_commit_id);
CREATE INDEX ref_log_to ON ref_log (to_commit_id);
CREATE INDEX refs_commit ON refs (commit_id);
CREATE INDEX nodes_sha256 ON nodes (sha256) WHERE sha256 IS NOT NULL;
CREATE TABLE gc_pins (
  agent_id text COLLATE "C" NOT NULL,
  node_id text COLLATE "C" NOT NULL,
  sha256 text COLLATE "C" NOT NULL,
  created_at text COLLATE "C" NOT NULL,
  PRIMARY KEY (agent_id, node_id)
);
CREATE INDEX gc_pins_sha256 ON gc_pins (sha256);
CREATE INDEX gc_pins_node ON gc_pins (node_id);
CREATE TABLE gc_tombstones (sha256 text COLLATE "C" PRIMARY KEY, created_at text COLLATE "C" NOT NULL);
CREATE TABLE gc_lease (id integer PRIMARY KEY CHECK (id = 1), holder text COLLATE "C" NOT NULL, until text COLLATE "C" NOT NULL);
`;

// rules is JSON text kept as written (json, not jsonb): the order of the list is the user's.
const V4 = `
CREATE TABLE mount_auto_commit (
  mount_id text COLLATE "C" PRIMARY KEY,
  rules json NOT NULL,
  version bigint NOT NULL,
  updated_at text COLLATE "C" NOT NULL,
  updated_by text COLLATE "C" NOT NULL
);
`;

/**
 * Each version's statements, by the version they bring a database to, in order.
 */
const MIGRATIONS: ReadonlyArray<readonly [number, string]> = [[1, V1], [2, V2], [3, V3], [4, V4]];

/** The versions a new database records, in order. */
export const PG_SCHEMA_STEPS: readonly number[] = MIGRATIONS.map(([v]) => v);

/** The version of a database, read inside the migration transaction: 0 for an empty one. */
async function currentVersion(c: PoolClient): Promise<number> {
  const r = await c.query<{ v: number | null }>('SELECT MAX(version) AS v FROM roset_schema');
  return r.rows[0]?.v ?? 0;
}

/**
 * Brings the database `c` is connected to to PG_SCHEMA_VERSION, in one transaction under
 * the migration lock. Throws, changing nothing, if the database is newer.
 */
export async function migratePostgres(c: PoolClient): Promise<{ from: number; to: number }> {
  await c.query('BEGIN');
  try {
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query(VERSION_TABLE);
    const from = await currentVersion(c);
    if (from > PG_SCHEMA_VERSION) {
      throw new Error(`The metadata database has schema version ${from}, newer than this release understands (${PG_SCHEMA_VERSION}); upgrade Roset`);
    }
    for (const [v, sql] of MIGRATIONS) {
      if (v <= from) continue;
      await c.query(sql);
      await c.query('INSERT INTO roset_schema (version) VALUES ($1)', [v]);
    }
    await c.query('COMMIT');
    return { from, to: PG_SCHEMA_VERSION };
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
