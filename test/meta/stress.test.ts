/**
 * The metadata store under several processes at once. Separate OS processes
 * (test/support/meta-hammer.mjs, on the built store in dist/: `npm run build` first)
 * each run a bounded number of random operations on one small tree in one database:
 * creates, removes, renames and moves between folders, soft deletes, setattrs, commits
 * begun, completed (alone or as a group) and failed, other processes' commits failed
 * as a recovery would, and ref compare-and-swaps. Then the database is checked.
 *
 * The main check replays history. A trigger (installed by the test, not part of the
 * schema) records every structural change of a node (insert, delete, new parent or
 * name, new state, soft delete) with its transaction; the changes are replayed in
 * commit order (PostgreSQL: `track_commit_timestamp`; SQLite: one writer, so the order
 * of the records), and each one is checked against the state the transactions before
 * it left: nothing created, removed or moved in or out of a sealing or committed
 * folder, no commit begun around, inside or on a sealing folder, no soft delete of
 * anything sealing or inside a sealing or committed folder, no edge taken twice, no
 * move into itself. A barrier checked outside the changing transaction, or without
 * its row locks, lets a change commit after a commit that it did not see: the replay
 * puts it after that commit and reports it.
 *
 * Then the final state: one live node per (parent, name); every live node reaches its
 * root through live nodes (no cycles); the replay ends in the database's state; at
 * most one pending commit on any chain, each on a sealing folder; groups all
 * completed or none; every ref on a completed commit whose folder is not soft-deleted
 * (a ref move and a soft delete refuse each other); each ref's log a chain (each
 * entry's `from` is the previous entry's `to`, the last `to` is the ref); and the
 * compare-and-swaps the processes won are exactly the log's entries.
 *
 * Settings: ROSET_STRESS_WORKERS (processes, default 4), ROSET_STRESS_OPS (operations
 * each, default 500), ROSET_STRESS_SEED (replays a run: a failure prints it),
 * ROSET_STRESS_VERBOSE (print what succeeded and what was refused).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Database } from '../../src/util/sqlite-driver.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresMetadataStore } from '../../src/meta/postgres.js';
import { SqliteMetadataStore } from '../../src/meta/sqlite.js';
import type { MetadataStore } from '../../src/meta/types.js';
import { REPO } from '../support/daemon.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';

const HAMMER = path.join(REPO, 'test', 'support', 'meta-hammer.mjs');
const MODULE = path.join(REPO, 'dist', 'meta', 'index.js');
const WORKERS = Number(process.env.ROSET_STRESS_WORKERS ?? 4);
const OPS = Number(process.env.ROSET_STRESS_OPS ?? 500);
const SEED = Number(process.env.ROSET_STRESS_SEED ?? Date.now() % 100_000);

interface Report {
  worker: number;
  ok: Record<string, number>;
  refused: Record<string, number>;
  unexpected: string[];
  refWins: Record<string, number>;
  refDeletes: Record<string, number>;
}

interface AuditRow {
  op: 'I' | 'U' | 'D';
  tx: string | null;
  id: string;
  type: string;
  old_parent: string | null; new_parent: string | null;
  old_name: string | null; new_name: string | null;
  old_state: string | null; new_state: string | null;
  old_deleted: string | null; new_deleted: string | null;
}

type Row = Record<string, unknown>;

interface Dump {
  nodes: Row[];
  commits: Row[];
  groups: Row[];
  refs: Row[];
  refLog: Row[];
  /** In commit order. */
  audit: AuditRow[];
}

// ---- The audit trigger, per backend ------------------------------------------------

const PG_AUDIT = `
CREATE TABLE stress_audit (
  seq bigserial PRIMARY KEY, tx bigint NOT NULL DEFAULT txid_current(), op text NOT NULL, id text NOT NULL, type text,
  old_parent text, new_parent text, old_name text, new_name text, old_state text, new_state text, old_deleted text, new_deleted text
);
CREATE FUNCTION stress_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO stress_audit (op, id, type, new_parent, new_name, new_state, new_deleted) VALUES ('I', NEW.id, NEW.type, NEW.parent_id, NEW.name, NEW.state, NEW.deleted_at);
    RETURN NEW;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO stress_audit (op, id, type, old_parent, old_name, old_state, old_deleted) VALUES ('D', OLD.id, OLD.type, OLD.parent_id, OLD.name, OLD.state, OLD.deleted_at);
    RETURN OLD;
  END IF;
  INSERT INTO stress_audit (op, id, type, old_parent, new_parent, old_name, new_name, old_state, new_state, old_deleted, new_deleted)
    VALUES ('U', NEW.id, NEW.type, OLD.parent_id, NEW.parent_id, OLD.name, NEW.name, OLD.state, NEW.state, OLD.deleted_at, NEW.deleted_at);
  RETURN NEW;
END $$;
CREATE TRIGGER stress_audit_id AFTER INSERT OR DELETE ON nodes FOR EACH ROW EXECUTE FUNCTION stress_audit();
CREATE TRIGGER stress_audit_u AFTER UPDATE ON nodes FOR EACH ROW
  WHEN (OLD.parent_id IS DISTINCT FROM NEW.parent_id OR OLD.name IS DISTINCT FROM NEW.name OR OLD.state IS DISTINCT FROM NEW.state OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
  EXECUTE FUNCTION stress_audit();
`;

const SQLITE_AUDIT = `
CREATE TABLE stress_audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, id TEXT NOT NULL, type TEXT,
  old_parent TEXT, new_parent TEXT, old_name TEXT, new_name TEXT, old_state TEXT, new_state TEXT, old_deleted TEXT, new_deleted TEXT
);
CREATE TRIGGER stress_audit_i AFTER INSERT ON nodes BEGIN
  INSERT INTO stress_audit (op, id, type, new_parent, new_name, new_state, new_deleted) VALUES ('I', NEW.id, NEW.type, NEW.parent_id, NEW.name, NEW.state, NEW.deleted_at);
END;
CREATE TRIGGER stress_audit_d AFTER DELETE ON nodes BEGIN
  INSERT INTO stress_audit (op, id, type, old_parent, old_name, old_state, old_deleted) VALUES ('D', OLD.id, OLD.type, OLD.parent_id, OLD.name, OLD.state, OLD.deleted_at);
END;
CREATE TRIGGER stress_audit_u AFTER UPDATE ON nodes
  WHEN OLD.parent_id IS NOT NEW.parent_id OR OLD.name IS NOT NEW.name OR OLD.state IS NOT NEW.state OR OLD.deleted_at IS NOT NEW.deleted_at
BEGIN
  INSERT INTO stress_audit (op, id, type, old_parent, new_parent, old_name, new_name, old_state, new_state, old_deleted, new_deleted)
    VALUES ('U', NEW.id, NEW.type, OLD.parent_id, NEW.parent_id, OLD.name, NEW.name, OLD.state, NEW.state, OLD.deleted_at, NEW.deleted_at);
END;
`;

async function pgDump(url: string): Promise<Dump> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const q = async (sql: string) => (await c.query(sql)).rows as Row[];
    const audit = await q(`SELECT a.*, a.tx::text AS tx, pg_xact_commit_timestamp(a.tx::text::xid) AS cts FROM stress_audit a
      ORDER BY pg_xact_commit_timestamp(a.tx::text::xid), a.tx, a.seq`);
    if (audit.some((a) => a.cts === null)) throw new Error('a transaction without a commit timestamp: is track_commit_timestamp on?');
    return {
      nodes: await q('SELECT * FROM nodes'), commits: await q('SELECT * FROM commits'), groups: await q('SELECT * FROM commit_groups'),
      refs: await q('SELECT * FROM refs'), refLog: await q('SELECT * FROM ref_log ORDER BY seq'), audit: audit as unknown as AuditRow[],
    };
  } finally {
    await c.end();
  }
}

function sqliteDump(file: string): Dump {
  const db = new Database(file, { readonly: true });
  try {
    const q = (sql: string) => db.prepare(sql).all() as Row[];
    return {
      nodes: q('SELECT * FROM nodes'), commits: q('SELECT * FROM commits'), groups: q('SELECT * FROM commit_groups'),
      refs: q('SELECT * FROM refs'), refLog: q('SELECT * FROM ref_log ORDER BY seq'),
      audit: q('SELECT *, NULL AS tx FROM stress_audit ORDER BY seq') as unknown as AuditRow[],
    };
  } finally {
    db.close();
  }
}

// ---- The processes -----------------------------------------------------------------

/** The processes run the built store: refuse to test one older than its source. */
function assertBuilt(): void {
  for (const f of readdirSync(path.join(REPO, 'src', 'meta')).filter((n) => n.endsWith('.ts'))) {
    const built = path.join(REPO, 'dist', 'meta', f.replace(/\.ts$/, '.js'));
    if (!existsSync(built) || statSync(built).mtimeMs < statSync(path.join(REPO, 'src', 'meta', f)).mtimeMs) {
      throw new Error(`${path.relative(REPO, built)} is missing or older than its source: run npm run build first`);
    }
  }
}

async function hammer(database: string, stateDir: string): Promise<Report[]> {
  assertBuilt();
  const procs = Array.from({ length: WORKERS }, (_, worker) => {
    const cfg = { module: pathToFileURL(MODULE).href, database, stateDir, mountId: 'mnt_1', worker, ops: OPS, seed: SEED * 100 + worker };
    const p = spawn(process.execPath, [HAMMER, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    p.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    const ready = new Promise<void>((resolve, reject) => {
      p.stdout.on('data', () => { if (out.startsWith('ready\n')) resolve(); });
      p.once('exit', (code) => reject(new Error(`worker ${worker} exited (${code}) before it was ready: ${out}${err}`)));
    });
    const done = new Promise<Report>((resolve, reject) => {
      p.once('exit', (code) => {
        const line = out.split('\n')[1];
        if (code !== 0 || !line) reject(new Error(`worker ${worker} exited (${code}): ${out}${err}`));
        else resolve(JSON.parse(line) as Report);
      });
    });
    void ready.catch(() => undefined);
    void done.catch(() => undefined);
    return { p, ready, done };
  });
  try {
    await Promise.all(procs.map((x) => x.ready));
    for (const x of procs) x.p.stdin.end('go\n');
    return await Promise.all(procs.map((x) => x.done));
  } finally {
    for (const x of procs) if (x.p.exitCode === null && x.p.signalCode === null) x.p.kill('SIGKILL');
  }
}

// ---- The checks --------------------------------------------------------------------

interface TreeNode { id: string; parent: string | null; name: string; type: string; state: string; deleted: string | null }

class Tree {
  readonly nodes = new Map<string, TreeNode>();
  private readonly kids = new Map<string, Set<string>>();

  add(n: TreeNode): void {
    this.nodes.set(n.id, n);
    if (n.parent) this.kidsOf(n.parent).add(n.id);
  }

  remove(id: string): void {
    const n = this.nodes.get(id);
    if (!n) return;
    if (n.parent) this.kids.get(n.parent)?.delete(id);
    this.nodes.delete(id);
  }

  reparent(id: string, parent: string | null, name: string): void {
    const n = this.nodes.get(id)!;
    if (n.parent) this.kids.get(n.parent)?.delete(id);
    n.parent = parent;
    n.name = name;
    if (parent) this.kidsOf(parent).add(id);
  }

  private kidsOf(id: string): Set<string> {
    let s = this.kids.get(id);
    if (!s) this.kids.set(id, s = new Set());
    return s;
  }

  liveChildren(id: string): TreeNode[] {
    return [...(this.kids.get(id) ?? [])].map((k) => this.nodes.get(k)!).filter((k) => k.deleted === null);
  }

  /** Live nodes strictly below `id`, through live nodes (as the store's subtree walks). */
  liveBelow(id: string): TreeNode[] {
    const out: TreeNode[] = [];
    const todo = [id];
    while (todo.length) {
      for (const c of this.liveChildren(todo.pop()!)) {
        out.push(c);
        todo.push(c.id);
      }
    }
    return out;
  }

  /** `id` and its ancestors, nearest first (cut short at a missing node or a cycle). */
  chain(id: string | null): TreeNode[] {
    const out: TreeNode[] = [];
    const seen = new Set<string>();
    for (let cur = id; cur !== null && !seen.has(cur);) {
      const n = this.nodes.get(cur);
      if (!n) break;
      seen.add(cur);
      out.push(n);
      cur = n.parent;
    }
    return out;
  }

  /** The nearest sealing or committed node at or above `id`: what refuses a change there. */
  barrier(id: string | null): TreeNode | undefined {
    return this.chain(id).find((n) => n.state !== 'staging');
  }

  liveEdgeTaken(parent: string | null, name: string, except: string): boolean {
    return parent !== null && this.liveChildren(parent).some((c) => c.name === name && c.id !== except);
  }
}

const isSoftDelete = (e: AuditRow): boolean => e.op === 'U' && e.old_deleted === null && e.new_deleted !== null
  && e.old_parent === e.new_parent && e.old_name === e.new_name && e.old_state === e.new_state;

/** Replays the audit in commit order, checking each change against the state before it. */
function replay(audit: AuditRow[]): { tree: Tree; violations: string[] } {
  const t = new Tree();
  const bad: string[] = [];
  const at = (e: AuditRow) => `${e.op} ${e.id}${e.tx ? ` (tx ${e.tx})` : ''}`;
  const refuses = (id: string | null, what: string, e: AuditRow) => {
    const b = t.barrier(id);
    if (b) bad.push(`${at(e)}: ${what} inside ${b.state} folder ${b.id}`);
  };
  for (let i = 0; i < audit.length; i++) {
    const e = audit[i]!;
    const n = t.nodes.get(e.id);
    if (isSoftDelete(e)) {
      // One soft delete: the run of soft deletions of this transaction with this time.
      let j = i;
      while (j < audit.length && isSoftDelete(audit[j]!) && audit[j]!.tx === e.tx && audit[j]!.new_deleted === e.new_deleted) j++;
      const batch = audit.slice(i, j);
      const ids = new Set(batch.map((x) => x.id));
      for (const x of batch) {
        const m = t.nodes.get(x.id);
        if (!m || m.deleted !== null) bad.push(`${at(x)}: soft delete of a node that is not live`);
        else if (m.state === 'sealing') bad.push(`${at(x)}: soft delete of a sealing folder`);
      }
      for (const x of batch) {
        const m = t.nodes.get(x.id);
        if (!m || (m.parent !== null && ids.has(m.parent))) continue;
        refuses(m.parent, 'soft delete', x);
        const missed = t.liveBelow(m.id).filter((d) => !ids.has(d.id));
        if (missed.length) bad.push(`${at(x)}: soft delete left ${missed.length} live nodes below it`);
      }
      for (const x of batch) { const m = t.nodes.get(x.id); if (m) m.deleted = x.new_deleted; }
      i = j - 1;
      continue;
    }
    if (e.op === 'I') {
      if (n) bad.push(`${at(e)}: inserted twice`);
      if (e.new_parent !== null) {
        const p = t.nodes.get(e.new_parent);
        if (!p || p.deleted !== null || p.type !== 'folder') bad.push(`${at(e)}: created in a missing, deleted or non-folder parent`);
        refuses(e.new_parent, 'create', e);
        if (t.liveEdgeTaken(e.new_parent, e.new_name!, e.id)) bad.push(`${at(e)}: created where a live node is`);
      }
      t.add({ id: e.id, parent: e.new_parent, name: e.new_name!, type: e.type, state: e.new_state!, deleted: e.new_deleted });
      continue;
    }
    if (!n) {
      bad.push(`${at(e)}: change of an unknown node`);
      continue;
    }
    if (e.op === 'D') {
      if (n.deleted !== null) bad.push(`${at(e)}: removal of a soft-deleted node`);
      refuses(n.id, 'removal', e);
      if (t.liveChildren(n.id).length) bad.push(`${at(e)}: removal of a folder that is not empty`);
      t.remove(n.id);
      continue;
    }
    if (e.old_deleted !== e.new_deleted) {
      bad.push(`${at(e)}: deleted_at changed from ${e.old_deleted} to ${e.new_deleted}`);
      n.deleted = e.new_deleted;
    }
    if (e.old_parent !== e.new_parent || e.old_name !== e.new_name) {
      if (n.deleted !== null) bad.push(`${at(e)}: move of a soft-deleted node`);
      refuses(n.id, 'move out', e);
      refuses(e.new_parent, 'move in', e);
      const p = t.nodes.get(e.new_parent ?? '');
      if (!p || p.deleted !== null || p.type !== 'folder') bad.push(`${at(e)}: moved into a missing, deleted or non-folder parent`);
      if (t.chain(e.new_parent).some((a) => a.id === n.id)) bad.push(`${at(e)}: moved into itself`);
      if (t.liveBelow(n.id).some((d) => d.state !== 'staging')) bad.push(`${at(e)}: moved while holding a sealing or committed folder`);
      if (t.liveEdgeTaken(e.new_parent, e.new_name!, n.id)) bad.push(`${at(e)}: moved where a live node is`);
      t.reparent(n.id, e.new_parent, e.new_name!);
    }
    if (e.old_state !== e.new_state) {
      const flip = `${e.old_state}->${e.new_state}`;
      if (flip === 'staging->sealing') {
        if (n.deleted !== null || n.type !== 'folder') bad.push(`${at(e)}: commit begun on a deleted node or a file`);
        refuses(n.id, 'commit begun', e);
        if (t.liveBelow(n.id).some((d) => d.state === 'sealing')) bad.push(`${at(e)}: commit begun around a sealing folder`);
      } else if (flip === 'staging->committed') {
        if (t.chain(n.parent).find((a) => a.state !== 'staging')?.state !== 'committed') bad.push(`${at(e)}: committed without its folder`);
      } else if (flip !== 'sealing->committed' && flip !== 'sealing->staging') {
        bad.push(`${at(e)}: state ${flip}`);
      }
      n.state = e.new_state!;
    }
  }
  return { tree: t, violations: bad };
}

/** Every invariant of the final state; returns what does not hold. */
function check(d: Dump, reports: Report[]): string[] {
  const { tree, violations: bad } = replay(d.audit);
  const nodes = new Map(d.nodes.map((r) => [r.id as string, r]));

  // The replay ends where the database is.
  for (const r of d.nodes) {
    const n = tree.nodes.get(r.id as string);
    if (!n || n.parent !== r.parent_id || n.name !== r.name || n.state !== r.state || n.deleted !== r.deleted_at) bad.push(`replay differs from the database at ${r.id as string}`);
  }
  if (tree.nodes.size !== d.nodes.length) bad.push(`replay has ${tree.nodes.size} nodes, the database ${d.nodes.length}`);

  // One live node per edge; every live node reaches its root through live nodes.
  const edges = new Map<string, number>();
  for (const r of d.nodes) {
    if (r.deleted_at !== null || r.parent_id === null) continue;
    const k = `${r.parent_id as string}\0${r.name as string}`;
    edges.set(k, (edges.get(k) ?? 0) + 1);
  }
  for (const [k, c] of edges) if (c > 1) bad.push(`${c} live nodes on edge ${k.replace('\0', '/')}`);
  for (const r of d.nodes) {
    if (r.deleted_at !== null) continue;
    const seen = new Set<string>();
    let cur: Row | undefined = r;
    while (cur && cur.parent_id !== null && !seen.has(cur.id as string)) {
      seen.add(cur.id as string);
      cur = nodes.get(cur.parent_id as string);
      if (cur && cur.deleted_at !== null) { bad.push(`live node ${r.id as string} is below soft-deleted ${cur.id as string}`); break; }
    }
    if (!cur) bad.push(`live node ${r.id as string} does not reach a root`);
    else if (cur.parent_id !== null) bad.push(`live node ${r.id as string} is on a cycle`);
    else if (cur.mount_id !== r.mount_id) bad.push(`live node ${r.id as string} reaches another mount's root`);
  }

  // Pending commits: each on its sealing folder, at most one on any chain.
  const commits = new Map(d.commits.map((c) => [c.id as string, c]));
  const active = d.commits.filter((c) => !['completed', 'failed'].includes(c.phase as string));
  for (const c of active) {
    const f = nodes.get(c.node_id as string);
    if (f?.state !== 'sealing' || f.commit_id !== c.id) bad.push(`pending commit ${c.id as string} is not on a sealing folder`);
    const chain = tree.chain(c.node_id as string).map((a) => a.id);
    for (const o of active) if (o !== c && chain.includes(o.node_id as string)) bad.push(`pending commits ${c.id as string} and ${o.id as string} overlap`);
  }
  for (const r of d.nodes) {
    if (r.state !== 'sealing') continue;
    const c = commits.get(r.commit_id as string);
    if (!c || ['completed', 'failed'].includes(c.phase as string)) bad.push(`sealing folder ${r.id as string} has no pending commit`);
  }
  for (const c of d.commits) {
    if (c.phase === 'completed' && nodes.get(c.node_id as string)?.state !== 'committed') bad.push(`completed commit ${c.id as string} on a folder that is not committed`);
  }

  // Groups complete together.
  for (const g of d.groups) {
    const phases = d.commits.filter((c) => c.group_id === g.id).map((c) => c.phase as string);
    const done = phases.filter((p) => p === 'completed').length;
    if (done > 0 && done !== phases.length) bad.push(`group ${g.id as string}: ${done} of ${phases.length} commits completed`);
    if ((g.status === 'committed') !== (done > 0)) bad.push(`group ${g.id as string} is ${g.status as string} with ${done} completed commits`);
  }

  // Refs: on completed commits; each log a chain ending at the ref; wins = entries.
  for (const r of d.refs) {
    if (commits.get(r.commit_id as string)?.phase !== 'completed') bad.push(`ref ${r.name as string} on commit ${r.commit_id as string}, which is not completed`);
    const folder = nodes.get(commits.get(r.commit_id as string)?.node_id as string);
    if (folder && folder.deleted_at !== null) bad.push(`ref ${r.name as string} on commit ${r.commit_id as string}, whose folder was soft-deleted`);
  }
  const names = new Set([...d.refLog.map((e) => e.name as string), ...d.refs.map((r) => r.name as string)]);
  for (const name of names) {
    const log = d.refLog.filter((e) => e.name === name);
    let prev: unknown = null;
    for (const e of log) {
      if (e.from_commit_id !== prev) bad.push(`ref log of ${name}: entry ${String(e.seq)} moves from ${String(e.from_commit_id)}, not from ${String(prev)}`);
      prev = e.to_commit_id;
    }
    const cur = d.refs.find((r) => r.name === name)?.commit_id ?? null;
    if (prev !== cur) bad.push(`ref ${name} is ${String(cur)}, its log ends at ${String(prev)}`);
    const won = reports.reduce((s, w) => s + (w.refWins[name] ?? 0) + (w.refDeletes[name] ?? 0), 0);
    if (won !== log.length) bad.push(`ref ${name}: processes won ${won} compare-and-swaps and deletes, the log has ${log.length} entries`);
  }
  return bad;
}

function summary(reports: Report[]): { ok: Record<string, number>; refused: Record<string, number> } {
  const ok: Record<string, number> = {};
  const refused: Record<string, number> = {};
  for (const r of reports) {
    for (const [k, v] of Object.entries(r.ok)) ok[k] = (ok[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.refused)) refused[k] = (refused[k] ?? 0) + v;
  }
  return { ok, refused };
}

async function run(open: () => Promise<MetadataStore>, database: string, stateDir: string, dump: () => Promise<Dump>): Promise<void> {
  const meta = await open();
  await meta.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: new Date().toISOString() });
  await meta.close();
  const reports = await hammer(database, stateDir);
  const s = summary(reports);
  const bad = check(await dump(), reports);
  const context = `seed ${SEED} (ROSET_STRESS_SEED), ${WORKERS} processes x ${OPS} operations\nsucceeded: ${JSON.stringify(s.ok)}\nrefused: ${JSON.stringify(s.refused)}`;
  if (process.env.ROSET_STRESS_VERBOSE) console.log(context);
  expect(reports.flatMap((r) => r.unexpected), context).toEqual([]);
  expect(bad.slice(0, 20), context).toEqual([]);
  // The run did race: every kind of change succeeded, and some were refused by others.
  for (const k of ['create', 'move', 'remove', 'begin', 'end', 'ref']) expect(s.ok[k] ?? 0, `${k} never succeeded\n${context}`).toBeGreaterThan(0);
  expect(Object.keys(s.refused).filter((k) => /:(SEALED|COMMITTED|COMMIT_IN_PROGRESS)$/.test(k)).length, context).toBeGreaterThan(0);
}

describe('metadata store under concurrent processes', () => {
  let server: PostgresServer;
  let dir: string;
  beforeAll(async () => {
    server = await startPostgres();
    dir = mkdtempSync(path.join(os.tmpdir(), 'roset-stress-'));
  });
  afterAll(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`postgres: ${WORKERS} processes keep every invariant`, async () => {
    const url = await server.createDatabase();
    await run(async () => {
      const meta = await PostgresMetadataStore.open(url);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query(PG_AUDIT);
      await c.end();
      return meta;
    }, url, dir, () => pgDump(url));
  });

  it(`sqlite (one shared file): ${WORKERS} processes keep every invariant`, async () => {
    const file = path.join(dir, 'shared.db');
    await run(async () => {
      const meta = new SqliteMetadataStore(file);
      const db = new Database(file);
      db.exec(SQLITE_AUDIT);
      db.close();
      return meta;
    }, `sqlite:${file}`, dir, async () => sqliteDump(file));
  });
});
