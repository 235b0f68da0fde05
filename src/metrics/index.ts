/**
 * Prometheus metrics: the one registry of the process and every metric Roset defines.
 *
 * Owns: the metric names, types, help texts and label sets, the registry `GET /metrics`
 * serves, and the sources read at scrape time (gauges of live components, counters kept
 * in C by the native FUSE binding).
 *
 * Invariants:
 * - One registry per process; components import the definitions below, and this module
 *   imports nothing of Roset but the error-code table.
 * - Label values come only from fixed sets (operation names, error codes, errno names,
 *   statuses, phases): no path, name, id or key ever becomes a label, so the output
 *   exposes none. Values outside a set are recorded as `other` (operations) or
 *   `INTERNAL` (codes).
 * - Counters never go down: the counters of a native FUSE session are folded into a
 *   base when the session ends, and a source that can no longer be read is dropped.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { isErrorCode } from '../errors/codes.js';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'roset_' });

/** The `code` label of an error: a code of the table, else INTERNAL. */
export function codeLabel(code: unknown): string {
  return isErrorCode(code) ? code : 'INTERNAL';
}

// ---- commits ----

export const commitsTotal = new Counter({
  name: 'roset_commits_total',
  help: 'Commits that reached a final status, by status (completed, failed) and error code (none when completed).',
  labelNames: ['status', 'code'] as const,
  registers: [registry],
});

/** A commit reached its final status. */
export function commitFinished(status: 'completed' | 'failed', code?: string, n = 1): void {
  if (n <= 0) return;
  commitsTotal.inc({ status, code: status === 'completed' ? 'none' : codeLabel(code) }, n);
}

export const commitPhaseSeconds = new Histogram({
  name: 'roset_commit_phase_seconds',
  help: 'Duration of each commit phase that ran to its end: seal (waiting for writers and the snapshot), upload, manifest (manifest write and record).',
  labelNames: ['phase'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
  registers: [registry],
});

// ---- bytes ----

export const uploadedBytesTotal = new Counter({
  name: 'roset_uploaded_bytes_total',
  help: 'Bytes of staged files sent to the object store (background and commit uploads).',
  registers: [registry],
});

export const dedupedBytesTotal = new Counter({
  name: 'roset_deduplicated_bytes_total',
  help: 'Bytes of staged files not sent because the store already held an object with their sha256.',
  registers: [registry],
});

// ---- sources read at scrape time ----

/** Reads a live component's state at scrape time; throws once the component is gone. */
type Source<T> = () => T;

function sum<T>(sources: Set<Source<T>>, pick: (v: T) => number): number {
  let total = 0;
  for (const s of [...sources]) {
    try {
      total += pick(s());
    } catch {
      sources.delete(s); // closed: its metadata or session is gone
    }
  }
  return total;
}

function adder<T>(sources: Set<Source<T>>) {
  return (s: Source<T>): (() => void) => {
    sources.add(s);
    return () => { sources.delete(s); };
  };
}

// ---- the background upload queue ----

export interface UploadQueueState {
  /** Files queued and not yet started. */
  files: number;
  /** Their bytes. */
  bytes: number;
  /** When the oldest of them was queued (ms since the epoch), or null. */
  oldestQueuedAt: number | null;
}

const uploadQueues = new Set<Source<UploadQueueState>>();
export const addUploadQueue = adder(uploadQueues);

new Gauge({
  name: 'roset_upload_queue_files',
  help: 'Closed staged files waiting for their background upload to start.',
  registers: [registry],
  collect() { this.set(sum(uploadQueues, (q) => q.files)); },
});
new Gauge({
  name: 'roset_upload_queue_bytes',
  help: 'Bytes of the staged files waiting for their background upload to start.',
  registers: [registry],
  collect() { this.set(sum(uploadQueues, (q) => q.bytes)); },
});
new Gauge({
  name: 'roset_upload_queue_lag_seconds',
  help: 'Age of the oldest staged file waiting for its background upload (0 when none waits).',
  registers: [registry],
  collect() {
    const now = Date.now();
    let oldest = 0;
    sum(uploadQueues, (q) => {
      if (q.oldestQueuedAt !== null) oldest = Math.max(oldest, now - q.oldestQueuedAt);
      return 0;
    });
    this.set(oldest / 1000);
  },
});

// ---- the read cache ----

const caches = new Set<Source<number>>();
/** A read cache: the source gives its size in bytes. */
export const addReadCache = adder(caches);

new Gauge({
  name: 'roset_cache_bytes',
  help: 'Bytes of committed objects held in the local read cache.',
  registers: [registry],
  collect() { this.set(sum(caches, (b) => b)); },
});

export const cacheHitsTotal = new Counter({
  name: 'roset_cache_hits_total',
  help: 'Opens of a committed file whose object was already in the read cache.',
  registers: [registry],
});
export const cacheMissesTotal = new Counter({
  name: 'roset_cache_misses_total',
  help: 'Opens of a committed file whose object had to be fetched from the store (a download shared by concurrent readers counts once per reader).',
  registers: [registry],
});
export const cacheDownloadedBytesTotal = new Counter({
  name: 'roset_cache_downloaded_bytes_total',
  help: 'Bytes fetched from the object store into the read cache.',
  registers: [registry],
});

export const prefetchObjectsTotal = new Counter({
  name: 'roset_prefetch_objects_total',
  help: 'Objects downloaded into the read cache by sibling prefetch (a cold read of a committed file prefetches the other files of its folder).',
  registers: [registry],
});
export const prefetchBytesTotal = new Counter({
  name: 'roset_prefetch_bytes_total',
  help: 'Bytes of the objects sibling prefetch downloaded into the read cache.',
  registers: [registry],
});

// ---- the object store ----

/** Every request name of the store layer; anything else is `other`. */
export const STORE_OPERATIONS = [
  'put', 'put-if-absent', 'put-if-match', 'put-file', 'get', 'head', 'list', 'delete', 'create-multipart', 'upload-part',
  'complete-multipart', 'abort-multipart', 'list-multipart', 'upload', 'list upload tags', 'list multipart uploads',
  'abort multipart upload', 'untag multipart upload',
] as const;
const STORE_OPS = new Set<string>(STORE_OPERATIONS);
export const storeOperation = (op: string): string => (STORE_OPS.has(op) ? op : 'other');

export const storeRequestsTotal = new Counter({
  name: 'roset_store_requests_total',
  help: 'Object-store requests (each attempt), by operation and outcome (ok, error).',
  labelNames: ['operation', 'outcome'] as const,
  registers: [registry],
});
export const storeRetriesTotal = new Counter({
  name: 'roset_store_retries_total',
  help: 'Object-store requests sent again after a transient failure, by operation.',
  labelNames: ['operation'] as const,
  registers: [registry],
});

// ---- FUSE ----

/** Counters a native FUSE session keeps in C (relaxed atomics), read at scrape time. */
export interface NativeFuseCounters {
  reads: number;
  writes: number;
  bytesWritten: number;
  /** FLUSH of a read-only handle, answered in C. */
  flushesLocal: number;
  /** Errors answered in C, by errno name. */
  errors: Record<string, number>;
}

const nativeSessions = new Set<Source<NativeFuseCounters>>();
const nativeBase: NativeFuseCounters = { reads: 0, writes: 0, bytesWritten: 0, flushesLocal: 0, errors: {} };
/** Live native sessions; `retire` folds a session's last counters into the base, so counters never go down. */
export function addNativeFuseSession(source: Source<NativeFuseCounters>): { retire: () => void } {
  nativeSessions.add(source);
  return {
    retire: () => {
      if (!nativeSessions.delete(source)) return;
      try {
        const c = source();
        nativeBase.reads += c.reads;
        nativeBase.writes += c.writes;
        nativeBase.bytesWritten += c.bytesWritten;
        nativeBase.flushesLocal += c.flushesLocal;
        for (const [k, v] of Object.entries(c.errors)) nativeBase.errors[k] = (nativeBase.errors[k] ?? 0) + v;
      } catch { /* already gone */ }
    },
  };
}

function nativeTotals(): NativeFuseCounters {
  const t: NativeFuseCounters = { ...nativeBase, errors: { ...nativeBase.errors } };
  for (const s of [...nativeSessions]) {
    try {
      const c = s();
      t.reads += c.reads;
      t.writes += c.writes;
      t.bytesWritten += c.bytesWritten;
      t.flushesLocal += c.flushesLocal;
      for (const [k, v] of Object.entries(c.errors)) t.errors[k] = (t.errors[k] ?? 0) + v;
    } catch {
      nativeSessions.delete(s);
    }
  }
  return t;
}

/** FUSE operations: the lower-case names of both bindings' requests; anything else is `other`. */
const FUSE_OPS = new Set([
  'init', 'lookup', 'forget', 'getattr', 'setattr', 'mkdir', 'unlink', 'rmdir', 'rename', 'open', 'create', 'read', 'write',
  'flush', 'release', 'fsync', 'opendir', 'readdir', 'releasedir', 'statfs', 'truncate', 'ftruncate', 'chmod', 'chown',
  'utimens', 'fgetattr', 'symlink', 'link', 'mknod', 'access', 'fsyncdir', 'setxattr', 'getxattr', 'listxattr', 'removexattr',
]);
const ERRNO_NAME = /^E[A-Z0-9]{1,15}$/;

const jsFuseRequests = new Map<string, number>();
const jsFuseErrors = new Map<string, number>();
let jsStagedBytes = 0;

/** A FUSE request handled in JavaScript. */
export function fuseRequest(op: string): void {
  const k = FUSE_OPS.has(op) ? op : 'other';
  jsFuseRequests.set(k, (jsFuseRequests.get(k) ?? 0) + 1);
}

/** A FUSE request answered with an error, by errno name (`EROFS`). */
export function fuseError(errnoName: string): void {
  const k = ERRNO_NAME.test(errnoName) ? errnoName : 'other';
  jsFuseErrors.set(k, (jsFuseErrors.get(k) ?? 0) + 1);
}

/** Bytes written to staged files by a binding that writes in JavaScript. */
export function stagedBytes(n: number): void {
  if (n > 0) jsStagedBytes += n;
}

new Counter({
  name: 'roset_fuse_requests_total',
  help: 'FUSE requests by operation, counted where they are handled: READ, WRITE and read-only FLUSH of the native binding in C, every other request in JavaScript.',
  labelNames: ['operation'] as const,
  registers: [registry],
  collect() {
    this.reset();
    const n = nativeTotals();
    const ops = new Map(jsFuseRequests);
    ops.set('read', (ops.get('read') ?? 0) + n.reads);
    ops.set('write', (ops.get('write') ?? 0) + n.writes);
    ops.set('flush', (ops.get('flush') ?? 0) + n.flushesLocal);
    for (const [operation, v] of ops) if (v > 0) this.inc({ operation }, v);
  },
});
new Counter({
  name: 'roset_fuse_errors_total',
  help: 'FUSE requests answered with an error, by errno name (EROFS, ENOENT, EIO, ...), in C or in JavaScript.',
  labelNames: ['code'] as const,
  registers: [registry],
  collect() {
    this.reset();
    const errs = new Map(jsFuseErrors);
    for (const [k, v] of Object.entries(nativeTotals().errors)) errs.set(k, (errs.get(k) ?? 0) + v);
    for (const [code, v] of errs) if (v > 0) this.inc({ code }, v);
  },
});
new Counter({
  name: 'roset_staged_bytes_total',
  help: 'Bytes written to staged files through FUSE (counted in C on the native binding).',
  registers: [registry],
  collect() {
    this.reset();
    this.inc(jsStagedBytes + nativeTotals().bytesWritten);
  },
});

export const gcRunsTotal = new Counter({
  name: 'roset_gc_runs_total',
  help: 'Garbage collection runs by outcome (ok, failed) and kind (dry-run or not)',
  labelNames: ['outcome', 'dry_run'] as const,
  registers: [registry],
});

export const gcFreedBytesTotal = new Counter({
  name: 'roset_gc_freed_bytes_total',
  help: 'Bytes garbage collection deleted from the bucket: objects and manifests (dry runs free nothing)',
  registers: [registry],
});

export const gcDeletedObjectsTotal = new Counter({
  name: 'roset_gc_deleted_objects_total',
  help: 'Objects garbage collection deleted from the bucket',
  registers: [registry],
});

export const gcExpiredPinsTotal = new Counter({
  name: 'roset_gc_expired_pins_total',
  help: 'Upload pins garbage collection dropped with agents not heard from within the pin expiry',
  registers: [registry],
});

export const gcPurgedCommitsTotal = new Counter({
  name: 'roset_gc_purged_commits_total',
  help: 'Commits garbage collection purged',
  registers: [registry],
});

export const autoCommitsTotal = new Counter({
  name: 'roset_auto_commits_total',
  help: 'Commits started by an auto-commit rule (--auto-commit, or the mount\'s), by outcome (completed, failed)',
  labelNames: ['outcome'] as const,
  registers: [registry],
});
