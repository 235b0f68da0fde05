/**
 * The staging agent: this node's answer when the control plane seals a folder.
 *
 * Owns: waiting out open writers at seal, the snapshot of closed files, and uploading
 * their bytes as content-addressed objects.
 *
 * Invariants:
 * - The snapshot is taken only when no writable handle is open under the folder, and
 *   it is persisted before any upload starts, so a restart resumes the same snapshot.
 * - An object is uploaded create-only; one that already exists (same sha256) is not
 *   uploaded again, which is what makes unchanged files free. Files usually reach the
 *   store in the background when they close (uploader.ts); the commit reuses that.
 * - Upload progress reaches the snapshot rows in batches (one transaction per
 *   MARK_BATCH files, and whatever is done when the upload ends or fails); a mark
 *   lost to a crash only makes the resumed upload ask the uploader again, which
 *   answers from its record.
 */
import * as fs from 'node:fs/promises';
import type { Agent, AgentFile, AgentUploadResult, UploadProgress } from '../commit/agents.js';
import { objectKey } from '../commit/layout.js';
import { CacheError, CommitError } from '../errors/index.js';
import { hashFileBlocks } from '../util/block-hash.js';
import { failpoint } from '../util/failpoints.js';
import { stagingPath, type CoreContext } from './context.js';
import type { SnapshotFile, SnapshotMark } from './staging-index.js';
import type { ObjectCache } from './object-cache.js';
import { SMALL_FILE_BYTES, type Uploader, type UploadOutcome } from './uploader.js';

const UPLOAD_CONCURRENCY = 4;
/** Small files (SMALL_FILE_BYTES) uploading at once during a commit: one request each. */
const SMALL_UPLOAD_CONCURRENCY = 16;
/** Snapshot files marked done in one index transaction at most. */
const MARK_BATCH = 256;

export class StagingAgent implements Agent {
  readonly id: string;
  readonly mountId: string;

  constructor(private readonly ctx: CoreContext, readonly mountpoint: string | null, private readonly uploader: Uploader,
    private readonly objects: ObjectCache) {
    this.id = ctx.agentId;
    this.mountId = ctx.mountId;
  }

  async seal(commitId: string, folderId: string, timeoutMs: number): Promise<void> {
    // The barrier is up: nothing can be created, moved or removed inside the folder,
    // so its members, read once, are the set of nodes whose writers must finish.
    const inside = await this.ctx.control.subtree(folderId);
    const ids = new Set([folderId, ...inside.map((n) => n.id)]);
    const closed = await this.ctx.handles.waitForWriters(ids, timeoutMs);
    if (!closed) {
      const rel = new Map(inside.map((n) => [n.id, n.relPath]));
      const open = this.ctx.handles.writersIn(ids).map((h) => (h.nodeId ? rel.get(h.nodeId) ?? h.nodeId : '(being created)'));
      throw new CommitError('OPEN_HANDLES', `${open.length} file(s) still open for writing after ${Math.round(timeoutMs / 1000)} s: ${open.slice(0, 5).join(', ')}`,
        { paths: open });
    }
    // Still the folder's members: the barrier kept them, and their attributes, as read.
    const nodes = inside.filter((n) => n.type === 'file' && n.state !== 'committed' && n.ownerAgent === this.id);
    // Kernel-held dirty pages and times first (native binding's writeback cache); the
    // times it writes back meanwhile are accepted for these nodes (RosetFilesystem.setattr).
    if (this.ctx.flushKernelCache) {
      const flushing = (this.ctx.flushing ??= new Set());
      const ids = nodes.map((n) => n.id);
      for (const id of ids) flushing.add(id);
      try {
        await this.ctx.flushKernelCache(ids);
      } finally {
        for (const id of ids) flushing.delete(id);
      }
    }
    const files: SnapshotFile[] = [];
    for (const n of nodes) {
      let st;
      try {
        st = await fs.stat(stagingPath(this.ctx, n.id));
      } catch {
        throw new CacheError('STAGED_DATA_LOST', `The staged bytes of ${n.relPath} are missing from this node's cache`);
      }
      files.push({ commitId, nodeId: n.id, relPath: n.relPath, size: st.size, mode: n.mode & 0o7777, mtimeMs: Math.floor(st.mtimeMs), sha256: null, state: 'pending' });
    }
    this.ctx.index.saveSnapshot(files);
  }

  async upload(commitId: string, _folderId: string, onProgress?: (p: UploadProgress) => void): Promise<AgentUploadResult> {
    const files = this.ctx.index.snapshot(commitId);
    const queue = files.filter((f) => f.state === 'pending');
    // A resumed upload counts the files its first run finished.
    const p: UploadProgress = { filesTotal: files.length, filesDone: 0, bytesTotal: 0, bytesUploaded: 0 };
    for (const f of files) {
      p.bytesTotal += f.size;
      if (f.state !== 'pending') { p.filesDone++; p.bytesUploaded += f.size; }
    }
    onProgress?.({ ...p });
    const marks: SnapshotMark[] = [];
    const flush = (): void => {
      if (marks.length) this.ctx.index.markSnapshotFiles(marks.splice(0));
    };
    const worker = (files: SnapshotFile[]) => async (): Promise<void> => {
      for (let f = files.shift(); f; f = files.shift()) {
        const out = await this.uploadOne(f);
        marks.push({ commitId: f.commitId, nodeId: f.nodeId, sha256: out.sha256, state: out.how });
        if (marks.length >= MARK_BATCH) flush();
        if (out.how === 'uploaded') await failpoint('upload.after-first-object', this.ctx.log);
        p.filesDone++;
        p.bytesUploaded += f.size;
        onProgress?.({ ...p });
      }
    };
    // Small files are one request each, mostly latency: more of them in flight.
    const small = queue.filter((f) => f.size <= SMALL_FILE_BYTES);
    const large = queue.filter((f) => f.size > SMALL_FILE_BYTES);
    try {
      await Promise.all([
        ...Array.from({ length: Math.min(UPLOAD_CONCURRENCY, large.length) }, worker(large)),
        ...Array.from({ length: Math.min(SMALL_UPLOAD_CONCURRENCY, small.length) }, worker(small)),
      ]);
    } finally {
      // What finished is kept even when another file failed: a retry resumes after it.
      flush();
    }
    const done = this.ctx.index.snapshot(commitId);
    const out: AgentFile[] = done.map((f) => {
      const blocks = this.ctx.index.objectBlocks(f.sha256!, f.size);
      return {
        nodeId: f.nodeId, path: f.relPath, size: f.size, mode: f.mode, mtime: f.mtimeMs, sha256: f.sha256!, key: objectKey(f.sha256!),
        ...(blocks ? { blocks } : {}),
      };
    });
    return {
      files: out,
      uploadedBytes: done.filter((f) => f.state === 'uploaded').reduce((s, f) => s + f.size, 0),
      dedupedBytes: done.filter((f) => f.state === 'deduped').reduce((s, f) => s + f.size, 0),
    };
  }

  private async uploadOne(f: SnapshotFile): Promise<UploadOutcome> {
    // Most files were uploaded in the background when they closed; this reuses that.
    const out = await this.uploader.ensure(f.nodeId);
    if (out.size !== f.size || out.mtimeMs !== f.mtimeMs) {
      throw new CacheError('INTERNAL', `The staged bytes of ${f.relPath} changed after the seal`);
    }
    if (!this.ctx.index.objectBlocks(out.sha256, out.size)) {
      // Uploaded before block hashes were kept (or they were dropped with an earlier
      // commit of the same bytes): one read pass now, so the manifest lets readers
      // verify it block by block.
      this.ctx.index.setObjectBlocks(out.sha256, await hashFileBlocks(stagingPath(this.ctx, f.nodeId)));
    }
    return out;
  }

  async release(commitId: string, completed: boolean): Promise<void> {
    if (completed) {
      // The bytes are committed and in the store: the staged copies become read cache
      // (a hard link each), which --cache-size may evict like any fetched object.
      for (const f of this.ctx.index.snapshot(commitId)) {
        if (!f.sha256) continue;
        try {
          await this.objects.adopt(stagingPath(this.ctx, f.nodeId), f.sha256, f.size);
          await fs.rm(stagingPath(this.ctx, f.nodeId), { force: true });
          this.ctx.index.removeStaged(f.nodeId);
          this.uploader.forget(f.nodeId);
          // The manifest holds them now.
          this.ctx.index.dropObjectBlocks(f.sha256);
        } catch (err) {
          // The staged copy stays and keeps serving reads; nothing is lost.
          this.ctx.log.warn({ nodeId: f.nodeId, err: (err as Error).message }, 'could not move a committed file into the read cache');
        }
      }
    }
    this.ctx.index.dropSnapshot(commitId);
  }
}
