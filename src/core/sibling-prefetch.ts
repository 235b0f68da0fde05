/**
 * Sibling prefetch: a cold read of a committed file (its object not in the read cache)
 * starts background downloads of the other committed files of the same folder, so a
 * job resuming a checkpoint finds the next shards on local disk.
 *
 * Owns: the folders prefetched in this run, the queue of objects to prefetch, and the
 * prefetch downloads running.
 *
 * Invariants:
 * - Once per folder per run (by folder id: a committed folder's files never change,
 *   and a folder removed and made again has a new id). The files of the folder only,
 *   not of its sub-folders: a reader of one shard wants its siblings; a whole tree is
 *   `roset prefetch`'s job.
 * - Skipped: the file read, files not committed, files staged on this node (they are
 *   read from their staged copy), empty files, and objects cached or downloading.
 * - Every download goes through `ObjectCache.prefetch`: verified like any read, under
 *   the cache's block budget where readers' blocks go first, and started only if the
 *   object fits under `--cache-size` beside everything cached or downloading, so a
 *   prefetch never evicts anything (and staged bytes are never in the cache's LRU).
 *   One object at a time (`CONCURRENCY`), so a prefetch adds at most one download's
 *   connections beside the readers'.
 * - A failure is logged (warn) and goes no further: the file is fetched when read. The
 *   cache never keeps a partial object (ObjectCache's invariant).
 * - After `stop` nothing starts; `stop` resolves once the downloads running ended.
 */
import type { NodeRecord } from '../meta/types.js';
import { prefetchBytesTotal, prefetchObjectsTotal } from '../metrics/index.js';
import type { CoreContext } from './context.js';
import type { ObjectCache } from './object-cache.js';

/** Objects prefetched at once. */
const CONCURRENCY = 1;

interface Job {
  sha256: string;
  size: number;
  commitId: string | null;
}

type State = { kind: 'running' } | { kind: 'stopped' };

export class SiblingPrefetch {
  private readonly folders = new Set<string>();
  private readonly queue: Job[] = [];
  /** Objects queued or downloading here, so two folders sharing an object queue it once. */
  private readonly queued = new Set<string>();
  private readonly running = new Set<Promise<void>>();
  private scans = 0;
  private state: State = { kind: 'running' };
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly ctx: CoreContext, private readonly objects: ObjectCache) {}

  /** A committed file `n` was opened cold. Returns at once; never throws. */
  coldRead(n: NodeRecord): void {
    if (this.state.kind !== 'running' || !n.parentId || this.folders.has(n.parentId)) return;
    this.folders.add(n.parentId);
    this.scans++;
    this.scan(n.parentId, n.id)
      .catch((err: unknown) => this.ctx.log.warn({ folderId: n.parentId, err: (err as Error).message }, 'could not list a folder to prefetch its files'))
      .finally(() => {
        this.scans--;
        this.pump();
      });
  }

  private async scan(folderId: string, readId: string): Promise<void> {
    const children = await this.ctx.control.children(folderId);
    if (this.state.kind !== 'running') return;
    for (const c of children) {
      if (c.id === readId || c.type !== 'file' || c.state !== 'committed' || !c.sha256 || c.size === 0) continue;
      if (this.ctx.index.hasStaged(c.id) || this.queued.has(c.sha256)) continue;
      this.queued.add(c.sha256);
      this.queue.push({ sha256: c.sha256, size: c.size, commitId: c.commitId });
    }
  }

  private pump(): void {
    while (this.state.kind === 'running' && this.running.size < CONCURRENCY && this.queue.length > 0) {
      const job = this.queue.shift()!;
      const p: Promise<void> = this.fetch(job).finally(() => {
        this.running.delete(p);
        this.queued.delete(job.sha256);
        this.pump();
      });
      this.running.add(p);
    }
    if (this.idleNow()) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** One object; resolves whatever happens (a failure is logged here). */
  private async fetch(job: Job): Promise<void> {
    try {
      const r = await this.objects.prefetch(job.sha256, job.size, job.commitId);
      switch (r.kind) {
        case 'present':
          return;
        case 'no-room':
          this.ctx.log.debug({ sha256: job.sha256, size: job.size }, 'not prefetched: the object does not fit in --cache-size without evicting');
          return;
        case 'started':
          await r.done;
          prefetchObjectsTotal.inc();
          prefetchBytesTotal.inc(job.size);
          return;
        default: {
          const never: never = r;
          throw new Error(`unknown prefetch outcome ${String(never)}`);
        }
      }
    } catch (err) {
      this.ctx.log.warn({ sha256: job.sha256, err: (err as Error).message }, 'a sibling prefetch failed; the file is fetched when it is read');
    }
  }

  private idleNow(): boolean {
    return this.scans === 0 && this.running.size === 0 && (this.queue.length === 0 || this.state.kind === 'stopped');
  }

  /** Resolves once no folder is being listed and no prefetch is queued or running. */
  idle(): Promise<void> {
    if (this.idleNow()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Starts nothing more and drops the queue; resolves once the downloads running ended. */
  async stop(): Promise<void> {
    this.state = { kind: 'stopped' };
    this.queue.length = 0;
    await Promise.all([...this.running]);
    await this.idle();
  }
}
