/**
 * Background upload: a staged file's bytes go to the store as soon as its last writer
 * closes, so that by the time `commit()` is called most bytes are already in the
 * bucket, and the commit path reuses the result.
 *
 * Owns: the upload queues (bounded concurrency: a few large files, more small ones),
 * the per-file upload records of the staging index (written in batches), and the
 * "version" of each staged file (bumped by anything that can change its bytes: a
 * writable open, a truncate, an unlink).
 *
 * Invariants:
 * - `objects/<sha>` only ever holds bytes that hash to `<sha>`: the hash is taken
 *   first, and the upload is aborted before publishing if the file's version moved
 *   while it ran (every change to staged bytes goes through a writable open or a
 *   truncate, which the core reports here).
 * - An upload stopped because its file changed ends with FILE_CHANGED, which no store
 *   wraps and the retry layer never retries: one attempt, then the new bytes' turn.
 * - An upload record is trusted only for the exact (size, mtime) it was made for.
 * - Records are written to the index in batches (one transaction each, within
 *   RECORD_FLUSH_MS or RECORD_BATCH records); until then they are read from memory.
 *   A record lost to a crash or a failed write only costs looking the object up (or
 *   sending it) again. Forgetting a record is never deferred: `touch` deletes it from
 *   the index at once, so a crash can never leave a record that outlived its bytes.
 * - A small file (up to SMALL_FILE_BYTES) whose object the store can create only if
 *   absent (`capabilities.conditionalWrites`) costs one request: a create-only PUT,
 *   whose 412 means "already there" (dedup). Larger files, distrusted records checked
 *   again, and stores that do not enforce If-None-Match look the object up first: a
 *   body sent only to learn it was there costs more than the look-up, and a store
 *   that ignores If-None-Match would overwrite instead of answering.
 * - Every upload pins its object in the metadata (`ControlApi.pinObject`, one pin per
 *   file) before it asks the bucket whether the object exists, so gc never deletes an
 *   object an upload found there and skipped sending.
 * - A background failure is logged and left for the commit, which uploads again and
 *   fails with the error if it persists: nothing is swallowed.
 * - A large file written in order by one writer has been uploading since its prefix
 *   passed START_BYTES (early-upload.ts): its upload publishes that, under the digest
 *   taken while it was written, after the same pin and look-up; any change of the file
 *   (`touch`, `bump`) stops it first.
 * - After `distrust()` (an agent of another node registering: gc may have expired its
 *   pins while it was not heard from, src/commit/gc.ts), a record made before is used
 *   only after a new pin and a new look-up in the bucket; an upload that pinned before
 *   and ends after is done again the same way.
 */
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import { objectKey } from '../commit/layout.js';
import { CacheError, StoreError, toRosetError } from '../errors/index.js';
import { addUploadQueue, dedupedBytesTotal, uploadedBytesTotal, type UploadQueueState } from '../metrics/index.js';
import { delayPoint } from '../util/failpoints.js';
import { hashFile, hashFileBlocks, type BlockHashes } from '../util/block-hash.js';
import { sleep } from '../util/sleep.js';
import { stagingPath, type CoreContext } from './context.js';
import type { UploadRecord } from './staging-index.js';
import { EarlyUploads, type ClosedEarlyUpload } from './early-upload.js';

/** How long an upload waits before pinning again an object gc is deleting. */
const PIN_RETRY_MS = 50;
/**
 * Files up to this size are small: one request each where the store enforces
 * create-only PUTs, and SMALL_CONCURRENCY of them upload at once. The bound is where a
 * body sent only to learn the object was there (dedup) still costs little next to a
 * round trip.
 */
export const SMALL_FILE_BYTES = 1024 * 1024;
/** Small files uploading at once in the background; memory: at most this × SMALL_FILE_BYTES. */
const SMALL_CONCURRENCY = 16;
/** Upload records written in one index transaction at most, and how long one waits. */
const RECORD_BATCH = 256;
const RECORD_FLUSH_MS = 25;

export interface UploadOutcome {
  sha256: string;
  size: number;
  mtimeMs: number;
  /** Whether this object had to be sent (now or earlier in the background) or already existed. */
  how: 'uploaded' | 'deduped';
}

export class Uploader {
  private readonly versions = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<UploadOutcome>>();
  /** Queued files, each with when it was queued (ms since the epoch), oldest first. */
  private readonly queues = { small: new Map<string, number>(), large: new Map<string, number>() };
  private readonly active = { small: 0, large: 0 };
  /** Upload records not yet in the index, written by the next `flushRecords`. */
  private readonly pending = new Map<string, UploadRecord>();
  private flushTimer: NodeJS.Timeout | null = null;
  private idle: Array<() => void> = [];
  /**
   * The nodes whose upload records were pinned and checked since the last `distrust()`;
   * null: every record is trusted (never distrusted: an embedded daemon's pins never expire).
   */
  private verified: Set<string> | null = null;
  /** Moves at each `distrust()`: an upload that saw another epoch at its pin is not trusted. */
  private epoch = 0;
  /** Files uploading while written (see the header). */
  private readonly early: EarlyUploads;

  constructor(private readonly ctx: CoreContext, private readonly concurrency = 2, private readonly smallConcurrency = SMALL_CONCURRENCY) {
    this.early = new EarlyUploads(ctx.store, ctx.log, (nodeId) => stagingPath(ctx, nodeId));
    const self = new WeakRef(this);
    addUploadQueue(() => {
      const u = self.deref();
      if (!u) throw new Error('gone');
      return u.queueState();
    });
  }

  /** For metrics, at scrape time: what waits, its bytes, and since when. */
  private queueState(): UploadQueueState {
    let bytes = 0;
    let oldest: number | null = null;
    for (const queue of [this.queues.small, this.queues.large]) {
      for (const nodeId of queue.keys()) {
        try {
          bytes += fsSync.statSync(stagingPath(this.ctx, nodeId)).size;
        } catch { /* removed meanwhile */ }
      }
      const first = queue.values().next();
      if (!first.done && (oldest === null || first.value < oldest)) oldest = first.value;
    }
    return { files: this.queued(), bytes, oldestQueuedAt: oldest };
  }

  private queued(): number {
    return this.queues.small.size + this.queues.large.size;
  }

  /** The upload record of a node: one waiting to be written, or the index's. */
  private record(nodeId: string): UploadRecord | null {
    return this.pending.get(nodeId) ?? this.ctx.index.upload(nodeId);
  }

  /**
   * Keeps a record of a file's bytes (the hash taken while writing, or an upload's
   * outcome); it reaches the index with the next batch.
   */
  remember(rec: UploadRecord): void {
    this.pending.set(rec.nodeId, rec);
    if (this.pending.size >= RECORD_BATCH) this.flushRecords();
    else if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => this.flushRecords(), RECORD_FLUSH_MS);
      this.flushTimer.unref();
    }
  }

  /** Drops a node's record, waiting or written: its bytes are gone or changing. */
  forget(nodeId: string): void {
    this.pending.delete(nodeId);
    this.ctx.index.dropUpload(nodeId);
  }

  /**
   * Writes the waiting records in one transaction. A failed write (a full cache disk)
   * is logged and the batch dropped: each record only saves work, and without it the
   * file's object is looked up or sent again by the commit.
   */
  flushRecords(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    this.pending.clear();
    try {
      this.ctx.index.setUploads(batch);
    } catch (err) {
      this.ctx.log.warn({ files: batch.length, err: (err as Error).message }, 'could not record upload states; the commit looks those objects up again');
    }
  }

  /**
   * The pins this agent took may be gone (it registered, perhaps after gc expired it):
   * from now on a record made before is used only after pinning and looking up again.
   */
  distrust(): void {
    this.epoch++;
    this.verified = new Set();
  }

  private trusted(nodeId: string): boolean {
    return this.verified === null || this.verified.has(nodeId);
  }

  /**
   * The first `bytes` bytes of the node's file, written through `fh` in order from byte
   * 0 by its only writer, are final (vouched for by the in-order hash that runs on the
   * handle): a large file starts uploading.
   */
  writing(fh: number, nodeId: string, bytes: number): void {
    if (this.ctx.uploadWhileWriting) this.early.grew(fh, nodeId, bytes);
  }

  /** A writer closed: `sha256`, the digest of all `size` bytes written in order through it, or null. */
  writerClosed(fh: number, sha256: string | null, size: number): void {
    this.early.writerClosed(fh, sha256, size);
  }

  /** Stops the uploads of files still being written (the daemon is stopping). */
  async close(): Promise<void> {
    await this.early.close();
  }

  /** Something may change the file's bytes: past uploads no longer describe it. */
  touch(nodeId: string): void {
    this.bump(nodeId);
    this.verified?.delete(nodeId);
    // At once, not batched: after a crash, a record of the old bytes must not meet new
    // bytes of the same size and mtime.
    this.forget(nodeId);
  }

  /**
   * The in-memory half of `touch`: an upload running now cannot publish. For unlink,
   * which must work on a full disk, so it frees the bytes before writing the index.
   */
  bump(nodeId: string): void {
    this.versions.set(nodeId, (this.versions.get(nodeId) ?? 0) + 1);
    this.early.drop(nodeId);
  }

  private version(nodeId: string): number {
    return this.versions.get(nodeId) ?? 0;
  }

  /** Queues a closed file for upload in the background. */
  schedule(nodeId: string): void {
    if (!this.queues.small.has(nodeId) && !this.queues.large.has(nodeId)) {
      let size = 0;
      try {
        size = fsSync.statSync(stagingPath(this.ctx, nodeId)).size;
      } catch { /* gone: its upload fails fast and says why */ }
      (size <= SMALL_FILE_BYTES ? this.queues.small : this.queues.large).set(nodeId, Date.now());
    }
    this.pump();
  }

  private pump(): void {
    this.start('large', this.concurrency);
    this.start('small', this.smallConcurrency);
  }

  private start(kind: 'small' | 'large', limit: number): void {
    const queue = this.queues[kind];
    while (this.active[kind] < limit && queue.size > 0) {
      const nodeId = queue.keys().next().value as string;
      queue.delete(nodeId);
      // A file reopened for writing is uploaded at its next close instead.
      if (this.ctx.handles.openFor(nodeId).some((h) => h.writable)) continue;
      this.active[kind]++;
      const version = this.version(nodeId);
      this.ensure(nodeId).catch((err: unknown) => {
        const e = toRosetError(err);
        // A file changed or deleted meanwhile stops its upload on purpose.
        if (this.version(nodeId) !== version || e.rosetCode === 'FILE_CHANGED' || e.rosetCode === 'NODE_NOT_FOUND') this.ctx.log.debug({ nodeId, err: e.message }, 'background upload stopped: the file changed');
        else this.ctx.log.warn({ nodeId, code: e.rosetCode, err: e.message }, 'background upload failed; the commit will upload again');
      }).finally(() => {
        this.active[kind]--;
        this.pump();
        if (this.isIdle()) {
          // Nothing more to batch with: the records go to the index now.
          this.flushRecords();
          for (const r of this.idle.splice(0)) r();
        }
      });
    }
  }

  private isIdle(): boolean {
    return this.active.small === 0 && this.active.large === 0 && this.queued() === 0;
  }

  /** Resolves when no background upload runs or waits. */
  drained(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  /** The staged file as it is now, in the store: from a record, an upload in flight, or a new upload. */
  async ensure(nodeId: string): Promise<UploadOutcome> {
    for (;;) {
      const st = await fs.stat(stagingPath(this.ctx, nodeId)).catch(() => null);
      if (!st) throw new CacheError('INTERNAL', `The staged bytes of node ${nodeId} are missing from the cache`);
      const rec = this.record(nodeId);
      if (rec && rec.state !== 'hashed' && rec.size === st.size && rec.mtimeMs === Math.floor(st.mtimeMs) && this.trusted(nodeId)) {
        return { sha256: rec.sha256, size: rec.size, mtimeMs: rec.mtimeMs, how: rec.state };
      }
      const running = this.inflight.get(nodeId);
      if (running) {
        await running.catch(() => undefined);
        continue;
      }
      const p = this.upload(nodeId, rec).finally(() => this.inflight.delete(nodeId));
      this.inflight.set(nodeId, p);
      const out = await p;
      // Distrusted while it ran (its pin may predate an expiry): pin and look up again.
      if (this.trusted(nodeId)) return out;
    }
  }

  /** The end of an upload while writing: its pin, then a look-up (dedup) or its publish. */
  private async publishEarly(nodeId: string, early: ClosedEarlyUpload, at: { version: number; epoch: number; size: number; mtimeMs: number }): Promise<UploadOutcome> {
    const sha = early.sha256;
    const changed = (): void => {
      if (this.version(nodeId) !== at.version) throw new CacheError('FILE_CHANGED', `node ${nodeId} changed while it was being uploaded`);
    };
    try {
      this.ctx.index.setObjectBlocks(sha, await early.blocks());
      changed();
      while (!(await this.ctx.control.pinObject(this.ctx.mountId, this.ctx.agentId, nodeId, sha))) {
        changed();
        await sleep(PIN_RETRY_MS);
      }
    } catch (err) {
      await early.upload.abort();
      throw err;
    }
    const key = objectKey(sha);
    let how: UploadOutcome['how'] = 'uploaded';
    if (await this.ctx.store.head(key).catch(async (err: unknown) => { await early.upload.abort(); throw err; })) {
      await early.upload.abort();
      how = 'deduped';
    } else {
      this.ctx.log.debug({ nodeId, size: at.size, sentBeforeClose: early.upload.sentBytes }, 'publishing a file uploaded while it was written');
      await early.upload.publish(key, at.size, { beforeComplete: changed });
    }
    changed();
    if (how === 'uploaded') uploadedBytesTotal.inc(at.size);
    else dedupedBytesTotal.inc(at.size);
    this.remember({ nodeId, size: at.size, mtimeMs: at.mtimeMs, sha256: sha, state: how });
    if (this.verified && this.epoch === at.epoch) this.verified.add(nodeId);
    return { sha256: sha, size: at.size, mtimeMs: at.mtimeMs, how };
  }

  private async upload(nodeId: string, rec: UploadRecord | null): Promise<UploadOutcome> {
    const local = stagingPath(this.ctx, nodeId);
    const version = this.version(nodeId);
    const epoch = this.epoch;
    const st = await fs.stat(local);
    const size = st.size;
    const mtimeMs = Math.floor(st.mtimeMs);
    // A record of these exact bytes (a hash taken while the file was written
    // sequentially, or a distrusted upload) saves reading them again.
    const same = rec !== null && rec.size === size && rec.mtimeMs === mtimeMs;
    // Sent while it was written: only the rest, the completion and a copy are left.
    const early = same && rec.state === 'hashed' ? this.early.take(nodeId, rec.sha256, size) : null;
    if (!early) this.early.drop(nodeId);
    if (early) return this.publishEarly(nodeId, early, { version, epoch, size, mtimeMs });
    // One read pass gives the object's name and its block hashes (src/util/block-hash.ts).
    // Bytes named from a record (hashed while written) still need their block hashes
    // once: taken on the hash pool while the bytes upload, not before, so that pass
    // costs the upload no time. They are recorded before the upload counts as done.
    const hashed = same ? { sha256: rec.sha256, blocks: null } : await hashFile(local);
    const sha = hashed.sha256;
    const pendingBlocks = same && !this.ctx.index.objectBlocks(sha, size) ? hashFileBlocks(local) : null;
    // Awaited on every path below; this only keeps a failure from being unhandled meanwhile.
    pendingBlocks?.catch(() => undefined);
    const changed = (): void => {
      if (this.version(nodeId) !== version) throw new CacheError('FILE_CHANGED', `node ${nodeId} changed while it was being uploaded`);
    };
    try {
      return await this.send(nodeId, local, { sha, size, mtimeMs, epoch, changed, recorded: same ? rec.state : null, blocks: hashed.blocks, pendingBlocks });
    } finally {
      await pendingBlocks?.catch(() => undefined);
    }
  }

  /** The pin, then the look-up or the upload of one object, then its record. */
  private async send(nodeId: string, local: string, o: {
    /** The state of a record of these exact bytes, or null. */
    recorded: UploadRecord['state'] | null;
    sha: string; size: number; mtimeMs: number; epoch: number; changed: () => void;
    blocks: BlockHashes | null; pendingBlocks: Promise<BlockHashes> | null;
  }): Promise<UploadOutcome> {
    const { sha, size, mtimeMs, epoch, changed, recorded } = o;
    changed();
    if (o.blocks) this.ctx.index.setObjectBlocks(sha, o.blocks);
    // The pin comes before the bucket is asked: from then on gc keeps the object, or,
    // while gc is deleting it (a tombstone), the pin waits until it is gone, and the
    // object is then uploaded again (src/commit/gc.ts).
    while (!(await this.ctx.control.pinObject(this.ctx.mountId, this.ctx.agentId, nodeId, sha))) {
      changed();
      await sleep(PIN_RETRY_MS);
    }
    const key = objectKey(sha);
    let how: UploadOutcome['how'] = 'uploaded';
    // A distrusted record checked again: found, it stays what it was, counted once.
    let recheck = false;
    const known = recorded !== null && recorded !== 'hashed';
    // A new small object: one create-only PUT, whose 412 is the dedup answer. Safe for
    // gc as the look-up was: the pin above comes before either request.
    const createOnly = !known && size <= SMALL_FILE_BYTES && this.ctx.store.capabilities.conditionalWrites;
    if (!createOnly && await this.ctx.store.head(key)) {
      recheck = known;
      how = recorded === 'uploaded' ? 'uploaded' : 'deduped';
    } else {
      await delayPoint('upload.before-put', this.ctx.log);
      try {
        // The content address goes along: a store whose server verifies SHA-256 sends it
        // instead of hashing the bytes again, and then refuses bytes that do not match it.
        await this.ctx.store.putFile(key, local, { ifAbsent: true, sha256: sha, beforeComplete: changed, beforePart: changed });
      } catch (err) {
        // Another upload of the same bytes got there first: that is dedup, not failure.
        if (err instanceof StoreError && err.rosetCode === 'PRECONDITION_FAILED') how = 'deduped';
        else throw err;
      }
    }
    if (o.pendingBlocks) this.ctx.index.setObjectBlocks(sha, await o.pendingBlocks);
    changed();
    if (!recheck) {
      if (how === 'uploaded') uploadedBytesTotal.inc(size);
      else dedupedBytesTotal.inc(size);
    }
    const out: UploadOutcome = { sha256: sha, size, mtimeMs, how };
    this.remember({ nodeId, size, mtimeMs, sha256: sha, state: how });
    if (this.verified && this.epoch === epoch) this.verified.add(nodeId);
    return out;
  }
}
