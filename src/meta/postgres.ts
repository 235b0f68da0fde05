/**
 * PostgreSQL implementation of the control-plane MetadataStore: the metadata that
 * several control-plane processes (and nodes) share. Same semantics, codes and messages as
 * `sqlite.ts`, the reference; the schema and its migrations are in
 * `postgres-schema.ts` and run at open.
 *
 * Owns: a node-postgres pool on the database URL, and how each method maps to one
 * transaction on it.
 *
 * Concurrency design. SQLite has one writer at a time, so a check and the change that
 * follows it can never be split by another writer. Here several processes write at
 * once, at READ COMMITTED, and the same guarantee comes from row locks taken before
 * the check, inside the transaction that makes the change:
 * - A namespace change locks the chain from the node it checks up to the mount's root:
 *   every row `FOR KEY SHARE` (`lockChain`), then reads the chain again. Shared locks
 *   do not block one another, so changes in one folder, or in different folders, run
 *   side by side.
 * - Whatever changes what a barrier check reads (a node's state, its parent or name,
 *   its removal or soft deletion) first locks that node `FOR UPDATE`: `beginCommit`,
 *   `completeCommits` and `failCommits` lock the commit's folder, `moveNode` the node
 *   moved and the one it replaces, `removeNode` and `softDeleteNode` the node. A change
 *   to a whole subtree (completing a commit, a soft delete) is covered by the lock on
 *   its top: that node is on the chain of everything below it. Such a node is locked
 *   after its ancestors (shared), as a subtree change takes its locks top down, so the
 *   two kinds of transaction do not deadlock.
 * - `FOR UPDATE` conflicts with `FOR KEY SHARE`, so a check and a state flip on any
 *   node of its chain are ordered: whichever locks first finishes first, and the other
 *   then reads what it did (a READ COMMITTED statement after a lock sees every
 *   transaction that held it). Row updates that touch no such column (times, sizes,
 *   the parent folder's mtime) take `FOR NO KEY UPDATE`, which shared chain locks do
 *   not block. (The `(parent_id, name)` index is partial, so moving a row is not a key
 *   update by itself: hence the explicit `FOR UPDATE`.)
 * - A commit on a folder and one on a folder above or below it: the lower one holds a
 *   chain lock on the upper folder, the upper one locks that same row `FOR UPDATE`
 *   before it looks for sealing folders below, so exactly one of two such racing
 *   `beginCommit`s wins.
 * - Commits being completed or failed are locked `FOR UPDATE` (in id order) before
 *   their phase is read, so a group completes together or not at all, and a completion
 *   racing a failure ends one way.
 * - Refs: compare-and-swap reads the ref `FOR UPDATE`. A ref that does not exist yet
 *   is created with a plain INSERT; a racing creation fails on the primary key and the
 *   transaction runs again, so it compares with the winner's value.
 * - One live node per `(parent_id, name)` is the partial unique index; a creation or
 *   move that loses that race runs again and then reports NODE_EXISTS as SQLite would.
 * `test/meta/stress.test.ts` replays the history of processes racing on one database
 * in commit order and checks each change against the state before it; without these
 * locks it fails.
 * Row locks were chosen over SERIALIZABLE because conflicts here are frequent by
 * design (every change in a folder shares its chain with the commit of that folder):
 * locks make the loser wait and then answer from the winner's result, where
 * SERIALIZABLE would abort and redo it, and would also abort transactions that only
 * look alike through predicate locks.
 *
 * Invariants:
 * - Each interface method runs in one transaction (one statement where one suffices).
 * - Deadlocks and serialization failures (SQLSTATE 40P01, 40001), a lost race on a
 *   unique index, and a chain that moved while it was being locked rerun the whole
 *   transaction, a bounded number of times, with a growing, jittered wait; past that
 *   the call fails with METADATA_CONTENDED (nothing changed; callers may retry).
 * - A lost or refused connection never crashes the process (the pool's and every
 *   client's 'error' events are handled, from the moment it connects): the call fails
 *   with METADATA_UNAVAILABLE, which callers may retry, and the pool connects again
 *   once the server is back. After such a failure in COMMIT the outcome is unknown; the
 *   caller's retry must be idempotent or read first.
 * - A pooled connection the server terminated while it sat idle (a restart, a
 *   failover: SQLSTATE 57P01/57P02) is found dead by the first statement sent on it,
 *   whose answer is that notice (or, where node-postgres saw the end first, a refusal
 *   to send it): that statement did not run (or, ended while it ran, was rolled back),
 *   so the transaction is sent again on another connection, until the pool has none
 *   left from before (bounded). Only a failure after the first
 *   statement is METADATA_UNAVAILABLE to the caller.
 */
import pg from 'pg';
import type { Pool, PoolClient } from 'pg';
import type { Logger } from 'pino';
import { CommitError, NamespaceError, RosetError } from '../errors/index.js';
import { newId } from './ids.js';
import { barrierError, folderDeleted, refHeld } from './barrier.js';
import { redactDatabaseUrl } from './database-url.js';
import { migratePostgres } from './postgres-schema.js';
import type { CommitErrorInfo, CommitProgress, CommitStats, NodeState, NodeType } from '../api/types.js';
import {
  nowTimespec,
  type AgentRecord, type AgentTaskKind, type AutoCommitRulesRecord, type AgentTaskRecord, type ApiKeyRecord, type AttrChange, type Barrier, type CommitPhase, type CommitRecord, type CommittedFile, type CommittedFolder, type PurgeCandidate, type PurgeOptions, type PurgeOutcome, type Cursor, type GroupRecord, type Guard,
  type MetadataStore, type MountRecord, type MoveRequest, type NewNode, type NodeRecord, type NodeWithPath, type RefLogRecord, type RefRecord,
  type SubtreeNode, type Timespec,
} from './types.js';

type Row = Record<string, unknown>;

/** How many times a transaction runs before a deadlock or a lost race is reported. */
const MAX_ATTEMPTS = 10;
/** The longest wait before a transaction the server aborted for a concurrent one runs again. */
const MAX_BACKOFF_MS = 1000;
/** Connections found terminated by the server before their first statement, tried past in one call. */
const MAX_STALE = 32;
/** Deeper than any real path (4096 bytes): a recursive walk stops here whatever the data. */
const MAX_DEPTH = 4096;

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
/** The columns of `NODE` without the subfolder count. */
const NODE_COLUMNS = [
  'id', 'mount_id', 'parent_id', 'name', 'type', 'size', 'mode', 'uid', 'gid', 'atime_s', 'atime_ns', 'mtime_s', 'mtime_ns', 'ctime_s', 'ctime_ns',
  'state', 'commit_id', 'sha256', 'owner_agent', 'created_at', 'updated_at', 'deleted_at',
];

function commitFrom(r: Row): CommitRecord {
  return {
    id: r.id as string, mountId: r.mount_id as string, nodeId: r.node_id as string, path: r.path as string, message: r.message as string,
    groupId: (r.group_id as string | null) ?? null, parentCommitId: (r.parent_commit_id as string | null) ?? null,
    phase: r.phase as CommitPhase,
    error: r.error_code ? { code: r.error_code as string, message: (r.error_message as string) ?? '' } : null,
    stats: { files: Number(r.files), bytes: Number(r.bytes), uploadedBytes: Number(r.uploaded_bytes), dedupedBytes: Number(r.deduped_bytes) },
    progress: (r.progress as CommitProgress | null) ?? null,
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

function agentFrom(r: Row): AgentRecord {
  return {
    id: r.id as string, mountId: r.mount_id as string, mountpoint: (r.mountpoint as string | null) ?? null, hostname: r.hostname as string,
    registeredAt: r.registered_at as string, lastSeenAt: r.last_seen_at as string,
  };
}

/** No row: never set. json columns come back parsed by the driver; bigint as a string. */
function rulesFrom(mountId: string, r: Row | undefined): AutoCommitRulesRecord {
  if (!r) return { mountId, rules: [], version: 0, updatedAt: null, updatedBy: null };
  return { mountId, rules: r.rules as string[], version: Number(r.version), updatedAt: r.updated_at as string, updatedBy: r.updated_by as string };
}

/** json columns come back parsed by the driver. */
function taskFrom(r: Row): AgentTaskRecord {
  return {
    id: r.id as string, agentId: r.agent_id as string, commitId: r.commit_id as string, kind: r.kind as AgentTaskKind,
    args: r.args as Record<string, unknown>, status: r.status as AgentTaskRecord['status'],
    result: r.result ?? null,
    error: (r.error as AgentTaskRecord['error'] | null) ?? null,
    createdAt: r.created_at as string, finishedAt: (r.finished_at as string | null) ?? null,
    progress: r.progress ?? null,
  };
}

/**
 * The chain from a node up to its mount's root: `up(id, parent_id, state, deleted_at,
 * name, depth)`; `p` is the placeholder of the node's id.
 */
const UP = (p: string): string => `WITH RECURSIVE up(id, parent_id, state, deleted_at, name, depth) AS (
  SELECT id, parent_id, state, deleted_at, name, 0 FROM nodes WHERE id = ${p}
  UNION ALL
  SELECT n.id, n.parent_id, n.state, n.deleted_at, n.name, up.depth + 1 FROM nodes n JOIN up ON n.id = up.parent_id WHERE up.depth < ${MAX_DEPTH}
)`;

/** Live nodes strictly below a node, with paths relative to it: `down(id, rel)`. */
const DOWN = (p: string): string => `WITH RECURSIVE down(id, rel, depth) AS (
  SELECT id, name, 1 FROM nodes WHERE parent_id = ${p} AND deleted_at IS NULL
  UNION ALL
  SELECT n.id, down.rel || '/' || n.name, down.depth + 1 FROM nodes n JOIN down ON n.parent_id = down.id WHERE n.deleted_at IS NULL AND down.depth < ${MAX_DEPTH}
)`;

/** The nearest non-staging node at or above `$1` (itself first): what refuses a change. */
/** Every node at or below a node, soft-deleted ones included: `every(id)`. */
const EVERY = (p: string): string => `WITH RECURSIVE every(id) AS (
  SELECT id FROM nodes WHERE id = ${p}
  UNION ALL
  SELECT n.id FROM nodes n JOIN every ON n.parent_id = every.id
)`;

const BARRIER = `${UP('$1')} SELECT id, state FROM up WHERE state <> 'staging' ORDER BY depth LIMIT 1`;

/**
 * The path of the node `up` starts from, as `path_names` (names below the root, '/'
 * between them) and `rooted` (whether the chain ends at a root): a path only if rooted.
 */
const PATH_OF_UP = `(SELECT string_agg(name, '/' ORDER BY depth DESC) FROM up WHERE parent_id IS NOT NULL) AS path_names,
  (SELECT parent_id IS NULL FROM up ORDER BY depth DESC LIMIT 1) AS rooted`;

function pathFrom(r: Row | undefined): string | null {
  if (!r || r.rooted !== true) return null;
  return `/${(r.path_names as string | null) ?? ''}`;
}

const isoNow = (): string => new Date().toISOString();

/** A node of a locked chain, as read after the locks were taken. */
interface ChainRow {
  id: string;
  parentId: string | null;
  mountId: string;
  name: string;
  type: NodeType;
  state: NodeState;
  deletedAt: string | null;
}

/** Thrown inside a transaction to run it again: something it read moved before it could lock it. */
class Rerun extends Error {}

const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN']);
/** admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections, and every connection_exception (08xxx). */
const SERVER_GONE = new Set(['57P01', '57P02', '57P03', '53300']);
/** admin_shutdown, crash_shutdown: the server ended the session; a statement answered with this never ran. */
const TERMINATED = new Set(['57P01', '57P02']);
/** node-postgres refusing a statement on a connection it knows is dead: nothing was sent. */
const NOT_QUERYABLE = /is not queryable/;
const CLIENT_GONE = /Connection terminated|not queryable|timeout exceeded when trying to connect|Connection terminated due to connection timeout|terminating connection/i;

/** Whether `err` says the server could not be reached or the connection was lost (not a refusal by SQL). */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; syscall?: unknown; message?: unknown; errors?: unknown } | null | undefined;
  if (!e || typeof e !== 'object') return false;
  if (typeof e.code === 'string' && (SOCKET_CODES.has(e.code) || SERVER_GONE.has(e.code) || e.code.startsWith('08'))) return true;
  if (e.syscall === 'connect') return true;
  if (Array.isArray(e.errors) && e.errors.some(isConnectionError)) return true;
  return typeof e.message === 'string' && CLIENT_GONE.test(e.message);
}

/** Whether a statement's failure says it never ran: the server had ended the session, or the client knew it had. */
function neverRan(err: unknown): boolean {
  if (TERMINATED.has(sqlState(err) ?? '')) return true;
  const m = (err as { message?: unknown } | null | undefined)?.message;
  return typeof m === 'string' && NOT_QUERYABLE.test(m);
}

function sqlState(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null | undefined)?.code;
  return typeof c === 'string' ? c : undefined;
}

const sleep = (ms: number) => new Promise<void>((r) => { setTimeout(r, ms); });

/** The statements of one transaction, on one pooled connection. */
class Tx {
  constructor(private readonly c: PoolClient, private readonly counted: () => void) {}

  async all(sql: string, params: unknown[] = []): Promise<Row[]> {
    this.counted();
    return (await this.c.query(sql, params)).rows as Row[];
  }

  async one(sql: string, params: unknown[] = []): Promise<Row | undefined> {
    return (await this.all(sql, params))[0];
  }

  async run(sql: string, params: unknown[] = []): Promise<number> {
    this.counted();
    return (await this.c.query(sql, params)).rowCount ?? 0;
  }
}

export interface PostgresOptions {
  log?: Logger;
  /** Connections in the pool (default 10). */
  maxConnections?: number;
  /** How long to wait for a connection before METADATA_UNAVAILABLE (default 10 s). */
  connectTimeoutMs?: number;
  /**
   * Race tests only: awaited inside a transaction at a named point (a soft delete after
   * it checked the refs, a ref move after it checked the commit's folder), widening a
   * window the row locks must keep closed.
   */
  pauseAt?: (point: 'soft-delete.after-ref-check' | 'set-ref.after-folder-check') => Promise<void>;
}

export class PostgresMetadataStore implements MetadataStore {
  /**
   * Statements executed since open: tests count the metadata queries a filesystem
   * request costs.
   */
  queries = 0;

  private constructor(
    private readonly pool: Pool,
    private readonly log: Logger | undefined,
    private readonly where: string,
    private readonly pauseAt: PostgresOptions['pauseAt'],
  ) {}

  /**
   * Connects to `url` (`postgres://` or `postgresql://`), brings the schema up to date
   * (refusing a newer one) and returns the store. Connection failures throw
   * METADATA_UNAVAILABLE; the URL in messages and logs has no password.
   */
  static async open(url: string, opts: PostgresOptions = {}): Promise<PostgresMetadataStore> {
    const where = redactDatabaseUrl(url);
    const pool = new pg.Pool({
      connectionString: url,
      max: opts.maxConnections ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: 'roset',
    });
    // An idle connection that the server closes (restart, failover, idle timeout) is
    // reported here; without a listener it would be an uncaught exception.
    pool.on('error', (err) => opts.log?.warn({ err: { message: err.message, code: sqlState(err) }, database: where }, 'metadata database: an idle connection was lost'));
    // And every connection listens for its whole life. The pool's listener is off while
    // a connection is handed out, and a new one is handed out from inside the socket read
    // that finished its startup: a server that ends the session in that same read (a
    // restart) makes it emit 'error' before withClient listens, an uncaught exception that
    // ended the process. Such a connection is then not queryable: its first statement
    // fails unsent, and tx() sends the transaction again on another.
    pool.on('connect', (client) => client.on('error', (err) => opts.log?.debug({ err: { message: err.message, code: sqlState(err) }, database: where }, 'metadata database: a connection ended')));
    const store = new PostgresMetadataStore(pool, opts.log, where, opts.pauseAt);
    try {
      await store.withClient(async (c) => {
        const enc = (await c.query<{ server_encoding: string }>('SHOW server_encoding')).rows[0]?.server_encoding;
        if (enc !== 'UTF8') {
          throw new Error(`The metadata database ${where} uses the ${enc} encoding; Roset needs UTF8 (names are UTF-8, compared byte for byte). Create it with ENCODING 'UTF8'`);
        }
        const { from, to } = await migratePostgres(c);
        if (from !== to) opts.log?.info({ database: where, from, to }, 'metadata database schema migrated');
      });
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    return store;
  }

  private unavailable(err: unknown): RosetError {
    const why = err instanceof Error ? err.message : String(err);
    return new NamespaceError('METADATA_UNAVAILABLE', `The metadata database ${this.where} is unavailable: ${why}`, {}, { cause: err });
  }

  /**
   * Runs `fn` on a pooled connection that stays the caller's until `fn` ends, mapping
   * connection failures to METADATA_UNAVAILABLE and dropping the broken connection.
   */
  private async withClient<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    let c: PoolClient;
    try {
      c = await this.pool.connect();
    } catch (err) {
      throw isConnectionError(err) ? this.unavailable(err) : err;
    }
    // A checked-out connection that dies between two queries emits 'error' too.
    let lost: Error | undefined;
    const onError = (err: Error): void => {
      lost = err;
      this.log?.warn({ err: { message: err.message, code: sqlState(err) }, database: this.where }, 'metadata database: a connection in use was lost');
    };
    c.on('error', onError);
    try {
      return await fn(c);
    } catch (err) {
      if (isConnectionError(err)) {
        lost ??= err as Error;
        throw this.unavailable(err);
      }
      throw err;
    } finally {
      c.off('error', onError);
      c.release(lost ?? undefined);
    }
  }

  /**
   * Runs `fn` as one transaction, again after a deadlock, a serialization failure, a
   * `Rerun`, or (with `retryUnique`) a unique violation, up to MAX_ATTEMPTS times.
   */
  private async tx<T>(fn: (t: Tx) => Promise<T>, opts: { retryUnique?: boolean; single?: boolean } = {}): Promise<T> {
    let stale = 0;
    for (let attempt = 1; ; attempt++) {
      // Statements sent on this attempt's connection, BEGIN included.
      let sent = 0;
      const counted = (): void => { this.queries++; sent++; };
      try {
        return await this.withClient(async (c) => {
          // One statement is a transaction of its own: no BEGIN and COMMIT round trips.
          if (opts.single) return await fn(new Tx(c, counted));
          sent++;
          await c.query('BEGIN');
          try {
            const out = await fn(new Tx(c, counted));
            await c.query('COMMIT');
            return out;
          } catch (err) {
            if (!isConnectionError(err)) await c.query('ROLLBACK');
            throw err;
          }
        });
      } catch (err) {
        // A connection the server had already terminated, found by its first statement
        // (answered with the notice, or not sent at all). Sent again only then: BEGIN
        // changes nothing, and a lone statement the server ended while it ran was rolled
        // back. The one case this cannot tell apart is a lone statement ended in the
        // instant between its commit and its answer.
        if (sent === 1 && neverRan((err as { cause?: unknown }).cause) && ++stale <= MAX_STALE) {
          attempt--;
          continue;
        }
        const state = sqlState(err);
        const contended = err instanceof Rerun || state === '40001' || state === '40P01';
        const again = contended || (opts.retryUnique === true && state === '23505');
        if (!again) throw err;
        if (attempt >= MAX_ATTEMPTS) {
          if (!contended) throw err;
          throw new NamespaceError('METADATA_CONTENDED',
            `The metadata database aborted this change ${MAX_ATTEMPTS} times for concurrent ones (last: ${(err as Error).message}); nothing was changed`, {}, { cause: err });
        }
        // Back off with full jitter, up to a second: a deadlock takes the server
        // deadlock_timeout (1 s by default) to find, and losers that come back within a
        // few milliseconds of each other, on a busy machine, meet again.
        await sleep(Math.random() * Math.min(MAX_BACKOFF_MS, 5 * 2 ** attempt));
      }
    }
  }

  /** One statement in its own (implicit) transaction, with the same retries as `tx`. */
  private async all(sql: string, params: unknown[] = []): Promise<Row[]> {
    return this.tx((t) => t.all(sql, params), { single: true });
  }

  private async one(sql: string, params: unknown[] = []): Promise<Row | undefined> {
    return (await this.all(sql, params))[0];
  }

  private async run(sql: string, params: unknown[] = []): Promise<number> {
    return this.tx((t) => t.run(sql, params), { single: true });
  }

  // ---- Locks and the barrier ----------------------------------------------------------

  /**
   * Locks `id` and every node above it up to the root: `id` itself `FOR UPDATE` when
   * `self` is 'update' (the caller changes what a barrier check reads), every other
   * node `FOR KEY SHARE`. Returns the chain from `id` up, read after every lock is held
   * (so no node of it can change state, move or go away until the transaction ends), or
   * [] if `id` does not exist. A chain cut short (an ancestor removed) is returned as
   * far as it goes.
   *
   * The ancestors are locked before the node itself: a transaction that holds a folder
   * `FOR UPDATE` and then updates its subtree (completing a commit, a soft delete)
   * takes the locks top down too, so the two never wait on each other in a cycle.
   */
  private async lockChain(t: Tx, id: string, self: 'update' | 'share'): Promise<ChainRow[]> {
    const locked = new Set<string>();
    // In 'update' mode the node is never share-locked first: two transactions holding
    // it shared and both asking for more would deadlock.
    const skip = self === 'update' ? [id] : [];
    let selfLocked = self === 'share';
    let from = id;
    for (let round = 0; round < 32; round++) {
      const got = await t.all(`${UP('$1')} SELECT n.id FROM nodes n WHERE n.id IN (SELECT id FROM up) AND NOT (n.id = ANY($2::text[]))
        ORDER BY n.id FOR KEY SHARE OF n`, [from, [...locked, ...skip]]);
      for (const r of got) locked.add(r.id as string);
      if (!selfLocked) {
        if (!(await t.one('SELECT id FROM nodes WHERE id = $1 FOR UPDATE', [id]))) return [];
        locked.add(id);
        selfLocked = true;
      }
      // Read again: a statement after the locks sees every change made before them.
      const rows = await t.all('SELECT id, parent_id, mount_id, name, type, state, deleted_at FROM nodes WHERE id = ANY($1::text[])', [[...locked]]);
      const byId = new Map(rows.map((r) => [r.id as string, {
        id: r.id as string, parentId: (r.parent_id as string | null) ?? null, mountId: r.mount_id as string, name: r.name as string,
        type: r.type as NodeType, state: r.state as NodeState, deletedAt: (r.deleted_at as string | null) ?? null,
      }]));
      const chain: ChainRow[] = [];
      let cur: string | null = id;
      while (cur !== null && byId.has(cur) && chain.length <= MAX_DEPTH) {
        const r: ChainRow = byId.get(cur)!;
        chain.push(r);
        cur = r.parentId;
      }
      if (cur === null) return chain;
      if (chain.length > MAX_DEPTH) throw new Error(`the chain above node ${id} does not end at a root`);
      // `cur` is a parent we do not hold: the chain moved while we locked it, or ends in a
      // removed node. Lock from there up (or stop if it is gone).
      if (locked.has(cur)) return chain; // locked but no longer exists: removed
      if (!(await t.one('SELECT 1 FROM nodes WHERE id = $1', [cur]))) return chain;
      from = cur;
    }
    throw new Rerun(`the folders above node ${id} kept moving while they were being locked`);
  }

  /** The nearest non-staging node of a chain (itself first): what refuses a change. */
  private static barrierOfChain(chain: ChainRow[]): Barrier | null {
    const b = chain.find((r) => r.state !== 'staging');
    return b ? { code: b.state === 'sealing' ? 'SEALED' : 'COMMITTED', nodeId: b.id } : null;
  }

  /** Throws the barrier's error for a change under `guard`, from a locked chain. */
  private async guardedChain(t: Tx, chain: ChainRow[], guard: Guard, what: string): Promise<void> {
    if (guard === 'none') return;
    const b = PostgresMetadataStore.barrierOfChain(chain);
    if (!b || (guard === 'not-committed' && b.code === 'SEALED')) return;
    throw barrierError(b, (await this.pathIn(t, b.nodeId)) ?? b.nodeId, what);
  }

  private async pathIn(t: Tx, id: string): Promise<string | null> {
    // A soft-deleted node keeps its edge: its path is where it was when it was deleted.
    return pathFrom(await t.one(`${UP('$1')} SELECT ${PATH_OF_UP} WHERE EXISTS (SELECT 1 FROM up)`, [id]));
  }

  private async liveNode(t: Tx, id: string): Promise<NodeRecord | null> {
    const r = await t.one(`SELECT ${NODE} FROM nodes n WHERE n.id = $1 AND n.deleted_at IS NULL`, [id]);
    return r ? nodeFrom(r) : null;
  }

  private async child(t: Tx, parentId: string, name: string): Promise<NodeRecord | null> {
    const r = await t.one(`SELECT ${NODE} FROM nodes n WHERE n.parent_id = $1 AND n.name = $2 AND n.deleted_at IS NULL`, [parentId, name]);
    return r ? nodeFrom(r) : null;
  }

  private async descendantIn(t: Tx, id: string, states: NodeState[]): Promise<boolean> {
    return !!(await t.one(`${DOWN('$1')} SELECT 1 FROM down JOIN nodes n ON n.id = down.id WHERE n.state = ANY($2::text[]) LIMIT 1`, [id, states]));
  }

  /** An entry changed in these folders: their mtime and ctime move (POSIX). In id order, so two such changes never wait on each other in a cycle. */
  private async touchFolders(t: Tx, ids: string[], ts: Timespec, at: string): Promise<void> {
    for (const id of [...new Set(ids)].sort()) {
      await t.run('UPDATE nodes SET mtime_s = $1, mtime_ns = $2, ctime_s = $1, ctime_ns = $2, updated_at = $3 WHERE id = $4', [ts.sec, ts.nsec, at, id]);
    }
  }

  // ---- Mounts -------------------------------------------------------------------------

  async createMount(m: MountRecord): Promise<MountRecord> {
    const t = { sec: Math.floor(Date.parse(m.createdAt) / 1000), nsec: (Date.parse(m.createdAt) % 1000) * 1e6 };
    try {
      await this.tx(async (x) => {
        await x.run('INSERT INTO mounts (id, name, store, created_at) VALUES ($1, $2, $3, $4)', [m.id, m.name, m.store, m.createdAt]);
        // Every mount has a root folder, the only node without a parent.
        await x.run(`INSERT INTO nodes (id, mount_id, parent_id, name, type, size, mode, uid, gid, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns,
            state, created_at, updated_at)
          VALUES ($1, $2, NULL, '', 'folder', 0, $3, $4, $5, $6, $7, $6, $7, $6, $7, 'staging', $8, $8)`,
        [`root_${m.id}`, m.id, 0o40755, process.getuid?.() ?? 0, process.getgid?.() ?? 0, t.sec, t.nsec, m.createdAt]);
      });
    } catch (err) {
      if (sqlState(err) === '23505') throw new NamespaceError('NODE_EXISTS', `A mount named ${m.name} already exists`);
      throw err;
    }
    return m;
  }

  async getMount(id: string): Promise<MountRecord | null> {
    const r = await this.one('SELECT * FROM mounts WHERE id = $1', [id]);
    return r ? { id: r.id as string, name: r.name as string, store: r.store as string, createdAt: r.created_at as string } : null;
  }

  async listMounts(): Promise<MountRecord[]> {
    return (await this.all('SELECT * FROM mounts ORDER BY created_at, id')).map((r) => ({ id: r.id as string, name: r.name as string, store: r.store as string, createdAt: r.created_at as string }));
  }

  async getAutoCommitRules(mountId: string): Promise<AutoCommitRulesRecord> {
    return rulesFrom(mountId, await this.one('SELECT * FROM mount_auto_commit WHERE mount_id = $1', [mountId]));
  }

  async setAutoCommitRules(mountId: string, rules: string[], expectedVersion: number | undefined, at: string, by: string): Promise<AutoCommitRulesRecord | null> {
    return this.tx(async (x) => {
      const row = (await x.all('SELECT version FROM mount_auto_commit WHERE mount_id = $1 FOR UPDATE', [mountId]))[0];
      const current = row ? Number(row.version) : 0;
      if (expectedVersion !== undefined && expectedVersion !== current) return null;
      const version = current + 1;
      // Two first sets at once: one insert loses on the key and its transaction runs
      // again, when the row is there to lock.
      if (row) {
        await x.run('UPDATE mount_auto_commit SET rules = $2, version = $3, updated_at = $4, updated_by = $5 WHERE mount_id = $1',
          [mountId, JSON.stringify(rules), version, at, by]);
      } else {
        await x.run('INSERT INTO mount_auto_commit (mount_id, rules, version, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5)',
          [mountId, JSON.stringify(rules), version, at, by]);
      }
      return { mountId, rules: [...rules], version, updatedAt: at, updatedBy: by };
    }, { retryUnique: true });
  }

  // ---- Nodes: reads ---------------------------------------------------------------

  async getNode(id: string): Promise<NodeRecord | null> {
    const r = await this.one(`SELECT ${NODE} FROM nodes n WHERE n.id = $1`, [id]);
    return r ? nodeFrom(r) : null;
  }

  async lookup(parentId: string, name: string): Promise<NodeRecord | null> {
    return this.tx((t) => this.child(t, parentId, name), { single: true });
  }

  async root(mountId: string): Promise<NodeRecord> {
    const r = await this.one('SELECT * FROM nodes WHERE mount_id = $1 AND parent_id IS NULL', [mountId]);
    if (!r) throw new NamespaceError('MOUNT_NOT_FOUND', `No mount ${mountId}`);
    return nodeFrom(r);
  }

  async resolvePath(mountId: string, path: string): Promise<NodeWithPath | null> {
    const names = path.split('/').filter(Boolean);
    // One statement (one snapshot): walk down from the root one name at a time.
    const r = await this.one(`WITH RECURSIVE walk(id, depth) AS (
        SELECT id, 0 FROM nodes WHERE mount_id = $1 AND parent_id IS NULL
        UNION ALL
        SELECT n.id, walk.depth + 1 FROM walk JOIN nodes n
          ON n.parent_id = walk.id AND n.name = ($2::text[])[walk.depth + 1] AND n.deleted_at IS NULL
        WHERE walk.depth < $3
      )
      SELECT ${names.length === 0 ? 'n.*' : NODE} FROM walk JOIN nodes n ON n.id = walk.id WHERE walk.depth = $3`, [mountId, names, names.length]);
    return r ? { ...nodeFrom(r), path } : null;
  }

  async pathOf(id: string): Promise<string | null> {
    return this.tx((t) => this.pathIn(t, id), { single: true });
  }

  async getNodeWithPath(id: string): Promise<NodeWithPath | null> {
    const r = await this.one(`${UP('$1')} SELECT ${NODE}, ${PATH_OF_UP} FROM nodes n WHERE n.id = $1 AND n.deleted_at IS NULL`, [id]);
    const path = pathFrom(r);
    if (!r || path === null) return null;
    const { path_names: _names, rooted: _rooted, ...rest } = r;
    return { ...nodeFrom(rest), path };
  }

  async listChildren(parentId: string, page?: Cursor): Promise<NodeRecord[]> {
    if (!page) return (await this.all('SELECT * FROM nodes WHERE parent_id = $1 AND deleted_at IS NULL ORDER BY name', [parentId])).map(nodeFrom);
    return (await this.all('SELECT * FROM nodes WHERE parent_id = $1 AND deleted_at IS NULL AND name > $2 ORDER BY name LIMIT $3',
      [parentId, page.cursor ?? '', page.limit])).map(nodeFrom);
  }

  async listSubtree(id: string): Promise<SubtreeNode[]> {
    return (await this.all(`${DOWN('$1')} SELECT n.*, down.rel AS rel_path FROM down JOIN nodes n ON n.id = down.id ORDER BY down.rel COLLATE "C"`, [id]))
      .map((r) => ({ ...nodeFrom(r), relPath: r.rel_path as string }));
  }

  async hasDescendantInState(id: string, states: NodeState[]): Promise<boolean> {
    return this.tx((t) => this.descendantIn(t, id, states), { single: true });
  }

  async countSubfolders(id: string): Promise<number> {
    return Number((await this.one("SELECT COUNT(*) AS c FROM nodes WHERE parent_id = $1 AND deleted_at IS NULL AND type = 'folder'", [id]))!.c);
  }

  async barrierOf(id: string): Promise<Barrier | null> {
    const b = await this.one(BARRIER, [id]);
    return b ? { code: b.state === 'sealing' ? 'SEALED' : 'COMMITTED', nodeId: b.id as string } : null;
  }

  async getNodeForWrite(id: string): Promise<{ node: NodeRecord; barrier: Barrier | null } | null> {
    // One statement: the node and the nearest non-staging node above it.
    const r = await this.one(`${UP('$1')}, b AS (SELECT id AS b_id, state AS b_state FROM up WHERE state <> 'staging' ORDER BY depth LIMIT 1)
      SELECT ${NODE}, b.b_id, b.b_state FROM nodes n LEFT JOIN b ON true WHERE n.id = $1 AND n.deleted_at IS NULL`, [id]);
    if (!r) return null;
    const { b_id: bId, b_state: bState, ...rest } = r;
    return { node: nodeFrom(rest), barrier: bId ? { code: bState === 'sealing' ? 'SEALED' : 'COMMITTED', nodeId: bId as string } : null };
  }

  // ---- Nodes: changes ---------------------------------------------------------------

  async createNode(n: NewNode): Promise<NodeRecord> {
    const t = n.time ?? nowTimespec();
    const now = isoNow();
    return this.tx(async (x) => {
      const chain = await this.lockChain(x, n.parentId, 'share');
      const p = chain[0];
      if (!p || p.deletedAt !== null || p.mountId !== n.mountId) throw new NamespaceError('NODE_NOT_FOUND', 'The parent folder does not exist');
      if (p.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', `The parent of ${n.name} is not a folder`);
      await this.guardedChain(x, chain, 'writable', `creating ${n.name}`);
      const existing = await this.child(x, p.id, n.name);
      if (existing) {
        if (existing.type === 'file' && n.type === 'file' && existing.ownerAgent && n.ownerAgent && existing.ownerAgent !== n.ownerAgent) {
          throw new NamespaceError('CONFLICT', `${n.name} is being written from another node`, { name: n.name });
        }
        throw new NamespaceError('NODE_EXISTS', `${n.name} already exists`, { name: n.name });
      }
      const rec: NodeRecord = {
        id: `node_${newId()}`, mountId: n.mountId, parentId: p.id, name: n.name, type: n.type, size: 0, mode: n.mode, uid: n.uid, gid: n.gid,
        atime: t, mtime: t, ctime: t, state: 'staging', commitId: null, sha256: null, ownerAgent: n.ownerAgent, createdAt: now, updatedAt: now, deletedAt: null,
      };
      // A racing creation of the same name makes this INSERT fail on nodes_live_edge; the
      // transaction then runs again and answers NODE_EXISTS or CONFLICT from the winner.
      await x.run(`INSERT INTO nodes (id, mount_id, parent_id, name, type, size, mode, uid, gid, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns,
          state, owner_agent, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10, $9, $10, $9, $10, 'staging', $11, $12, $12)`,
      [rec.id, rec.mountId, rec.parentId, rec.name, rec.type, rec.mode, rec.uid, rec.gid, t.sec, t.nsec, rec.ownerAgent, now]);
      await this.touchFolders(x, [p.id], t, now);
      return rec;
    }, { retryUnique: true });
  }

  async removeNode(mountId: string, parentId: string, name: string, type: NodeType): Promise<NodeRecord> {
    const t = nowTimespec();
    const now = isoNow();
    return this.tx(async (x) => {
      const parent = await x.one('SELECT mount_id FROM nodes WHERE id = $1 AND deleted_at IS NULL', [parentId]);
      if (!parent || parent.mount_id !== mountId) throw new NamespaceError('NODE_NOT_FOUND', 'The parent folder does not exist');
      const found = await x.one('SELECT id FROM nodes WHERE parent_id = $1 AND name = $2 AND deleted_at IS NULL', [parentId, name]);
      if (!found) throw new NamespaceError('NODE_NOT_FOUND', `${name} does not exist`);
      const chain = await this.lockChain(x, found.id as string, 'update');
      // Moved, renamed or removed between the lookup and the lock: look again.
      if (chain[0]?.parentId !== parentId || chain[0].name !== name || chain[0].deletedAt !== null) throw new Rerun(`${name} changed while it was being removed`);
      if (chain[1]?.deletedAt !== null || chain[1].mountId !== mountId) throw new NamespaceError('NODE_NOT_FOUND', 'The parent folder does not exist');
      const n = (await this.liveNode(x, chain[0].id))!;
      if (type === 'file' && n.type === 'folder') throw new NamespaceError('IS_A_FOLDER', `${name} is a folder`);
      if (type === 'folder' && n.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', `${name} is not a folder`);
      // The node itself counts: a committed folder in a staging folder stays.
      await this.guardedChain(x, chain, 'writable', `removing ${name}`);
      if (n.type === 'folder' && await x.one('SELECT 1 FROM nodes WHERE parent_id = $1 AND deleted_at IS NULL LIMIT 1', [n.id])) {
        throw new NamespaceError('FOLDER_NOT_EMPTY', `${name} is not empty`);
      }
      await x.run('DELETE FROM nodes WHERE id = $1', [n.id]);
      await this.touchFolders(x, [parentId], t, now);
      return n;
    });
  }

  async moveNode(req: MoveRequest): Promise<{ node: NodeRecord; replaced: NodeRecord | null }> {
    const t = nowTimespec();
    const now = isoNow();
    return this.tx(async (x) => {
      const srcParent = await x.one('SELECT mount_id FROM nodes WHERE id = $1 AND deleted_at IS NULL', [req.srcParentId]);
      if (!srcParent || srcParent.mount_id !== req.mountId) throw new NamespaceError('NODE_NOT_FOUND', 'The source folder does not exist');
      const dstFound = await x.one('SELECT mount_id, type FROM nodes WHERE id = $1 AND deleted_at IS NULL', [req.dstParentId]);
      if (!dstFound || dstFound.mount_id !== req.mountId) throw new NamespaceError('NODE_NOT_FOUND', 'The destination folder does not exist');
      if (dstFound.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', 'The destination parent is not a folder');
      const found = await this.child(x, req.srcParentId, req.srcName);
      if (!found) throw new NamespaceError('NODE_NOT_FOUND', `${req.srcName} does not exist`);
      // rename(p, p) changes nothing and succeeds, as on any POSIX file system.
      if (req.srcParentId === req.dstParentId && req.srcName === req.dstName) return { node: found, replaced: null };

      const srcChain = await this.lockChain(x, found.id, 'update');
      if (srcChain[0]?.parentId !== req.srcParentId || srcChain[0].name !== req.srcName || srcChain[0].deletedAt !== null) {
        throw new Rerun(`${req.srcName} changed while it was being moved`);
      }
      const dstChain = await this.lockChain(x, req.dstParentId, 'share');
      const dstParent = dstChain[0];
      if (!dstParent || dstParent.deletedAt !== null) throw new NamespaceError('NODE_NOT_FOUND', 'The destination folder does not exist');
      if (srcChain[1]?.deletedAt !== null) throw new NamespaceError('NODE_NOT_FOUND', 'The source folder does not exist');
      const src = (await this.liveNode(x, found.id))!;
      // The node itself counts (a committed folder keeps its place), and both folders.
      await this.guardedChain(x, srcChain, 'writable', `moving ${req.srcName}`);
      await this.guardedChain(x, dstChain, 'writable', `moving into ${dstParent.name || '/'}`);
      if (src.type === 'folder') {
        if (dstChain.some((r) => r.id === src.id)) throw new NamespaceError('INVALID_MOVE', `Cannot move ${req.srcName} into itself`);
        if (await this.descendantIn(x, src.id, ['sealing', 'committed'])) {
          throw new NamespaceError('CONTAINS_COMMITS', `${req.srcName} holds sealing or committed folders and cannot be moved`);
        }
      }
      let dest = await this.child(x, req.dstParentId, req.dstName);
      if (dest) {
        if (req.noReplace) throw new NamespaceError('NODE_EXISTS', `${req.dstName} already exists`, { name: req.dstName });
        const destChain = await this.lockChain(x, dest.id, 'update');
        if (destChain[0]?.parentId !== req.dstParentId || destChain[0].name !== req.dstName || destChain[0].deletedAt !== null) {
          throw new Rerun(`${req.dstName} changed while it was being replaced`);
        }
        dest = (await this.liveNode(x, dest.id))!;
        if (dest.type === 'folder' && src.type !== 'folder') throw new NamespaceError('IS_A_FOLDER', `${req.dstName} is a folder`);
        if (dest.type !== 'folder' && src.type === 'folder') throw new NamespaceError('NOT_A_FOLDER', `${req.dstName} is not a folder`);
        await this.guardedChain(x, destChain, 'writable', `replacing ${req.dstName}`);
        if (dest.type === 'folder' && await x.one('SELECT 1 FROM nodes WHERE parent_id = $1 AND deleted_at IS NULL LIMIT 1', [dest.id])) {
          throw new NamespaceError('FOLDER_NOT_EMPTY', `${req.dstName} is not empty`);
        }
        await x.run('DELETE FROM nodes WHERE id = $1', [dest.id]);
      }
      // A racing creation of the destination name makes this fail on nodes_live_edge: run again.
      await x.run('UPDATE nodes SET parent_id = $1, name = $2, ctime_s = $3, ctime_ns = $4, updated_at = $5 WHERE id = $6',
        [req.dstParentId, req.dstName, t.sec, t.nsec, now, src.id]);
      await this.touchFolders(x, [req.srcParentId, req.dstParentId], t, now);
      return { node: { ...src, parentId: req.dstParentId, name: req.dstName, ctime: t, updatedAt: now }, replaced: dest };
    }, { retryUnique: true });
  }

  async setAttrs(mountId: string, id: string, attrs: AttrChange, guard: Guard): Promise<NodeRecord> {
    const t = nowTimespec();
    const now = isoNow();
    return this.tx(async (x) => {
      const chain = guard === 'none' ? [] : await this.lockChain(x, id, 'share');
      // The row itself is locked for the update, so two changes of different attributes
      // never write back each other's old values.
      const r = await x.one(`SELECT ${NODE} FROM nodes n WHERE n.id = $1 AND n.deleted_at IS NULL FOR NO KEY UPDATE OF n`, [id]);
      const n = r ? nodeFrom(r) : null;
      if (!n || n.mountId !== mountId) throw new NamespaceError('NODE_NOT_FOUND', `No node ${id}`);
      await this.guardedChain(x, chain, guard, `changing the attributes of ${n.name || '/'}`);
      const next: NodeRecord = {
        ...n, size: attrs.size ?? n.size, mode: attrs.mode === undefined ? n.mode : (n.mode & ~0o7777) | (attrs.mode & 0o7777), uid: attrs.uid ?? n.uid, gid: attrs.gid ?? n.gid,
        atime: attrs.atime ?? n.atime, mtime: attrs.mtime ?? n.mtime, ctime: t, updatedAt: now,
      };
      await x.run(`UPDATE nodes SET size = $1, mode = $2, uid = $3, gid = $4, atime_s = $5, atime_ns = $6, mtime_s = $7, mtime_ns = $8, ctime_s = $9, ctime_ns = $10,
          updated_at = $11 WHERE id = $12`,
      [next.size, next.mode, next.uid, next.gid, next.atime.sec, next.atime.nsec, next.mtime.sec, next.mtime.nsec, t.sec, t.nsec, now, id]);
      return next;
    });
  }

  async softDeleteNode(id: string, at: string): Promise<NodeRecord> {
    return this.tx(async (x) => {
      const chain = await this.lockChain(x, id, 'update');
      const n = chain.length > 0 ? await this.liveNode(x, id) : null;
      if (!n) {
        const gone = await x.one('SELECT * FROM nodes WHERE id = $1', [id]);
        if (gone) return nodeFrom(gone);
        throw new NamespaceError('NODE_NOT_FOUND', `No node ${id}`);
      }
      if (!n.parentId) throw new NamespaceError('CROSS_DEVICE', 'The root folder cannot be deleted');
      // Anything inside a committed or sealing folder is refused; a committed folder
      // itself may go to the trash (its commit stays), a sealing one may not.
      await this.guardedChain(x, chain.slice(1), 'writable', `deleting ${n.name}`);
      if (n.state === 'sealing' || await this.descendantIn(x, id, ['sealing'])) {
        throw new NamespaceError('SEALED', `${n.name} is sealing for a commit, or holds a folder that is`);
      }
      // A ref keeps its commit's folder in the namespace: checked in this transaction.
      const held = await x.one(`${DOWN('$1')} SELECT r.name AS ref, c.path AS path FROM refs r JOIN commits c ON c.id = r.commit_id
        WHERE r.mount_id = $2 AND (c.node_id = $1 OR c.node_id IN (SELECT id FROM down)) ORDER BY r.name LIMIT 1`, [id, n.mountId]);
      if (held) throw refHeld(n.name, held.ref as string, held.path as string);
      await this.pauseAt?.('soft-delete.after-ref-check');
      await x.run(`${DOWN('$1')} UPDATE nodes SET deleted_at = $2, updated_at = $2 WHERE deleted_at IS NULL AND (id = $1 OR id IN (SELECT id FROM down))`, [id, at]);
      await this.touchFolders(x, [n.parentId], nowTimespec(), at);
      return { ...n, deletedAt: at, updatedAt: at };
    });
  }

  // ---- Commits ------------------------------------------------------------------------

  async beginCommit(c: CommitRecord): Promise<CommitRecord> {
    return this.tx(async (x) => {
      // The folder FOR UPDATE first: a commit racing this one on a folder below holds a
      // chain lock on it, and one on a folder above locks its own folder before it
      // looks below, so of two nested commits exactly one sees the other.
      const chain = await this.lockChain(x, c.nodeId, 'update');
      const folder = chain[0];
      if (!folder || folder.deletedAt !== null) throw new NamespaceError('NODE_NOT_FOUND', `${c.path} does not exist`);
      if (folder.type !== 'folder') throw new NamespaceError('NOT_A_FOLDER', 'Only folders can be committed');
      const b = PostgresMetadataStore.barrierOfChain(chain);
      if (b?.code === 'COMMITTED') throw new NamespaceError('COMMITTED', `${c.path} is already committed, or inside a committed folder`, { path: c.path });
      if (b) throw new NamespaceError('COMMIT_IN_PROGRESS', `${c.path}, or a folder around it, is being committed`, { path: c.path });
      if (await this.descendantIn(x, c.nodeId, ['sealing'])) throw new NamespaceError('COMMIT_IN_PROGRESS', `A folder inside ${c.path} is being committed`, { path: c.path });
      await x.run("UPDATE nodes SET state = 'sealing', commit_id = $1, updated_at = $2 WHERE id = $3", [c.id, c.createdAt, c.nodeId]);
      await x.run(`INSERT INTO commits (id, mount_id, node_id, path, message, group_id, parent_commit_id, phase, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, [c.id, c.mountId, c.nodeId, c.path, c.message, c.groupId, c.parentCommitId, c.phase, c.createdAt]);
      return c;
    });
  }

  async getCommit(id: string): Promise<CommitRecord | null> {
    const r = await this.one('SELECT * FROM commits WHERE id = $1', [id]);
    return r ? commitFrom(r) : null;
  }

  async listCommits(mountId: string, filter: { nodeId?: string; phases?: CommitPhase[] }, page: Cursor): Promise<CommitRecord[]> {
    const params: unknown[] = [mountId];
    const where = ['mount_id = $1'];
    const add = (cond: (p: string) => string, value: unknown) => { params.push(value); where.push(cond(`$${params.length}`)); };
    if (filter.nodeId) add((p) => `node_id = ${p}`, filter.nodeId);
    if (filter.phases?.length) add((p) => `phase = ANY(${p}::text[])`, filter.phases);
    if (page.cursor) add((p) => `seq < ${p}`, Number(page.cursor));
    params.push(page.limit);
    return (await this.all(`SELECT * FROM commits WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT $${params.length}`, params)).map(commitFrom);
  }

  /** The cursor of a commit in `listCommits` order. */
  async commitCursor(id: string): Promise<string | null> {
    const r = await this.one('SELECT seq FROM commits WHERE id = $1', [id]);
    return r ? String(r.seq) : null;
  }

  async listCommitsInPhases(phases: CommitPhase[]): Promise<CommitRecord[]> {
    return (await this.all('SELECT * FROM commits WHERE phase = ANY($1::text[]) ORDER BY seq', [phases])).map(commitFrom);
  }

  async listGroupCommits(groupId: string): Promise<CommitRecord[]> {
    return (await this.all('SELECT * FROM commits WHERE group_id = $1 ORDER BY seq', [groupId])).map(commitFrom);
  }

  async latestCompletedCommit(mountId: string): Promise<CommitRecord | null> {
    const r = await this.one("SELECT * FROM commits WHERE mount_id = $1 AND phase = 'completed' ORDER BY completed_at DESC, seq DESC LIMIT 1", [mountId]);
    return r ? commitFrom(r) : null;
  }

  async setCommitPhase(id: string, phase: 'uploading'): Promise<void> {
    await this.run("UPDATE commits SET phase = $1 WHERE id = $2 AND phase = 'sealing'", [phase, id]);
  }

  async setCommitProgress(id: string, progress: CommitProgress): Promise<void> {
    await this.run("UPDATE commits SET progress = $1 WHERE id = $2 AND phase IN ('sealing', 'uploading', 'manifested')", [JSON.stringify(progress), id]);
  }

  async markManifested(id: string, stats: CommitStats, files: CommittedFile[]): Promise<void> {
    await this.tx(async (x) => {
      for (const f of files) await x.run('UPDATE nodes SET size = $1, sha256 = $2 WHERE id = $3', [f.size, f.sha256, f.nodeId]);
      await x.run(`UPDATE commits SET phase = 'manifested', files = $1, bytes = $2, uploaded_bytes = $3, deduped_bytes = $4
        WHERE id = $5 AND phase IN ('sealing', 'uploading')`, [stats.files, stats.bytes, stats.uploadedBytes, stats.dedupedBytes, id]);
    });
  }

  async listCommittedFolders(mountId: string): Promise<CommittedFolder[]> {
    return (await this.all(`SELECT c.id AS commit_id, n.id AS node_id, n.parent_id, c.completed_at FROM commits c JOIN nodes n ON n.id = c.node_id
      WHERE c.mount_id = $1 AND c.phase = 'completed' AND c.purged_at IS NULL AND n.deleted_at IS NULL AND n.parent_id IS NOT NULL ORDER BY c.seq`, [mountId]))
      .map((r) => ({ commitId: r.commit_id as string, nodeId: r.node_id as string, parentId: r.parent_id as string, completedAt: r.completed_at as string }));
  }

  async listPurgeCandidates(mountId: string): Promise<PurgeCandidate[]> {
    return (await this.all(`SELECT c.id, c.mount_id, c.node_id, c.path FROM commits c JOIN nodes n ON n.id = c.node_id
      WHERE c.mount_id = $1 AND c.phase = 'completed' AND c.purged_at IS NULL AND n.deleted_at IS NOT NULL ORDER BY c.seq`, [mountId]))
      .map((r) => ({ commitId: r.id as string, mountId: r.mount_id as string, nodeId: r.node_id as string, path: r.path as string }));
  }

  /**
   * The commit row is locked FOR UPDATE before the refs and the ref log are read;
   * `setRef` locks it FOR SHARE before it moves a ref. Whichever locks first finishes
   * first: a purge that waited reads the racing ref (a READ COMMITTED statement after
   * the lock sees it), a setRef that waited reads `purged_at`.
   */
  async purgeCommit(id: string, keepSince: string, at: string, opts: PurgeOptions = {}): Promise<PurgeOutcome> {
    return this.tx(async (x): Promise<PurgeOutcome> => {
      const c = await x.one('SELECT * FROM commits WHERE id = $1 FOR UPDATE', [id]);
      if (!c) return { purged: false, reason: 'not-found' };
      if (c.purged_at) return { purged: true, nodes: 0 };
      if (c.phase !== 'completed') return { purged: false, reason: 'not-completed' };
      const folder = await x.one('SELECT deleted_at FROM nodes WHERE id = $1 FOR UPDATE', [c.node_id]);
      if (folder && folder.deleted_at === null && !(opts.dryRun && opts.assumeDeleted)) return { purged: false, reason: 'live' };
      if (await x.one('SELECT 1 FROM refs WHERE commit_id = $1 LIMIT 1', [id])) return { purged: false, reason: 'referenced' };
      if (await x.one('SELECT 1 FROM ref_log WHERE (from_commit_id = $1 OR to_commit_id = $1) AND updated_at >= $2 LIMIT 1', [id, keepSince])) {
        return { purged: false, reason: 'in-ref-log' };
      }
      if (await x.one(`${EVERY('$1')} SELECT 1 FROM commits o WHERE o.id <> $2 AND o.purged_at IS NULL AND o.node_id IN (SELECT id FROM every) LIMIT 1`, [c.node_id, id])) {
        return { purged: false, reason: 'holds-commits' };
      }
      if (opts.dryRun) return { purged: true, nodes: Number((await x.one(`${EVERY('$1')} SELECT COUNT(*) AS n FROM every`, [c.node_id]))!.n) };
      const nodes = await x.run(`${EVERY('$1')} DELETE FROM nodes WHERE id IN (SELECT id FROM every)`, [c.node_id]);
      await x.run('UPDATE commits SET purged_at = $1 WHERE id = $2', [at, id]);
      return { purged: true, nodes };
    });
  }

  async listPurgedWithManifest(): Promise<string[]> {
    return (await this.all('SELECT id FROM commits WHERE purged_at IS NOT NULL AND manifest_deleted_at IS NULL ORDER BY seq')).map((r) => r.id as string);
  }

  async markManifestDeleted(id: string, at: string): Promise<void> {
    await this.run('UPDATE commits SET manifest_deleted_at = $1 WHERE id = $2 AND purged_at IS NOT NULL', [at, id]);
  }

  /**
   * Locks commits and their folders `FOR UPDATE`, each set in id order: the commits
   * first (their phase decides), then the folders (their state changes). Returns the
   * commits as locked, by id.
   */
  private async lockCommits(x: Tx, ids: string[]): Promise<Map<string, Row>> {
    const rows = await x.all('SELECT * FROM commits WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE', [ids]);
    const folders = [...new Set(rows.map((r) => r.node_id as string))].sort();
    await x.all('SELECT id FROM nodes WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE', [folders]);
    return new Map(rows.map((r) => [r.id as string, r]));
  }

  async completeCommits(ids: string[], at: string, group?: { id: string }): Promise<void> {
    await this.tx(async (x) => {
      const locked = await this.lockCommits(x, ids);
      for (const id of ids) {
        const c = locked.get(id);
        if (!c || c.phase !== 'manifested') throw new Error(`commit ${id} is not manifested`);
        await x.run("UPDATE commits SET phase = 'completed', completed_at = $1 WHERE id = $2", [at, id]);
        c.phase = 'completed';
        // The folder and everything in it become immutable at once; files keep their
        // commit id so reads know which manifest they belong to.
        await x.run("UPDATE nodes SET state = 'committed', commit_id = $1, owner_agent = NULL, updated_at = $2 WHERE id = $3", [id, at, c.node_id]);
        await x.run(`${DOWN('$1')} UPDATE nodes SET state = 'committed', commit_id = COALESCE(commit_id, $2), owner_agent = NULL, updated_at = $3
          WHERE state <> 'committed' AND id IN (SELECT id FROM down)`, [c.node_id, id, at]);
        // The manifest's objects are recorded on the nodes now (markManifested): the pins go.
        await x.run(`${DOWN('$1')} DELETE FROM gc_pins WHERE node_id IN (SELECT id FROM down)`, [c.node_id]);
      }
      if (group) await x.run("UPDATE commit_groups SET status = 'committed', committed_at = $1 WHERE id = $2", [at, group.id]);
    });
  }

  async failCommits(ids: string[], error: CommitErrorInfo, group?: { id: string }): Promise<void> {
    await this.tx(async (x) => {
      const locked = await this.lockCommits(x, ids);
      for (const id of ids) {
        const c = locked.get(id);
        if (!c || c.phase === 'completed' || c.phase === 'failed') continue;
        await x.run("UPDATE commits SET phase = 'failed', error_code = $1, error_message = $2 WHERE id = $3", [error.code, error.message, id]);
        c.phase = 'failed';
        // Only the folder itself was flipped by beginCommit; its staged files never changed state.
        await x.run("UPDATE nodes SET state = 'staging', commit_id = NULL, updated_at = $1 WHERE id = $2 AND commit_id = $3", [isoNow(), c.node_id, id]);
      }
      if (group) await x.run("UPDATE commit_groups SET status = 'failed' WHERE id = $1 AND status = 'pending'", [group.id]);
    });
  }

  // ---- Refs ---------------------------------------------------------------------------

  async getRef(mountId: string, name: string): Promise<RefRecord | null> {
    const r = await this.one('SELECT * FROM refs WHERE mount_id = $1 AND name = $2', [mountId, name]);
    return r ? refFrom(r) : null;
  }

  async listRefs(mountId: string): Promise<RefRecord[]> {
    return (await this.all('SELECT * FROM refs WHERE mount_id = $1 ORDER BY name', [mountId])).map(refFrom);
  }

  async setRef(ref: RefRecord, expected: string | null | undefined): Promise<RefRecord | null> {
    return this.tx(async (x) => {
      // The target commit FOR SHARE before anything else: a racing purge holds it FOR
      // UPDATE (then this reads its purged_at) or waits for this transaction (then it
      // reads this ref). See purgeCommit.
      const target = await x.one('SELECT node_id, path, purged_at FROM commits WHERE id = $1 FOR SHARE', [ref.commitId]);
      if (target?.purged_at) throw new CommitError('COMMIT_PURGED', `Commit ${ref.commitId} was purged by garbage collection`);
      // The commit's folder and the folders above it, locked before the ref: a soft
      // delete of any of them holds its folder FOR UPDATE while it checks the refs, so
      // of a move and a delete racing, the later one sees the other and is refused.
      if (target) {
        const chain = await this.lockChain(x, target.node_id as string, 'share');
        if (chain[0]?.deletedAt) throw folderDeleted(ref.commitId, target.path as string);
        await this.pauseAt?.('set-ref.after-folder-check');
      }
      const cur = await x.one('SELECT commit_id FROM refs WHERE mount_id = $1 AND name = $2 FOR UPDATE', [ref.mountId, ref.name]);
      const curId = cur ? (cur.commit_id as string) : null;
      if (expected !== undefined && expected !== curId) return null;
      if (cur) {
        await x.run('UPDATE refs SET commit_id = $3, updated_at = $4, updated_by = $5 WHERE mount_id = $1 AND name = $2',
          [ref.mountId, ref.name, ref.commitId, ref.updatedAt, ref.updatedBy]);
      } else {
        // Not ON CONFLICT: a racing creation must lose (23505, run again and compare with
        // the winner's value), not overwrite it.
        await x.run('INSERT INTO refs (mount_id, name, commit_id, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5)',
          [ref.mountId, ref.name, ref.commitId, ref.updatedAt, ref.updatedBy]);
      }
      await x.run('INSERT INTO ref_log (mount_id, name, from_commit_id, to_commit_id, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6)',
        [ref.mountId, ref.name, curId, ref.commitId, ref.updatedAt, ref.updatedBy]);
      return ref;
    }, { retryUnique: true });
  }

  async deleteRef(mountId: string, name: string, by: string, at: string): Promise<boolean> {
    return this.tx(async (x) => {
      const cur = await x.one('SELECT commit_id FROM refs WHERE mount_id = $1 AND name = $2 FOR UPDATE', [mountId, name]);
      if (!cur) return false;
      await x.run('DELETE FROM refs WHERE mount_id = $1 AND name = $2', [mountId, name]);
      await x.run('INSERT INTO ref_log (mount_id, name, from_commit_id, to_commit_id, updated_at, updated_by) VALUES ($1, $2, $3, NULL, $4, $5)',
        [mountId, name, cur.commit_id, at, by]);
      return true;
    });
  }

  async refLog(mountId: string, name: string): Promise<RefLogRecord[]> {
    return (await this.all('SELECT * FROM ref_log WHERE mount_id = $1 AND name = $2 ORDER BY seq', [mountId, name])).map((r) => ({
      seq: Number(r.seq), mountId: r.mount_id as string, name: r.name as string, fromCommitId: (r.from_commit_id as string | null) ?? null,
      toCommitId: (r.to_commit_id as string | null) ?? null, updatedAt: r.updated_at as string, updatedBy: r.updated_by as string,
    }));
  }

  // ---- Groups -------------------------------------------------------------------------

  async createGroup(g: GroupRecord): Promise<GroupRecord> {
    await this.run('INSERT INTO commit_groups (id, mount_id, message, status, created_at, sealed_at, committed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)',
      [g.id, g.mountId, g.message, g.status, g.createdAt, g.sealedAt, g.committedAt]);
    return g;
  }

  async getGroup(id: string): Promise<GroupRecord | null> {
    const r = await this.one('SELECT * FROM commit_groups WHERE id = $1', [id]);
    return r ? groupFrom(r) : null;
  }

  async markGroupSealed(id: string, at: string): Promise<GroupRecord | null> {
    const r = await this.one("UPDATE commit_groups SET sealed_at = $1 WHERE id = $2 AND status = 'pending' AND sealed_at IS NULL RETURNING *", [at, id]);
    return r ? groupFrom(r) : null;
  }

  async acquireCommitLease(id: string, holder: string, until: string, now: string): Promise<boolean> {
    return (await this.run(`UPDATE commits SET lease_holder = $1, lease_until = $2
      WHERE id = $3 AND (lease_holder IS NULL OR lease_holder = $1 OR lease_until < $4)`, [holder, until, id, now])) === 1;
  }

  // ---- Objects: pins, tombstones, the gc lease -------------------------------------------
  //
  // A pin and a tombstone of one object are decided under the same transaction-level
  // advisory lock (its key: a hash of the sha256), so one of the two transactions reads
  // what the other wrote: exactly one of a racing pin and tombstone wins.

  async pinObject(pin: { agentId: string; nodeId: string; sha256: string; at: string }): Promise<boolean> {
    return this.tx(async (x) => {
      await x.one('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [pin.sha256]);
      if (await x.one('SELECT 1 FROM gc_tombstones WHERE sha256 = $1', [pin.sha256])) return false;
      await x.run(`INSERT INTO gc_pins (agent_id, node_id, sha256, created_at) VALUES ($1, $2, $3, $4)
        ON CONFLICT (agent_id, node_id) DO UPDATE SET sha256 = excluded.sha256, created_at = excluded.created_at`, [pin.agentId, pin.nodeId, pin.sha256, pin.at]);
      return true;
    });
  }

  async unpinNode(nodeId: string): Promise<void> {
    await this.run('DELETE FROM gc_pins WHERE node_id = $1', [nodeId]);
  }

  /**
   * Pins and nodes are read in one statement (one snapshot): completeCommits drops a
   * pin only after markManifested recorded the object on its node, so the snapshot holds
   * the pin or the node.
   */
  async tombstoneObject(sha256: string, at: string): Promise<boolean> {
    return this.tx(async (x) => {
      await x.one('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [sha256]);
      if (await x.one('SELECT 1 FROM gc_pins WHERE sha256 = $1 UNION ALL SELECT 1 FROM nodes WHERE sha256 = $1 LIMIT 1', [sha256])) return false;
      await x.run('INSERT INTO gc_tombstones (sha256, created_at) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING', [sha256, at]);
      return true;
    });
  }

  async removeTombstone(sha256: string): Promise<void> {
    await this.run('DELETE FROM gc_tombstones WHERE sha256 = $1', [sha256]);
  }

  async listTombstones(): Promise<string[]> {
    return (await this.all('SELECT sha256 FROM gc_tombstones ORDER BY sha256')).map((r) => r.sha256 as string);
  }

  async referencedObjects(exceptCommits: string[] = []): Promise<Set<string>> {
    return new Set((await this.all(`SELECT DISTINCT sha256 FROM nodes WHERE sha256 IS NOT NULL AND NOT (COALESCE(commit_id, '') = ANY($1::text[]))`,
      [exceptCommits])).map((r) => r.sha256 as string));
  }

  /**
   * One statement. A heartbeat racing the delete either commits first (the delete
   * re-reads `last_seen_at` on the row it waited for, and keeps the agent) or finds the
   * agent gone (AGENT_NOT_FOUND: it registers again). A task added meanwhile is for an
   * agent that must register again before it can run it.
   */
  async expireAgentPins(before: string, opts: { dryRun?: boolean } = {}): Promise<{ agents: string[]; pins: number }> {
    const which = `a.last_seen_at < $1
      AND EXISTS (SELECT 1 FROM gc_pins p WHERE p.agent_id = a.id)
      AND NOT EXISTS (SELECT 1 FROM agent_tasks t JOIN commits c ON c.id = t.commit_id
        WHERE t.agent_id = a.id AND c.phase IN ('sealing', 'uploading', 'manifested'))`;
    const r = opts.dryRun
      ? await this.one(`WITH gone AS (SELECT a.id FROM agents a WHERE ${which})
          SELECT COALESCE((SELECT array_agg(id ORDER BY id) FROM gone), '{}') AS agents,
            (SELECT count(*) FROM gc_pins WHERE agent_id IN (SELECT id FROM gone))::int AS pins`, [before])
      : await this.one(`WITH gone AS (DELETE FROM agents a WHERE ${which} RETURNING a.id),
          dropped AS (DELETE FROM gc_pins p USING gone WHERE p.agent_id = gone.id RETURNING 1)
          SELECT COALESCE((SELECT array_agg(id ORDER BY id) FROM gone), '{}') AS agents, (SELECT count(*) FROM dropped)::int AS pins`, [before]);
    return { agents: r!.agents as string[], pins: Number(r!.pins) };
  }

  async acquireGcLease(holder: string, until: string, now: string): Promise<boolean> {
    return this.tx(async (x) => {
      await x.run('INSERT INTO gc_lease (id, holder, until) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING', [holder, until]);
      return (await x.run('UPDATE gc_lease SET holder = $1, until = $2 WHERE id = 1 AND (holder = $1 OR until < $3)', [holder, until, now])) === 1;
    }, { retryUnique: true });
  }

  async releaseGcLease(holder: string): Promise<void> {
    await this.run('DELETE FROM gc_lease WHERE id = 1 AND holder = $1', [holder]);
  }

  // ---- Agents -------------------------------------------------------------------------

  async upsertAgent(a: AgentRecord): Promise<AgentRecord> {
    const r = await this.one(`INSERT INTO agents (id, mount_id, mountpoint, hostname, registered_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6)
      ON CONFLICT (id) DO UPDATE SET mount_id = excluded.mount_id, mountpoint = excluded.mountpoint, hostname = excluded.hostname,
        last_seen_at = excluded.last_seen_at
      RETURNING *`, [a.id, a.mountId, a.mountpoint, a.hostname, a.registeredAt, a.lastSeenAt]);
    return agentFrom(r!);
  }

  async getAgent(id: string): Promise<AgentRecord | null> {
    const r = await this.one('SELECT * FROM agents WHERE id = $1', [id]);
    return r ? agentFrom(r) : null;
  }

  async listAgents(mountId: string): Promise<AgentRecord[]> {
    return (await this.all('SELECT * FROM agents WHERE mount_id = $1 ORDER BY registered_at, id', [mountId])).map(agentFrom);
  }

  async touchAgent(id: string, at: string): Promise<boolean> {
    // A heartbeat never moves the clock back (two serve processes may answer one agent).
    return (await this.run('UPDATE agents SET last_seen_at = GREATEST(last_seen_at, $1) WHERE id = $2', [at, id])) === 1;
  }

  async addAgentTask(t: AgentTaskRecord): Promise<AgentTaskRecord> {
    return this.tx(async (x) => {
      await x.run(`INSERT INTO agent_tasks (id, agent_id, commit_id, kind, args, status, result, error, created_at, finished_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING`,
      [t.id, t.agentId, t.commitId, t.kind, JSON.stringify(t.args), t.status, t.result === undefined || t.result === null ? null : JSON.stringify(t.result),
        t.error ? JSON.stringify(t.error) : null, t.createdAt, t.finishedAt]);
      // A statement of its own: it sees a racing insert that the one above waited for.
      return taskFrom((await x.one('SELECT * FROM agent_tasks WHERE id = $1', [t.id]))!);
    });
  }

  async getAgentTask(id: string): Promise<AgentTaskRecord | null> {
    const r = await this.one('SELECT * FROM agent_tasks WHERE id = $1', [id]);
    return r ? taskFrom(r) : null;
  }

  async pendingAgentTasks(agentId: string): Promise<AgentTaskRecord[]> {
    return (await this.all("SELECT * FROM agent_tasks WHERE agent_id = $1 AND status = 'pending' ORDER BY seq", [agentId])).map(taskFrom);
  }

  async setAgentTaskProgress(id: string, progress: unknown): Promise<void> {
    await this.run("UPDATE agent_tasks SET progress = $1 WHERE id = $2 AND status = 'pending'", [JSON.stringify(progress ?? null), id]);
  }

  async finishAgentTask(id: string, outcome: { status: 'done'; result: unknown } | { status: 'failed'; error: NonNullable<AgentTaskRecord['error']> }, at: string): Promise<boolean> {
    const result = outcome.status === 'done' && outcome.result !== undefined ? JSON.stringify(outcome.result) : null;
    const error = outcome.status === 'failed' ? JSON.stringify(outcome.error) : null;
    return (await this.run("UPDATE agent_tasks SET status = $1, result = $2, error = $3, finished_at = $4 WHERE id = $5 AND status = 'pending'",
      [outcome.status, result, error, at, id])) === 1;
  }

  async commitTaskAgents(commitId: string): Promise<string[]> {
    return (await this.all('SELECT DISTINCT agent_id FROM agent_tasks WHERE commit_id = $1 ORDER BY agent_id', [commitId])).map((r) => r.agent_id as string);
  }

  async dropAgentTasks(commitId: string, agentId?: string): Promise<void> {
    if (agentId === undefined) await this.run('DELETE FROM agent_tasks WHERE commit_id = $1', [commitId]);
    else await this.run('DELETE FROM agent_tasks WHERE commit_id = $1 AND agent_id = $2', [commitId, agentId]);
  }

  // ---- API keys -----------------------------------------------------------------------

  async insertApiKey(k: ApiKeyRecord): Promise<void> {
    await this.run('INSERT INTO api_keys (id, name, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5)', [k.id, k.name, k.hash, k.createdAt, k.revokedAt]);
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    return (await this.all('SELECT * FROM api_keys ORDER BY created_at, id')).map((r) => ({
      id: r.id as string, name: r.name as string, hash: r.hash as string, createdAt: r.created_at as string, revokedAt: (r.revoked_at as string | null) ?? null,
    }));
  }

  async revokeApiKey(id: string, at: string): Promise<boolean> {
    return (await this.run('UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [at, id])) === 1;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
