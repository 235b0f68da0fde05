/**
 * Committed objects in the local cache: fetched from the store on first read, kept
 * under a size limit with least-recently-used eviction.
 *
 * Owns: `<cacheDir>/objects/<sha256>`, the `cached_objects` rows of the staging
 * index (size, last access), and the block lists of recently read manifests.
 *
 * Two ways in, by what the manifest of the file's commit says (docs/SEMANTICS.md,
 * "Block hashes"):
 * - with block hashes: one ranged GET per block (8 MiB), each block hashed on the
 *   worker pool (every core) as it arrives and written to the temporary file only once
 *   it verified; a short or wrong block is fetched again, twice, then INTEGRITY_ERROR.
 *   The whole-file SHA-256 is taken afterwards, off the readers' path, from the file on
 *   disk, before the object is recorded as durable;
 * - without (a 0.1.0 manifest, a file an earlier commit uploaded, a manifest gone, or
 *   an object of one block or less, for which the manifest is not read):
 *   ranged GETs hashed in order with one whole-file SHA-256 before anything is served.
 *
 * A block download can be read before it completes (`openStreaming`, for the native
 * binding): the reader opens the temporary file and waits on the download's gate for
 * the blocks its read covers; the gate's bitmap of verified blocks lives in memory
 * only, and a temporary file is never trusted after a restart (removed at start), so a
 * crash can never make an unverified block readable.
 *
 * Invariants:
 * - A cached object is published by rename only after every byte of it verified
 *   (every block, or the whole-file sha256), and a block of a download in progress is
 *   marked readable only after it verified and was written, so a reader never gets
 *   wrong bytes; a mismatch is INTEGRITY_ERROR (EIO) and an error log.
 * - An object file is trusted across a restart only once it is recorded in the index,
 *   which happens after its bytes are on disk (fsync) and, for a block-verified one,
 *   after its whole-file SHA-256 matched its name. Readers do not wait for that; a
 *   crash before it leaves an unrecorded file, which `sweep` removes at start, so a
 *   torn or unverified file is never served after a restart.
 * - An object whose blocks verified but whose whole-file SHA-256 did not (a block list
 *   that lies: only a store that forges could write one) is removed, and from then on
 *   this process fetches it only through the whole-file check.
 * - Downloads use parallel ranged GETs; memory stays bounded (at most concurrency
 *   chunks or blocks in flight) whatever the object size.
 * - Concurrent reads of one object share one download; a cached object is never
 *   downloaded again until it is evicted.
 * - Only committed objects are evicted (they are in the store); staged bytes never are.
 * - Readers go before prefetch (`prefetch`, for sibling prefetch): a prefetch download
 *   holds at most a quarter of the block budget, a freed slot goes to a reader's block
 *   first, and a download a reader joins is a reader's from then on. A prefetch starts
 *   only if the object fits under `maxBytes` beside every object cached or downloading,
 *   so it never makes the cache evict anything.
 */
import { createHash, randomUUID } from 'node:crypto';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { LRUCache } from 'lru-cache';
import { manifestKey, objectKey } from '../commit/layout.js';
import { CacheError, StoreError } from '../errors/index.js';
import { BLOCK_SIZE, blockHashPool, parseBlockHashes, type BlockHashes } from '../util/block-hash.js';
import { addReadCache, cacheDownloadedBytesTotal, cacheHitsTotal, cacheMissesTotal } from '../metrics/index.js';
import { cacheTmpDir, objectCachePath, type CoreContext } from './context.js';

const DEFAULT_CHUNK = 16 << 20;
const DEFAULT_CONCURRENCY = 8;
/** Blocks in memory across every block download at once: 16 × 8 MiB = 128 MiB. */
const DEFAULT_TOTAL_BLOCKS = 16;
/** Tries per block: a short or corrupted body is fetched again before the read fails. */
const BLOCK_ATTEMPTS = 3;
/** Manifests whose block lists are kept in memory (a manifest of many files is large). */
const MANIFESTS_KEPT = 16;

/** What a reader of an object still downloading waits on (see `openStreaming`). */
export interface RangeGate {
  /** Resolves once every block covering [offset, offset + length) verified; rejects with the download's failure. */
  wait(offset: number, length: number): Promise<void>;
  /** Whether every block covering [offset, offset + length) verified (no wait needed). */
  readable(offset: number, length: number): boolean;
  /** Every block verified: no read needs to wait any more. */
  readonly complete: boolean;
}

interface Download {
  /** The published path, once every byte verified. */
  done: Promise<string>;
  /** Per-block progress, for a download verified block by block; null for a whole-file one. */
  gate: BlockGate | null;
}

/** A download running, and who it runs for (a prefetch becomes a reader's once one joins it). */
interface Inflight {
  download: Promise<Download>;
  who: { forReader: boolean };
}

/** What `prefetch` did with an object. */
export type PrefetchStart =
  /** Cached already, or downloading (for a reader or another prefetch). */
  | { kind: 'present' }
  /** It does not fit under `maxBytes` beside what is cached and downloading: not started. */
  | { kind: 'no-room' }
  /** A download started for the prefetch; `done` settles as a reader's would. */
  | { kind: 'started'; done: Promise<string> };

export interface ObjectCacheOptions {
  /** Bytes of committed objects to keep; 0 means no limit. */
  maxBytes: number;
  /** Size of each ranged GET (default 16 MiB). */
  chunkBytes?: number;
  /** Ranged GETs in flight per download (default 8). */
  concurrency?: number;
  /**
   * Blocks fetched or held at once across all block downloads (default 16): many files
   * read at once (a loader opening every shard) share this budget of connections and
   * memory instead of each taking `concurrency`.
   */
  totalBlocks?: number;
}

export class ObjectCache {
  private readonly inflight = new Map<string, Inflight>();
  /**
   * Bytes of objects downloading or downloaded but not yet recorded in the index (by
   * sha256): with the index's total, what the cache will hold once they are in.
   */
  private readonly unrecorded = new Map<string, number>();
  /** Published (renamed) but not yet fsynced and recorded; see `persist`. */
  private readonly unsynced = new Set<string>();
  private readonly syncing = new Set<Promise<void>>();
  /** Per commit: the block lists of its manifest by sha256 (loaded once, shared by concurrent reads). */
  private readonly manifests = new LRUCache<string, Promise<Map<string, unknown>>>({ max: MANIFESTS_KEPT });
  /** The budget of blocks in flight across downloads (`totalBlocks`): readers first, then prefetch. */
  private readonly budget: BlockBudget;
  /** Objects whose block list lied (see the invariants): whole-file check only. */
  private readonly distrusted = new Set<string>();
  /**
   * Block buffers to fill again (at most `totalBlocks`, as many as can be in flight):
   * a new 8 MiB buffer per block made V8 collect garbage for the external memory every
   * few blocks, which cost a cold read about a fifth of its CPU.
   */
  private readonly spare: Buffer[] = [];

  constructor(private readonly ctx: CoreContext, private readonly options: ObjectCacheOptions = { maxBytes: 0 }) {
    const total = options.totalBlocks ?? DEFAULT_TOTAL_BLOCKS;
    this.budget = new BlockBudget(total, Math.max(1, Math.floor(total / 4)));
    const ref = new WeakRef(this.ctx);
    addReadCache(() => {
      const c = ref.deref();
      if (!c) throw new Error('gone');
      return c.index.cachedBytes();
    });
  }

  /**
   * Local path of a committed object, downloading and verifying it if needed.
   * `commitId`: the commit whose manifest lists the file (its node's commit id), where
   * its block hashes are looked up; absent, the object is verified whole. `onMiss` is
   * called when the object is not cached (its download starts, or is joined).
   */
  async localPath(sha256: string, size: number, commitId?: string | null, onMiss?: () => void): Promise<string> {
    const hit = await this.hit(sha256, size);
    if (hit) return hit;
    onMiss?.();
    return (await this.start(sha256, size, commitId ?? null, true)).done;
  }

  /**
   * For a binding that can hold a read until the blocks it covers verified (the native
   * binding): the file to open now and the gate every read must pass, or no gate when
   * every byte of the file is verified already. The file may be the download's
   * temporary file, renamed to `objectCachePath` when it completes (an fd open on it
   * stays valid); bytes of it are readable only once `gate.wait` resolved for them.
   * `onMiss` as for `localPath`.
   */
  async openStreaming(sha256: string, size: number, commitId?: string | null, onMiss?: () => void): Promise<{ path: string; gate: RangeGate | null }> {
    const hit = await this.hit(sha256, size);
    if (hit) return { path: hit, gate: null };
    onMiss?.();
    const d = await this.start(sha256, size, commitId ?? null, true);
    if (!d.gate || d.gate.complete) return { path: await d.done, gate: null };
    return { path: d.gate.tmp, gate: d.gate };
  }

  private async hit(sha256: string, size: number): Promise<string | null> {
    const p = objectCachePath(this.ctx, sha256);
    try {
      const st = await fs.stat(p);
      if (st.size === size) {
        if (!this.unsynced.has(sha256)) this.touch(sha256, size);
        cacheHitsTotal.inc();
        return p;
      }
    } catch {
      // Not cached yet.
    }
    cacheMissesTotal.inc();
    return null;
  }

  /**
   * Starts downloading an object into the cache for sibling prefetch, if it is neither
   * cached nor downloading and fits under `maxBytes` beside everything cached or
   * downloading (0: no limit), so that it evicts nothing. The check and the start are
   * one synchronous step after the last await: two prefetches cannot both take the
   * last room. It counts no hit or miss and leaves the LRU order alone.
   */
  async prefetch(sha256: string, size: number, commitId: string | null): Promise<PrefetchStart> {
    if (this.inflight.has(sha256) || this.unrecorded.has(sha256)) return { kind: 'present' };
    const st = await fs.stat(objectCachePath(this.ctx, sha256)).catch(() => null);
    if (st?.size === size || this.inflight.has(sha256) || this.unrecorded.has(sha256)) return { kind: 'present' };
    const max = this.options.maxBytes;
    if (max > 0 && this.ctx.index.cachedBytes() + this.unrecordedBytes() + size > max) return { kind: 'no-room' };
    const d = this.start(sha256, size, commitId, false);
    return { kind: 'started', done: d.then((x) => x.done) };
  }

  private unrecordedBytes(): number {
    let n = 0;
    for (const b of this.unrecorded.values()) n += b;
    return n;
  }

  /** The download of an object: the one running, or a new one. A reader joining a prefetch's download makes it a reader's. */
  private start(sha256: string, size: number, commitId: string | null, forReader: boolean): Promise<Download> {
    const running = this.inflight.get(sha256);
    if (running) {
      if (forReader && !running.who.forReader) {
        running.who.forReader = true;
        // Its blocks waiting beyond prefetch's share may take free slots now.
        this.budget.dispatch();
      }
      return running.download;
    }
    const who = { forReader };
    const d = this.download(sha256, size, objectCachePath(this.ctx, sha256), commitId, () => who.forReader);
    const entry: Inflight = { download: d, who };
    this.inflight.set(sha256, entry);
    this.unrecorded.set(sha256, size);
    const clear = (): void => {
      if (this.inflight.get(sha256) === entry) this.inflight.delete(sha256);
    };
    // A failed download is never recorded; a published one stays counted until `persist` ends.
    const failed = (): void => {
      clear();
      this.unrecorded.delete(sha256);
    };
    // Whoever awaits `done` sees its failure; this only ends the sharing.
    d.then((x) => x.done.then(clear, failed), failed);
    return d;
  }

  /**
   * Records a read for LRU order. Best effort: on a full cache disk the index cannot
   * take the write, and a committed file must stay readable; the cost is only a less
   * exact eviction order, so it is logged, not raised.
   */
  private touch(sha256: string, size: number): void {
    try {
      this.ctx.index.touchCachedObject(sha256, size);
    } catch (err) {
      this.ctx.log.warn({ sha256, err: (err as Error).message }, 'could not record a read of a cached object (eviction order may be off)');
    }
  }

  /**
   * Adopts bytes already on local disk as the cached copy of an object (a staged file
   * whose commit completed): a hard link, no copy.
   */
  async adopt(localFile: string, sha256: string, size: number): Promise<void> {
    const p = objectCachePath(this.ctx, sha256);
    // Staged bytes reach the disk when the kernel gets to them; recorded only once there.
    await fsyncPath(localFile);
    try {
      await fs.link(localFile, p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    this.ctx.index.touchCachedObject(sha256, size);
    await this.evict();
  }

  private async download(sha256: string, size: number, dest: string, commitId: string | null, forReader: () => boolean): Promise<Download> {
    // An object of one block or less is verified whole: one GET either way, and its
    // manifest need not be read.
    const blocks = commitId && size > BLOCK_SIZE && !this.distrusted.has(sha256) ? await this.blocksFor(commitId, sha256, size) : null;
    let d: Download;
    if (blocks) {
      const gate = new BlockGate(path.join(cacheTmpDir(this.ctx), randomUUID()), size, blocks.size, blocks.hashes.length);
      // The file exists before any reader is told its path.
      const fh = await fs.open(gate.tmp, 'w');
      d = { done: this.fetchBlocks(sha256, size, blocks, dest, gate, fh, forReader), gate };
    } else {
      d = { done: this.fetch(sha256, size, dest), gate: null };
    }
    // A download only readers' gates wait on must not be an unhandled rejection.
    d.done.catch(() => undefined);
    return d;
  }

  /**
   * The block list the commit's manifest gives for this object, or null: a manifest
   * without one (0.1.0, or a file an earlier commit uploaded), a manifest gone from the
   * store, or one that cannot be read now. Null only changes how the bytes are
   * verified (whole, as before), never whether.
   */
  private async blocksFor(commitId: string, sha256: string, size: number): Promise<BlockHashes | null> {
    let listed = this.manifests.get(commitId);
    if (!listed) {
      listed = this.loadManifest(commitId);
      this.manifests.set(commitId, listed);
      // A failed load is not kept: the next read tries again.
      listed.catch(() => this.manifests.delete(commitId));
    }
    try {
      return parseBlockHashes((await listed).get(sha256), size);
    } catch (err) {
      this.ctx.log.warn({ commitId, sha256, err: (err as Error).message }, 'could not read the block hashes of a commit; verifying the object whole');
      return null;
    }
  }

  private async loadManifest(commitId: string): Promise<Map<string, unknown>> {
    const out = new Map<string, unknown>();
    let body: Buffer;
    try {
      body = await this.ctx.store.get(manifestKey(commitId));
    } catch (err) {
      if (err instanceof StoreError && err.rosetCode === 'OBJECT_NOT_FOUND') return out;
      throw err;
    }
    const m = JSON.parse(body.toString('utf8')) as { files?: Array<{ sha256?: unknown; blocks?: unknown }> };
    for (const f of m.files ?? []) if (typeof f.sha256 === 'string' && f.blocks !== undefined) out.set(f.sha256, f.blocks);
    return out;
  }

  /**
   * Downloads an object block by block, each verified against its hash on the worker
   * pool before it is written; published once every block is in. At most `concurrency`
   * GETs run at once and at most `concurrency` blocks are in memory; a block larger
   * than `chunkBytes` is fetched as several ranged GETs (the default, 16 MiB, makes it
   * one GET per block).
   */
  private async fetchBlocks(sha256: string, size: number, blocks: BlockHashes, dest: string, gate: BlockGate, fh: fs.FileHandle, forReader: () => boolean): Promise<string> {
    const key = objectKey(sha256);
    const tmp = gate.tmp;
    const CHUNK = this.options.chunkBytes ?? DEFAULT_CHUNK;
    const CONCURRENCY = this.options.concurrency ?? DEFAULT_CONCURRENCY;
    const count = blocks.hashes.length;
    let active = 0;
    const waiting: Array<() => void> = [];
    const get = async (offset: number, length: number, into?: Buffer): Promise<Buffer> => {
      while (active >= CONCURRENCY) await new Promise<void>((r) => waiting.push(r));
      active++;
      try {
        return await this.ctx.store.get(key, { offset, length, into });
      } finally {
        active--;
        waiting.shift()?.();
      }
    };
    const range = async (offset: number, length: number, into?: Buffer): Promise<Buffer> => {
      if (length <= CHUNK) return get(offset, length, into);
      const parts: Array<Promise<Buffer>> = [];
      for (let at = 0; at < length; at += CHUNK) parts.push(get(offset + at, Math.min(CHUNK, length - at)));
      return Buffer.concat(await Promise.all(parts));
    };
    let failure: unknown;
    const worker = async (): Promise<void> => {
      while (failure === undefined) {
        // A block's turn in the cache-wide budget lasts until it is written.
        const release = await this.budget.acquire(forReader);
        try {
          // Picked only now, so a block a reader asked for meanwhile goes first.
          const i = failure === undefined ? gate.pick() : null;
          if (i === null) return;
          const buf = await this.fetchBlock(key, blocks, i, size, range);
          await fh.write(buf, 0, buf.length, i * blocks.size);
          // Written, then readable: a reader's pread on the file sees these bytes.
          gate.verified(i);
          this.recycle(buf);
        } finally {
          release();
        }
      }
    };
    try {
      // An empty object has no blocks: its file is created, empty, and published.
      await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, () => worker().catch((err: unknown) => { failure ??= err; })));
      if (failure !== undefined) throw failure;
    } catch (err) {
      await fh.close();
      await fs.rm(tmp, { force: true });
      gate.fail(err);
      if (err instanceof CacheError && err.rosetCode === 'INTEGRITY_ERROR') this.ctx.log.error({ key, err: err.message }, 'object failed its integrity check');
      throw err;
    }
    await fh.close();
    this.unsynced.add(sha256);
    await fs.rename(tmp, dest);
    const done = this.persist(sha256, size, dest, true);
    this.syncing.add(done);
    void done.finally(() => this.syncing.delete(done));
    return dest;
  }

  /** Keeps a block's buffer for the next block, if it is a whole block buffer and the pool has room. */
  private recycle(buf: Buffer): void {
    if (buf.buffer.byteLength !== BLOCK_SIZE || !(buf.buffer instanceof ArrayBuffer)) return;
    if (this.spare.length < (this.options.totalBlocks ?? DEFAULT_TOTAL_BLOCKS)) this.spare.push(Buffer.from(buf.buffer));
  }

  /** One block, verified: fetched again if short or wrong, INTEGRITY_ERROR after the last try. */
  private async fetchBlock(key: string, blocks: BlockHashes, i: number, size: number, range: (offset: number, length: number, into?: Buffer) => Promise<Buffer>): Promise<Buffer> {
    const offset = i * blocks.size;
    const length = Math.min(blocks.size, size - offset);
    let why = '';
    let into = blocks.size === BLOCK_SIZE ? this.spare.pop() ?? Buffer.allocUnsafeSlow(BLOCK_SIZE) : undefined;
    for (let attempt = 1; attempt <= BLOCK_ATTEMPTS; attempt++) {
      const got = await range(offset, length, into);
      cacheDownloadedBytesTotal.inc(got.length);
      if (got.length !== length) {
        why = `block ${i}: ${got.length} of ${length} bytes`;
      } else {
        // Moved to a hash worker and back (no copy): only the returned buffer is usable.
        const { hex, bytes } = await blockHashPool().hashBlock(got);
        if (hex === blocks.hashes[i]) return bytes;
        why = `block ${i} does not match its hash`;
        into = bytes.buffer.byteLength === BLOCK_SIZE ? Buffer.from(bytes.buffer) : undefined;
      }
      this.ctx.log.warn({ key, block: i, attempt, why }, 'a block of an object failed its check; fetching it again');
    }
    throw new CacheError('INTEGRITY_ERROR', `Object ${key} failed its integrity check (${why}, ${BLOCK_ATTEMPTS} tries)`);
  }

  private async fetch(sha256: string, size: number, dest: string): Promise<string> {
    const key = objectKey(sha256);
    const tmp = path.join(cacheTmpDir(this.ctx), randomUUID());
    const fd = fsSync.openSync(tmp, 'w');
    const hash = createHash('sha256');
    const CHUNK = this.options.chunkBytes ?? DEFAULT_CHUNK;
    const CONCURRENCY = this.options.concurrency ?? DEFAULT_CONCURRENCY;
    const chunks = Math.ceil(size / CHUNK);
    const ready = new Map<number, Buffer>();
    let next = 0;
    let hashed = 0;
    let received = 0;
    let failure: unknown;
    // Workers parked by back-pressure; every one is woken whenever hashing moves on
    // (or a worker fails), and re-checks for itself.
    let parked: Array<() => void> = [];
    const wakeAll = (): void => {
      const p = parked;
      parked = [];
      for (const r of p) r();
    };
    const worker = async (): Promise<void> => {
      while (failure === undefined && next < chunks) {
        // Back-pressure: a slow early chunk must not let later ones pile up in memory.
        while (ready.size >= CONCURRENCY && failure === undefined) await new Promise<void>((r) => parked.push(r));
        if (failure !== undefined || next >= chunks) break;
        const i = next++;
        const offset = i * CHUNK;
        const length = Math.min(CHUNK, size - offset);
        const buf = await this.ctx.store.get(key, { offset, length });
        if (buf.length !== length) throw new CacheError('INTEGRITY_ERROR', `Object ${key} is shorter than its manifest says (chunk ${i}: ${buf.length} of ${length} bytes)`);
        await new Promise<void>((resolve, reject) => fsSync.write(fd, buf, 0, buf.length, offset, (err) => (err ? reject(err) : resolve())));
        received += buf.length;
        cacheDownloadedBytesTotal.inc(buf.length);
        ready.set(i, buf);
        // Hash strictly in order, as soon as the next chunk is in.
        while (ready.has(hashed)) {
          hash.update(ready.get(hashed)!);
          ready.delete(hashed);
          hashed++;
        }
        wakeAll();
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(CONCURRENCY, Math.max(chunks, 1)) }, () => worker().catch((err: unknown) => {
        failure ??= err;
        wakeAll();
      })));
      if (failure !== undefined) throw failure;
    } catch (err) {
      fsSync.closeSync(fd);
      await fs.rm(tmp, { force: true });
      if (err instanceof CacheError) this.ctx.log.error({ key, err: err.message }, 'object failed its integrity check');
      throw err;
    }
    fsSync.closeSync(fd);
    const got = hash.digest('hex');
    if (got !== sha256 || received !== size) {
      await fs.rm(tmp, { force: true });
      this.ctx.log.error({ key, expected: sha256, got, size, received }, 'object failed its integrity check');
      throw new CacheError('INTEGRITY_ERROR', `Object ${key} does not match its sha256 (got ${received} of ${size} bytes)`);
    }
    // Readers get the file now; it is recorded (trusted after a restart) once it is
    // on disk, off their path.
    this.unsynced.add(sha256);
    await fs.rename(tmp, dest);
    const done = this.persist(sha256, size, dest, false);
    this.syncing.add(done);
    void done.finally(() => this.syncing.delete(done));
    return dest;
  }

  /**
   * Records a published object as durable: its bytes on disk and, if only its blocks
   * were verified (`wholeCheck`), its whole-file SHA-256 read back from disk first.
   */
  private async persist(sha256: string, size: number, file: string, wholeCheck: boolean): Promise<void> {
    try {
      await this.record(sha256, size, file, wholeCheck);
    } finally {
      this.unrecorded.delete(sha256);
    }
  }

  private async record(sha256: string, size: number, file: string, wholeCheck: boolean): Promise<void> {
    try {
      if (wholeCheck) {
        // On a worker thread: 2 GiB take about a second of CPU, which readers of other
        // files need more than this check does.
        const got = await blockHashPool().sha256File(file);
        if (got !== sha256) {
          this.distrusted.add(sha256);
          this.unsynced.delete(sha256);
          await fs.rm(file, { force: true });
          this.ctx.index.dropCachedObject(sha256);
          this.ctx.log.error({ key: objectKey(sha256), got }, 'object passed its block hashes but not its sha256: removed, and verified whole from now on');
          return;
        }
      }
      await fsyncPath(file);
      this.ctx.index.touchCachedObject(sha256, size);
      this.unsynced.delete(sha256);
      await this.evict();
    } catch (err) {
      // Not recorded: served until the next start, which removes it (sweep).
      this.ctx.log.warn({ sha256, err: (err as Error).message }, 'could not make a downloaded object durable; it will be fetched again after a restart');
    }
  }

  /** Resolves once every download is on disk and recorded (for shutdown and tests). */
  async settled(): Promise<void> {
    while (this.syncing.size > 0) await Promise.all([...this.syncing]);
  }

  /**
   * At start: removes object files the index does not record (downloads a crash caught
   * before their fsync, or files from an older cache layout); they are fetched again.
   */
  async sweep(): Promise<number> {
    const known = new Set(this.ctx.index.cachedObjectsByAge().map((o) => o.sha256));
    let removed = 0;
    for (const name of await fs.readdir(path.join(this.ctx.cacheDir, 'objects'))) {
      if (known.has(name)) continue;
      await fs.rm(path.join(this.ctx.cacheDir, 'objects', name), { force: true });
      removed++;
    }
    if (removed > 0) this.ctx.log.info({ removed }, 'removed cached objects that were not recorded as durable');
    return removed;
  }

  /** Removes least-recently-used objects until the cache fits its limit (recorded ones only). */
  async evict(): Promise<void> {
    if (this.options.maxBytes <= 0) return;
    let total = this.ctx.index.cachedBytes();
    if (total <= this.options.maxBytes) return;
    for (const o of this.ctx.index.cachedObjectsByAge()) {
      if (total <= this.options.maxBytes) break;
      // An fd open on it keeps its bytes readable until closed, as unlink allows.
      await fs.rm(objectCachePath(this.ctx, o.sha256), { force: true });
      this.ctx.index.dropCachedObject(o.sha256);
      total -= o.size;
      this.ctx.log.debug({ sha256: o.sha256, size: o.size }, 'evicted a cached object');
    }
  }
}

async function fsyncPath(file: string): Promise<void> {
  const fh = await fs.open(file, 'r');
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/**
 * The blocks of one download: which verified (readable), which a reader waits for, and
 * which to fetch next. Readahead: the download fetches every block, in order from the
 * start, `concurrency` at a time, so a sequential reader finds the next blocks already
 * in flight; a block a reader waits for and that has not started goes first, so a
 * random reader (an mmap) waits for its own blocks, not for the ones before them.
 */
class BlockGate implements RangeGate {
  /** Per block: 0 not started, 1 in flight, 2 verified and written. */
  private readonly state: Uint8Array;
  private readonly urgent: number[] = [];
  private next = 0;
  private waiters: Array<{ first: number; last: number; resolve: () => void; reject: (err: unknown) => void }> = [];
  private failure: unknown;
  private done = 0;
  /** Every block verified: no read waits any more (the file may not be renamed yet). */
  complete: boolean;

  constructor(readonly tmp: string, private readonly size: number, private readonly blockSize: number, count: number) {
    this.state = new Uint8Array(count);
    this.complete = count === 0;
  }

  wait(offset: number, length: number): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const end = Math.min(this.size, offset + length);
    if (this.complete || end <= offset) return Promise.resolve();
    const first = Math.floor(offset / this.blockSize);
    const last = Math.floor((end - 1) / this.blockSize);
    if (this.ready(first, last)) return Promise.resolve();
    for (let i = first; i <= last; i++) if (this.state[i] === 0) this.urgent.push(i);
    return new Promise((resolve, reject) => this.waiters.push({ first, last, resolve, reject }));
  }

  readable(offset: number, length: number): boolean {
    if (this.failure !== undefined) return false;
    const end = Math.min(this.size, offset + length);
    if (this.complete || end <= offset) return true;
    return this.ready(Math.floor(offset / this.blockSize), Math.floor((end - 1) / this.blockSize));
  }

  /** The next block to fetch (marked in flight), or null when every block has started. */
  pick(): number | null {
    for (let i = this.urgent.shift(); i !== undefined; i = this.urgent.shift()) {
      if (this.state[i] === 0) return this.take(i);
    }
    while (this.next < this.state.length && this.state[this.next] !== 0) this.next++;
    return this.next < this.state.length ? this.take(this.next) : null;
  }

  verified(i: number): void {
    this.state[i] = 2;
    // Every byte is readable on the file already; publishing it is the cache's business.
    if (++this.done === this.state.length) this.complete = true;
    this.waiters = this.waiters.filter((w) => {
      if (!this.ready(w.first, w.last)) return true;
      w.resolve();
      return false;
    });
  }

  fail(err: unknown): void {
    this.failure = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private take(i: number): number {
    this.state[i] = 1;
    return i;
  }

  private ready(first: number, last: number): boolean {
    for (let i = first; i <= last; i++) if (this.state[i] !== 2) return false;
    return true;
  }
}

/**
 * The blocks fetched or held at once across downloads. Readers' blocks are served
 * first come first served; a prefetch's block gets a slot only when no reader's block
 * waits, and prefetch holds at most `prefetchMax` slots at once. So prefetch cannot
 * starve a reader: the rest of the budget is always the readers', and a slot a
 * prefetch block frees goes to a waiting reader's block first, so a reader waits
 * behind prefetch for at most the one block a slot is busy with. Whose a waiting
 * block is, is asked again at every grant (a reader may join a prefetch's download).
 */
class BlockBudget {
  private waiting: Array<{ forReader: () => boolean; grant: (asPrefetch: boolean) => void }> = [];
  private prefetchHeld = 0;

  constructor(private free: number, private readonly prefetchMax: number) {}

  acquire(forReader: () => boolean): Promise<() => void> {
    return new Promise((resolve) => {
      this.waiting.push({ forReader, grant: (asPrefetch) => resolve(this.releaser(asPrefetch)) });
      this.dispatch();
    });
  }

  /** Grants free slots to waiting blocks (also when a waiting block became a reader's). */
  dispatch(): void {
    while (this.free > 0 && this.waiting.length > 0) {
      let i = this.waiting.findIndex((w) => w.forReader());
      // No reader waits: the oldest prefetch block, within its share.
      if (i < 0 && this.prefetchHeld < this.prefetchMax) i = 0;
      if (i < 0) return;
      const [w] = this.waiting.splice(i, 1);
      const asPrefetch = !w!.forReader();
      this.free--;
      if (asPrefetch) this.prefetchHeld++;
      w!.grant(asPrefetch);
    }
  }

  private releaser(asPrefetch: boolean): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.free++;
      if (asPrefetch) this.prefetchHeld--;
      this.dispatch();
    };
  }
}
