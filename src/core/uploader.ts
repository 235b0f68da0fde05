/**
 * Background upload: a staged file's bytes go to the store as soon as its last writer
 * closes, so that by the time `commit()` is called most bytes are already in the
 * bucket, and the commit path reuses the result.
 *
 * Owns: the upload queue (bounded concurrency), the per-file upload records of the
 * staging index, and the "version" of each staged file (bumped by anything that can
 * change its bytes: a writable open, a truncate, an unlink).
 *
 * Invariants:
 * - `objects/<sha>` only ever holds bytes that hash to `<sha>`: the hash is taken
 *   first, and the upload is aborted before publishing if the file's version moved
 *   while it ran (every change to staged bytes goes through a writable open or a
 *   truncate, which the core reports here).
 * - An upload stopped because its file changed ends with FILE_CHANGED, which no store
 *   wraps and the retry layer never retries: one attempt, then the new bytes' turn.
 * - An upload record is trusted only for the exact (size, mtime) it was made for.
 * - Every upload pins its object in the metadata (`ControlApi.pinObject`, one pin per
 *   file) before it asks the bucket whether the object exists, so gc never deletes an
 *   object an upload found there and skipped sending.
 * - A background failure is logged and left for the commit, which uploads again and
 *   fails with the error if it persists: nothing is swallowed.
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
import { hashFile, hashFileBlocks } from '../util/block-hash.js';
import { sleep } from '../util/sleep.js';
import { stagingPath, type CoreContext } from './context.js';
import type { UploadRecord } from './staging-index.js';

/** How long an upload waits before pinning again an object gc is deleting. */
const PIN_RETRY_MS = 50;

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
  private readonly queue = new Map<string, number>();
  private active = 0;
  private idle: Array<() => void> = [];
  /**
   * The nodes whose upload records were pinned and checked since the last `distrust()`;
   * null: every record is trusted (never distrusted: an embedded daemon's pins never expire).
   */
  private verified: Set<string> | null = null;
  /** Moves at each `distrust()`: an upload that saw another epoch at its pin is not trusted. */
  private epoch = 0;

  constructor(private readonly ctx: CoreContext, private readonly concurrency = 2) {
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
    for (const nodeId of this.queue.keys()) {
      try {
        bytes += fsSync.statSync(stagingPath(this.ctx, nodeId)).size;
      } catch { /* removed meanwhile */ }
    }
    const first = this.queue.values().next();
    return { files: this.queue.size, bytes, oldestQueuedAt: first.done ? null : first.value };
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

  /** Something may change the file's bytes: past uploads no longer describe it. */
  touch(nodeId: string): void {
    this.bump(nodeId);
    this.verified?.delete(nodeId);
    this.ctx.index.dropUpload(nodeId);
  }

  /**
   * The in-memory half of `touch`: an upload running now cannot publish. For unlink,
   * which must work on a full disk, so it frees the bytes before writing the index.
   */
  bump(nodeId: string): void {
    this.versions.set(nodeId, (this.versions.get(nodeId) ?? 0) + 1);
  }

  private version(nodeId: string): number {
    return this.versions.get(nodeId) ?? 0;
  }

  /** Queues a closed file for upload in the background. */
  schedule(nodeId: string): void {
    if (!this.queue.has(nodeId)) this.queue.set(nodeId, Date.now());
    this.pump();
  }

  private pump(): void {
    while (this.active < this.concurrency && this.queue.size > 0) {
      const nodeId = this.queue.keys().next().value as string;
      this.queue.delete(nodeId);
      // A file reopened for writing is uploaded at its next close instead.
      if (this.ctx.handles.openFor(nodeId).some((h) => h.writable)) continue;
      this.active++;
      const version = this.version(nodeId);
      this.ensure(nodeId).catch((err: unknown) => {
        const e = toRosetError(err);
        // A file changed or deleted meanwhile stops its upload on purpose.
        if (this.version(nodeId) !== version || e.rosetCode === 'FILE_CHANGED' || e.rosetCode === 'NODE_NOT_FOUND') this.ctx.log.debug({ nodeId, err: e.message }, 'background upload stopped: the file changed');
        else this.ctx.log.warn({ nodeId, code: e.rosetCode, err: e.message }, 'background upload failed; the commit will upload again');
      }).finally(() => {
        this.active--;
        this.pump();
        if (this.active === 0 && this.queue.size === 0) for (const r of this.idle.splice(0)) r();
      });
    }
  }

  /** Resolves when no background upload runs or waits. */
  drained(): Promise<void> {
    if (this.active === 0 && this.queue.size === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  /** The staged file as it is now, in the store: from a record, an upload in flight, or a new upload. */
  async ensure(nodeId: string): Promise<UploadOutcome> {
    for (;;) {
      const st = await fs.stat(stagingPath(this.ctx, nodeId)).catch(() => null);
      if (!st) throw new CacheError('INTERNAL', `The staged bytes of node ${nodeId} are missing from the cache`);
      const rec = this.ctx.index.upload(nodeId);
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
    // One read pass gives the object's name and its block hashes (src/util/block-hash.ts);
    // bytes named from a record still need their block hashes once, here rather than
    // on the commit's path.
    const hashed = same
      ? { sha256: rec.sha256, blocks: this.ctx.index.objectBlocks(rec.sha256, size) ? null : await hashFileBlocks(local) }
      : await hashFile(local);
    const sha = hashed.sha256;
    const changed = (): void => {
      if (this.version(nodeId) !== version) throw new CacheError('FILE_CHANGED', `node ${nodeId} changed while it was being uploaded`);
    };
    changed();
    if (hashed.blocks) this.ctx.index.setObjectBlocks(sha, hashed.blocks);
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
    if (await this.ctx.store.head(key)) {
      recheck = same && rec.state !== 'hashed';
      how = same && rec.state === 'uploaded' ? 'uploaded' : 'deduped';
    } else {
      await delayPoint('upload.before-put', this.ctx.log);
      try {
        await this.ctx.store.putFile(key, local, { ifAbsent: true, beforeComplete: changed, beforePart: changed });
      } catch (err) {
        // Another upload of the same bytes got there first: that is dedup, not failure.
        if (err instanceof StoreError && err.rosetCode === 'PRECONDITION_FAILED') how = 'deduped';
        else throw err;
      }
    }
    changed();
    if (!recheck) {
      if (how === 'uploaded') uploadedBytesTotal.inc(size);
      else dedupedBytesTotal.inc(size);
    }
    const out: UploadOutcome = { sha256: sha, size, mtimeMs, how };
    this.ctx.index.setUpload({ nodeId, size, mtimeMs, sha256: sha, state: how });
    if (this.verified && this.epoch === epoch) this.verified.add(nodeId);
    return out;
  }
}
