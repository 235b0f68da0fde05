/**
 * The commit engine: drives each commit through its phases and completes groups.
 *
 * Owns: the commit state machine after `beginCommit` (sealing → uploading → manifested
 * → completed | failed), manifest and group-record writes to the bucket, and restart
 * recovery of commits that were in flight.
 *
 * Invariants:
 * - A commit becomes `completed` only after its manifest is in the bucket, written
 *   create-only; a group's commits complete in one metadata transaction, after the
 *   group record is written.
 * - Any failure marks the commit `failed` with a code and returns its folder to STAGING
 *   with the staged data untouched; a failure inside a group fails the whole group.
 * - Every phase is persisted, so a restarted daemon resumes or fails each commit; none
 *   is left pending forever.
 */
import type { Logger } from 'pino';
import type { Manifest } from '../api/types.js';
import type { AgentFile, AgentRegistry } from './agents.js';
import { msOf, type CommitRecord, type MetadataStore, type SubtreeNode } from '../meta/types.js';
import { CommitError, StoreError, toRosetError } from '../errors/index.js';
import type { ObjectStore } from '../store/types.js';
import { failpoint } from '../util/failpoints.js';
import { manifestKey, groupKey, objectKey } from './layout.js';

export interface EngineOptions {
  sealTimeoutMs: number;
}

export class CommitEngine {
  private readonly running = new Map<string, Promise<void>>();

  constructor(
    private readonly meta: MetadataStore,
    private readonly store: ObjectStore,
    private readonly agents: AgentRegistry,
    private readonly log: Logger,
    private readonly options: EngineOptions,
  ) {}

  /** Runs a commit in the background; its outcome is recorded on the commit itself. */
  start(commit: CommitRecord, from: 'seal' | 'upload' = 'seal'): void {
    const p = this.run(commit, from).finally(() => this.running.delete(commit.id));
    this.running.set(commit.id, p);
  }

  /** Waits for in-flight commits, up to `timeoutMs`. Returns whether all finished. */
  async drain(timeoutMs: number): Promise<boolean> {
    const all = Promise.allSettled([...this.running.values()]).then(() => true);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => { timer = setTimeout(() => r(false), timeoutMs); });
    try {
      return await Promise.race([all, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  get inFlight(): number {
    return this.running.size;
  }

  private async run(commit: CommitRecord, from: 'seal' | 'upload'): Promise<void> {
    const log = this.log.child({ commitId: commit.id, path: commit.path });
    const agents = this.agents.forMount(commit.mountId);
    try {
      const inside = await this.meta.listSubtree(commit.nodeId);
      const stagedFiles = inside.filter((n) => n.type === 'file' && n.state !== 'committed');
      const owners = new Set(stagedFiles.map((n) => n.ownerAgent));
      for (const owner of owners) {
        if (!owner || !this.agents.get(owner)) {
          throw new CommitError('AGENT_UNAVAILABLE', `Files under ${commit.path} are staged by an agent that is not connected (${owner ?? 'none'})`);
        }
      }
      if (from === 'seal') {
        log.debug('sealing');
        await Promise.all(agents.map((a) => a.seal(commit.id, commit.nodeId, this.options.sealTimeoutMs)));
        await this.meta.setCommitPhase(commit.id, 'uploading');
        await failpoint('commit.after-snapshot', log);
      }
      log.debug('uploading');
      const results = await Promise.all(agents.map((a) => a.upload(commit.id, commit.nodeId)));
      const files: AgentFile[] = [];
      let uploadedBytes = 0;
      let dedupedBytes = 0;
      for (const r of results) {
        files.push(...r.files);
        uploadedBytes += r.uploadedBytes;
        dedupedBytes += r.dedupedBytes;
      }
      // Already-committed files inside the folder were uploaded by their own commit.
      const earlier = committedFilesInside(inside);
      for (const f of earlier) dedupedBytes += f.size;
      files.push(...earlier);
      const seen = new Set<string>();
      for (const f of files) {
        if (seen.has(f.path)) throw new CommitError('CONFLICT', `${f.path} was written by more than one agent`);
        seen.add(f.path);
      }
      files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      const bytes = files.reduce((s, f) => s + f.size, 0);
      const stats = { files: files.length, bytes, uploadedBytes, dedupedBytes };
      const manifest: Manifest = {
        id: commit.id, mountId: commit.mountId, path: commit.path, message: commit.message, groupId: commit.groupId,
        parentCommitId: commit.parentCommitId, createdAt: commit.createdAt, stats,
        files: files.map(({ path, size, mode, mtime, sha256, key }) => ({ path, size, mode, mtime, sha256, key })),
      };
      const written = await this.writeManifest(manifest);
      await failpoint('commit.after-manifest', log);
      await this.meta.markManifested(commit.id, written.stats, files.map((f) => ({ nodeId: f.nodeId, size: f.size, sha256: f.sha256 })));
      if (commit.groupId) {
        log.debug('manifested; waiting for the group seal');
        await this.tryCompleteGroup(commit.groupId);
      } else {
        await this.meta.completeCommits([commit.id], new Date().toISOString());
        await this.releaseAll(commit.id);
        log.info({ files: files.length, bytes, uploadedBytes, dedupedBytes }, 'commit completed');
      }
    } catch (err) {
      const e = toRosetError(err);
      log.error({ code: e.rosetCode, err: e.message }, 'commit failed');
      await this.fail(commit, { code: e.rosetCode, message: e.message });
    }
  }

  /**
   * Writes the manifest create-only. A resumed commit may find the manifest it wrote
   * before a crash: the same commit, the same files and bytes is that manifest, and it
   * stays the truth (its stats included). Anything else under this id is not ours.
   */
  private async writeManifest(manifest: Manifest): Promise<Manifest> {
    try {
      await this.store.putIfAbsent(manifestKey(manifest.id), `${JSON.stringify(manifest, null, 2)}\n`);
      return manifest;
    } catch (err) {
      if (!(err instanceof StoreError && err.rosetCode === 'PRECONDITION_FAILED')) throw err;
      const existing = JSON.parse((await this.store.get(manifestKey(manifest.id))).toString('utf8')) as Manifest;
      const same = (m: Manifest): string => JSON.stringify([m.id, m.path, m.groupId, m.files.map((f) => [f.path, f.size, f.sha256])]);
      if (same(existing) === same(manifest)) return { ...manifest, stats: existing.stats ?? manifest.stats };
      throw new CommitError('STORAGE_ERROR', `A different manifest already exists at ${manifestKey(manifest.id)}`);
    }
  }

  private async fail(commit: CommitRecord, error: { code: string; message: string }): Promise<void> {
    try {
      if (commit.groupId) {
        const members = await this.meta.listGroupCommits(commit.groupId);
        await this.meta.failCommits([commit.id], error);
        const others = members.filter((c) => c.id !== commit.id).map((c) => c.id);
        await this.meta.failCommits(others, { code: 'GROUP_FAILED', message: `Commit ${commit.id} in the group failed: ${error.code}` }, { id: commit.groupId });
        for (const id of [commit.id, ...others]) await this.releaseAll(id);
      } else {
        await this.meta.failCommits([commit.id], error);
        await this.releaseAll(commit.id);
      }
    } catch (err) {
      this.log.error({ commitId: commit.id, err: (err as Error).message }, 'could not record the commit failure');
    }
  }

  private async releaseAll(commitId: string): Promise<void> {
    const c = await this.meta.getCommit(commitId);
    if (!c) return;
    for (const a of this.agents.forMount(c.mountId)) await a.release(commitId, c.phase === 'completed');
  }

  /**
   * Completes a sealed group once every commit in it is manifested, or fails it if any
   * commit failed. Safe to call any number of times from any commit.
   */
  async tryCompleteGroup(groupId: string): Promise<void> {
    const group = await this.meta.getGroup(groupId);
    if (!group || group.status !== 'pending' || !group.sealedAt) return;
    const members = await this.meta.listGroupCommits(groupId);
    const failed = members.find((c) => c.phase === 'failed');
    if (failed) {
      await this.meta.failCommits(members.map((c) => c.id), { code: 'GROUP_FAILED', message: `Commit ${failed.id} in the group failed` }, { id: groupId });
      for (const c of members) await this.releaseAll(c.id);
      return;
    }
    if (!members.every((c) => c.phase === 'manifested')) return;
    const at = new Date().toISOString();
    try {
      const record = { id: group.id, mountId: group.mountId, message: group.message, commitIds: members.map((c) => c.id), createdAt: group.createdAt, sealedAt: group.sealedAt, committedAt: at };
      try {
        await this.store.putIfAbsent(groupKey(group.id), `${JSON.stringify(record, null, 2)}\n`);
      } catch (err) {
        // Recovery may re-run a completion whose record was written before a crash.
        if (!(err instanceof StoreError && err.rosetCode === 'PRECONDITION_FAILED')) throw err;
      }
      await failpoint('group.after-record', this.log);
      await this.meta.completeCommits(members.map((c) => c.id), at, { id: groupId });
      for (const c of members) await this.releaseAll(c.id);
      this.log.info({ groupId, commits: members.length }, 'commit group committed');
    } catch (err) {
      const e = toRosetError(err);
      this.log.error({ groupId, code: e.rosetCode, err: e.message }, 'commit group failed');
      await this.meta.failCommits(members.map((c) => c.id), { code: e.rosetCode, message: e.message }, { id: groupId });
      for (const c of members) await this.releaseAll(c.id);
    }
  }

  /**
   * After a restart: commits still sealing lost their barrier wait with the old
   * process, so they fail with INTERRUPTED; uploads resume from the persisted snapshot;
   * manifested commits complete (or wait for their group).
   */
  async recover(): Promise<void> {
    const inFlight = await this.meta.listCommitsInPhases(['sealing', 'uploading', 'manifested']);
    for (const c of inFlight) {
      switch (c.phase) {
        case 'sealing':
          this.log.warn({ commitId: c.id }, 'commit was sealing when the daemon stopped: failing it');
          await this.fail(c, { code: 'INTERRUPTED', message: 'The daemon restarted while the commit was sealing' });
          break;
        case 'uploading':
          this.log.info({ commitId: c.id }, 'resuming interrupted upload');
          this.start(c, 'upload');
          break;
        case 'manifested':
          if (c.groupId) await this.tryCompleteGroup(c.groupId);
          else {
            await this.meta.completeCommits([c.id], new Date().toISOString());
            await this.releaseAll(c.id);
          }
          break;
        case 'completed':
        case 'failed':
          break;
        default: {
          const never: never = c.phase;
          throw new Error(`unknown phase ${String(never)}`);
        }
      }
    }
  }
}

function committedFilesInside(inside: SubtreeNode[]): AgentFile[] {
  return inside
    .filter((n) => n.type === 'file' && n.state === 'committed' && n.sha256)
    .map((n) => ({
      nodeId: n.id, path: n.relPath, size: n.size, mode: n.mode & 0o7777, mtime: msOf(n.mtime),
      sha256: n.sha256!, key: objectKey(n.sha256!),
    }));
}
