/**
 * The data plane's staging index: a node-local SQLite database in the cache directory.
 *
 * Owns: `<cacheDir>/index.db` (WAL): inode numbers, staged files (the local bytes of
 * files being written), commit snapshots with per-file upload progress, and the list of
 * committed objects fetched into the cache; its schema version and migrations.
 *
 * Schema versions (`PRAGMA user_version`): 1 is release 0.1.0 (`user_version` 0, with an
 * unused `settings` table); 2 drops that table. Every row is keyed by node id, which
 * both versions share, so staged files, snapshots and cached objects carry over as
 * they are. Migrations run at open, in one transaction; a newer database refuses to
 * open.
 *
 * Invariants:
 * - A staged file's bytes live at `<cacheDir>/staging/<nodeId>`; the row exists iff
 *   the file does (created together, removed together).
 * - `open_writers > 0` survives only a crash: at start it marks files that were never
 *   closed.
 * - A snapshot row is written once, at seal, and then only gains upload progress.
 * - `object_blocks` holds the block hashes of objects hashed here for upload (keyed by
 *   sha256, so any file with those bytes shares them) until their commit's manifest
 *   has them. A table added by `CREATE TABLE IF NOT EXISTS`: an index without it
 *   simply gains it, with no version change.
 */
import { Database, statementCache, type Database as Db, type Statement } from '../util/sqlite-driver.js';
import { LRUCache } from 'lru-cache';
import { parseBlockHashes, type BlockHashes } from '../util/block-hash.js';

export const INDEX_SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS inodes (ino INTEGER PRIMARY KEY AUTOINCREMENT, node_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS staged_files (
  node_id TEXT PRIMARY KEY, mount_id TEXT NOT NULL, open_writers INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_files (
  commit_id TEXT NOT NULL, node_id TEXT NOT NULL, rel_path TEXT NOT NULL, size INTEGER NOT NULL, mode INTEGER NOT NULL,
  mtime_ms INTEGER NOT NULL, sha256 TEXT, state TEXT NOT NULL DEFAULT 'pending', PRIMARY KEY (commit_id, node_id)
);
CREATE TABLE IF NOT EXISTS cached_objects (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, last_access INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
  node_id TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ms INTEGER NOT NULL, sha256 TEXT NOT NULL, state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS object_blocks (sha256 TEXT PRIMARY KEY, blocks TEXT NOT NULL);
`;

/**
 * What is known of a staged file's bytes at one version (size, mtime):
 * hashed (sha256 known, computed while writing) → uploaded | deduped (the object
 * `objects/<sha256>` is in the store).
 */
export type UploadState = 'hashed' | 'uploaded' | 'deduped';

export interface UploadRecord {
  nodeId: string;
  size: number;
  mtimeMs: number;
  sha256: string;
  state: UploadState;
}

/** Upload state of one snapshot file: pending → uploaded | deduped. */
export type SnapshotFileState = 'pending' | 'uploaded' | 'deduped';

export interface SnapshotFile {
  commitId: string;
  nodeId: string;
  relPath: string;
  size: number;
  mode: number;
  mtimeMs: number;
  sha256: string | null;
  state: SnapshotFileState;
}

/** One snapshot file's upload result, as `markSnapshotFiles` writes it. */
export interface SnapshotMark {
  commitId: string;
  nodeId: string;
  sha256: string;
  state: SnapshotFileState;
}

export class StagingIndex {
  private readonly db: Db;
  // Bounded: a mount with millions of files must not grow the daemon without limit.
  private readonly inoCache = new LRUCache<string, number>({ max: 100_000 });
  /** The statements of the methods below, each prepared once. */
  private readonly stmt: (sql: string) => Statement;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.migrate();
    this.stmt = statementCache(this.db);
  }

  private migrate(): void {
    const v = this.db.pragma('user_version', { simple: true }) as number;
    const hasTables = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'staged_files'").get() !== undefined;
    const from = v !== 0 ? v : hasTables ? 1 : 0;
    if (from > INDEX_SCHEMA_VERSION) throw new Error(`index.db has schema version ${from}, newer than this release understands (${INDEX_SCHEMA_VERSION}); upgrade Roset`);
    if (from === INDEX_SCHEMA_VERSION) return;
    this.db.transaction(() => {
      this.db.exec(SCHEMA);
      if (from === 1) this.db.exec('DROP TABLE IF EXISTS settings');
      this.db.pragma(`user_version = ${INDEX_SCHEMA_VERSION}`);
    }).immediate();
  }

  /** A stable inode number for a node, assigned on first sight. */
  ino(nodeId: string): number {
    const cached = this.inoCache.get(nodeId);
    if (cached !== undefined) return cached;
    const get = this.stmt('SELECT ino FROM inodes WHERE node_id = ?');
    let r = get.get(nodeId) as { ino: number } | undefined;
    if (!r) {
      this.stmt('INSERT INTO inodes (node_id) VALUES (?)').run(nodeId);
      r = get.get(nodeId) as { ino: number };
    }
    // Inode 1 is the FUSE root; node rows start above it.
    const ino = r.ino + 1;
    this.inoCache.set(nodeId, ino);
    return ino;
  }

  hasStaged(nodeId: string): boolean {
    return this.stmt('SELECT 1 FROM staged_files WHERE node_id = ?').get(nodeId) !== undefined;
  }

  /** A created file: staged, with one writer (a create's two writes as one statement). */
  addStagedWriter(nodeId: string, mountId: string): void {
    this.stmt(`INSERT INTO staged_files (node_id, mount_id, created_at, open_writers) VALUES (?, ?, ?, 1)
      ON CONFLICT (node_id) DO UPDATE SET open_writers = open_writers + 1`).run(nodeId, mountId, Date.now());
  }

  removeStaged(nodeId: string): void {
    this.stmt('DELETE FROM staged_files WHERE node_id = ?').run(nodeId);
  }

  /** Persisted so that files left open by a crash can be told apart at restart. */
  addWriters(nodeId: string, delta: number): void {
    this.stmt('UPDATE staged_files SET open_writers = MAX(0, open_writers + ?) WHERE node_id = ?').run(delta, nodeId);
  }

  resetWriters(): number {
    return this.stmt('UPDATE staged_files SET open_writers = 0 WHERE open_writers > 0').run().changes;
  }

  saveSnapshot(files: SnapshotFile[]): void {
    const ins = this.stmt(`INSERT OR REPLACE INTO snapshot_files (commit_id, node_id, rel_path, size, mode, mtime_ms, sha256, state)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    this.db.transaction(() => {
      for (const f of files) ins.run(f.commitId, f.nodeId, f.relPath, f.size, f.mode, f.mtimeMs, f.sha256, f.state);
    })();
  }

  snapshot(commitId: string): SnapshotFile[] {
    return (this.stmt('SELECT * FROM snapshot_files WHERE commit_id = ? ORDER BY rel_path').all(commitId) as Array<Record<string, unknown>>).map((r) => ({
      commitId: r.commit_id as string, nodeId: r.node_id as string, relPath: r.rel_path as string, size: Number(r.size), mode: Number(r.mode),
      mtimeMs: Number(r.mtime_ms), sha256: (r.sha256 as string | null) ?? null, state: r.state as SnapshotFileState,
    }));
  }

  markSnapshotFile(commitId: string, nodeId: string, sha256: string, state: SnapshotFileState): void {
    this.markSnapshotFiles([{ commitId, nodeId, sha256, state }]);
  }

  /** Upload progress of many snapshot files in one transaction. */
  markSnapshotFiles(marks: SnapshotMark[]): void {
    const mark = this.stmt('UPDATE snapshot_files SET sha256 = ?, state = ? WHERE commit_id = ? AND node_id = ?');
    this.db.transaction(() => {
      for (const m of marks) mark.run(m.sha256, m.state, m.commitId, m.nodeId);
    })();
  }

  dropSnapshot(commitId: string): void {
    this.stmt('DELETE FROM snapshot_files WHERE commit_id = ?').run(commitId);
  }

  upload(nodeId: string): UploadRecord | null {
    const r = this.stmt('SELECT * FROM uploads WHERE node_id = ?').get(nodeId) as Record<string, unknown> | undefined;
    return r ? { nodeId, size: Number(r.size), mtimeMs: Number(r.mtime_ms), sha256: r.sha256 as string, state: r.state as UploadState } : null;
  }

  setUpload(u: UploadRecord): void {
    this.setUploads([u]);
  }

  /** Many records in one transaction: one index write for a batch of small files. */
  setUploads(records: UploadRecord[]): void {
    const up = this.stmt(`INSERT INTO uploads (node_id, size, mtime_ms, sha256, state) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (node_id) DO UPDATE SET size = excluded.size, mtime_ms = excluded.mtime_ms, sha256 = excluded.sha256, state = excluded.state`);
    this.db.transaction(() => {
      for (const u of records) up.run(u.nodeId, u.size, u.mtimeMs, u.sha256, u.state);
    })();
  }

  dropUpload(nodeId: string): void {
    this.stmt('DELETE FROM uploads WHERE node_id = ?').run(nodeId);
  }

  /** The block hashes taken when this object was hashed for upload, if they are known. */
  objectBlocks(sha256: string, size: number): BlockHashes | null {
    const r = this.stmt('SELECT blocks FROM object_blocks WHERE sha256 = ?').get(sha256) as { blocks: string } | undefined;
    return r ? parseBlockHashes(JSON.parse(r.blocks), size) : null;
  }

  setObjectBlocks(sha256: string, blocks: BlockHashes): void {
    this.stmt('INSERT OR REPLACE INTO object_blocks (sha256, blocks) VALUES (?, ?)').run(sha256, JSON.stringify(blocks));
  }

  dropObjectBlocks(sha256: string): void {
    this.stmt('DELETE FROM object_blocks WHERE sha256 = ?').run(sha256);
  }

  touchCachedObject(sha256: string, size: number): void {
    this.stmt(`INSERT INTO cached_objects (sha256, size, last_access) VALUES (?, ?, ?)
      ON CONFLICT (sha256) DO UPDATE SET last_access = excluded.last_access`).run(sha256, size, Date.now());
  }

  cachedBytes(): number {
    return Number((this.stmt('SELECT COALESCE(SUM(size), 0) AS s FROM cached_objects').get() as { s: number }).s);
  }

  /** Cached objects, least recently used first. */
  cachedObjectsByAge(): Array<{ sha256: string; size: number }> {
    return this.stmt('SELECT sha256, size FROM cached_objects ORDER BY last_access, sha256').all() as Array<{ sha256: string; size: number }>;
  }

  dropCachedObject(sha256: string): void {
    this.stmt('DELETE FROM cached_objects WHERE sha256 = ?').run(sha256);
  }

  close(): void {
    this.db.close();
  }
}
