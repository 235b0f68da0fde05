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
 * - Exactly one process drives a commit: it holds the commit's lease in the metadata
 *   store (`acquireCommitLease`), renews it while it works, and checks it before every
 *   step it persists. A process that loses the lease (it stalled past the lease, and
 *   another took over) stops without recording anything. A lease that runs out (its
 *   holder died) is taken by the next process that looks (`recover`, and `watch` in
 *   `roset serve`).
 * - The participants of a commit are the agents that stage files inside its folder
 *   (read once, after the barrier rose, so no other agent can join), plus the agents
 *   running in this process. An owner that is not registered, or goes silent for
 *   longer than the agent timeout, fails the commit with AGENT_UNAVAILABLE.
 * - A pending commit's progress (phase, the agents' snapshot totals, files and bytes
 *   done) is in the metadata store, so any process answers it; it is written at most
 *   every PROGRESS_INTERVAL_MS, whatever the number of files.
 */
import type { Logger } from 'pino';
import type { CommitProgress, Manifest } from '../api/types.js';
import type { Agent, AgentFile, AgentRegistry, UploadProgress } from './agents.js';
import { RemoteAgent } from './remote-agent.js';
import type { TaskBus } from './task-bus.js';
import { msOf, type CommitRecord, type MetadataStore, type SubtreeNode } from '../meta/types.js';
import { CommitError, StoreError, toRosetError } from '../errors/index.js';
import type { ObjectStore } from '../store/types.js';
import { commitFinished, commitPhaseSeconds } from '../metrics/index.js';
import { failpoint } from '../util/failpoints.js';
import { LatestThrottle } from '../util/throttle.js';
import { manifestKey, groupKey, objectKey } from './layout.js';

export interface EngineOptions {
  sealTimeoutMs: number;
  /**
   * Who drives commits here, in the commit leases. Stable across restarts of the same
   * process (the agent id of an embedded daemon, the server id of `roset serve`), so a
   * restarted process takes its own commits back at once instead of waiting for its
   * old leases to run out.
   */
  holder: string;
  /** How long a lease lasts without renewal. Default 15 s. */
  leaseMs?: number;
  /** How long an agent on another node may stay silent. Default 30 s. */
  agentTimeoutMs?: number;
  /**
   * What becomes of a commit found `sealing` by `recover`: `fail` (INTERRUPTED: the
   * embedded daemon's seal waited on handles of its own process, which are gone) or
   * `resume` (`roset serve`: the agents that wait for their writers are alive, so the
   * seal is asked again).
   */
  onSealing?: 'fail' | 'resume';
}

/** How often a commit's progress is written to the metadata store, at most. */
const PROGRESS_INTERVAL_MS = 500;

/** Thrown inside a run whose lease passed to another process: it stops without a trace. */
class LeaseLost extends Error {}

export class CommitEngine {
  private readonly running = new Map<string, Promise<void>>();
  private readonly leaseMs: number;
  private readonly agentTimeoutMs: number;
  private watcher: NodeJS.Timeout | null = null;

  constructor(
    private readonly meta: MetadataStore,
    private readonly store: ObjectStore,
    private readonly agents: AgentRegistry,
    private readonly bus: TaskBus,
    private readonly log: Logger,
    private readonly options: EngineOptions,
  ) {
    this.leaseMs = options.leaseMs ?? 15_000;
    this.agentTimeoutMs = options.agentTimeoutMs ?? 30_000;
  }

  /** Runs a commit in the background; its outcome is recorded on the commit itself. */
  start(commit: CommitRecord, from: 'seal' | 'upload' | 'complete' = 'seal'): void {
    if (this.running.has(commit.id)) return;
    const p = this.drive(commit, from).finally(() => this.running.delete(commit.id));
    this.running.set(commit.id, p);
  }

  /** Takes or renews this process's lease on a commit. */
  private async lease(commitId: string): Promise<boolean> {
    const now = Date.now();
    return this.meta.acquireCommitLease(commitId, this.options.holder, new Date(now + this.leaseMs).toISOString(), new Date(now).toISOString());
  }

  private async drive(commit: CommitRecord, from: 'seal' | 'upload' | 'complete'): Promise<void> {
    const log = this.log.child({ commitId: commit.id, path: commit.path });
    try {
      if (!(await this.lease(commit.id))) {
        log.debug('another process drives this commit');
        return;
      }
      if (from !== 'seal' || commit.phase !== 'sealing') log.info({ from }, 'resuming the commit');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'could not take the commit lease; the commit is retried later');
      return;
    }
    let lost = false;
    let renewing: Promise<void> = Promise.resolve();
    const renew = setInterval(() => {
      renewing = this.lease(commit.id).then((held) => {
        if (!held) lost = true;
      }, (err: unknown) => {
        // The database is away: keep working; the next renewal decides.
        log.warn({ err: (err as Error).message }, 'could not renew the commit lease');
      });
    }, Math.max(50, Math.floor(this.leaseMs / 3)));
    const held = async (): Promise<void> => {
      await renewing;
      if (lost || !(await this.lease(commit.id))) {
        lost = true;
        throw new LeaseLost(`commit ${commit.id} is driven by another process now`);
      }
    };
    try {
      if (from === 'complete') await this.complete(commit, held, log);
      else await this.run(commit, from, held, log);
    } finally {
      clearInterval(renew);
    }
  }

  /**
   * The agents that take part in a commit: every agent staging a file inside the folder
   * (read after the barrier rose, so the set is final), and those of this process.
   */
  private async participants(mountId: string, stagedOwners: Iterable<string | null>, path: string): Promise<Agent[]> {
    const out = new Map<string, Agent>();
    for (const a of this.agents.forMount(mountId)) out.set(a.id, a);
    for (const owner of new Set(stagedOwners)) {
      if (!owner) throw new CommitError('AGENT_UNAVAILABLE', `Files under ${path} are staged by no agent`);
      if (out.has(owner)) continue;
      const rec = await this.meta.getAgent(owner);
      if (!rec || rec.mountId !== mountId) {
        throw new CommitError('AGENT_UNAVAILABLE', `Files under ${path} are staged by an agent that is not connected (${owner})`, { agentId: owner });
      }
      out.set(owner, this.remote(owner, mountId));
    }
    return [...out.values()];
  }

  private remote(id: string, mountId: string): RemoteAgent {
    return new RemoteAgent(id, mountId, this.meta, this.bus, { agentTimeoutMs: this.agentTimeoutMs, pollMs: 200 });
  }

  /** Every process's `roset serve` calls this: it picks up commits whose driver died. */
  watch(intervalMs: number): void {
    if (this.watcher) return;
    let busy = false;
    this.watcher = setInterval(() => {
      if (busy) return;
      busy = true;
      this.recover().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'could not look for commits to take over'))
        .finally(() => { busy = false; });
    }, intervalMs);
  }

  stopWatching(): void {
    if (this.watcher) clearInterval(this.watcher);
    this.watcher = null;
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

  /** The commit's progress in the metadata store, written at most every PROGRESS_INTERVAL_MS. */
  private progressOf(commitId: string, log: Logger): LatestThrottle<CommitProgress> {
    return new LatestThrottle<CommitProgress>((p) => this.meta.setCommitProgress(commitId, p), PROGRESS_INTERVAL_MS,
      (err) => log.debug({ err: (err as Error).message }, 'could not record the commit progress'));
  }

  private async run(commit: CommitRecord, from: 'seal' | 'upload', held: () => Promise<void>, log: Logger): Promise<void> {
    let progress: LatestThrottle<CommitProgress> | null = null;
    try {
      const inside = await this.meta.listSubtree(commit.nodeId);
      const stagedFiles = inside.filter((n) => n.type === 'file' && n.state !== 'committed');
      const agents = await this.participants(commit.mountId, stagedFiles.map((n) => n.ownerAgent), commit.path);
      progress = this.progressOf(commit.id, log);
      if (from === 'seal') {
        progress.push({ phase: 'sealing', filesTotal: 0, filesDone: 0, bytesTotal: 0, bytesUploaded: 0 });
        log.debug({ agents: agents.map((a) => a.id) }, 'sealing');
        const sealTimer = commitPhaseSeconds.startTimer({ phase: 'seal' });
        await Promise.all(agents.map((a) => a.seal(commit.id, commit.nodeId, this.options.sealTimeoutMs)));
        sealTimer();
        await held();
        await this.meta.setCommitPhase(commit.id, 'uploading');
        await failpoint('commit.after-snapshot', log);
      }
      log.debug('uploading');
      const uploadTimer = commitPhaseSeconds.startTimer({ phase: 'upload' });
      // Each agent reports its own snapshot; the commit's progress is their sum.
      const reported = new Map<string, UploadProgress>();
      const tracker = progress;
      const report = (agentId: string, p: UploadProgress): void => {
        reported.set(agentId, p);
        const sum: CommitProgress = { phase: 'uploading', filesTotal: 0, filesDone: 0, bytesTotal: 0, bytesUploaded: 0 };
        for (const r of reported.values()) {
          sum.filesTotal += r.filesTotal; sum.filesDone += r.filesDone; sum.bytesTotal += r.bytesTotal; sum.bytesUploaded += r.bytesUploaded;
        }
        tracker.push(sum);
      };
      const uploading = Promise.all(agents.map((a) => a.upload(commit.id, commit.nodeId, (p) => report(a.id, p))));
      uploading.catch(() => undefined); // awaited below; a failpoint may pause first
      await failpoint('commit.while-uploading', log);
      const results = await uploading;
      uploadTimer();
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
      const staged = results.reduce((n, r) => n + r.files.length, 0);
      const stagedBytes = results.reduce((n, r) => n + r.files.reduce((b, f) => b + f.size, 0), 0);
      progress.push({ phase: 'manifest', filesTotal: staged, filesDone: staged, bytesTotal: stagedBytes, bytesUploaded: stagedBytes });
      await progress.flush();
      const manifest: Manifest = {
        id: commit.id, mountId: commit.mountId, path: commit.path, message: commit.message, groupId: commit.groupId,
        parentCommitId: commit.parentCommitId, createdAt: commit.createdAt, stats,
        files: files.map(({ path, size, mode, mtime, sha256, key, blocks }) => ({ path, size, mode, mtime, sha256, key, ...(blocks ? { blocks } : {}) })),
      };
      await held();
      const manifestTimer = commitPhaseSeconds.startTimer({ phase: 'manifest' });
      const written = await this.writeManifest(manifest);
      await failpoint('commit.after-manifest', log);
      await held();
      await this.meta.markManifested(commit.id, written.stats, files.map((f) => ({ nodeId: f.nodeId, size: f.size, sha256: f.sha256 })));
      manifestTimer();
      log.info({ files: files.length, bytes, uploadedBytes, dedupedBytes, agents: agents.length }, 'commit manifested');
      await this.complete(commit, held, log);
    } catch (err) {
      if (err instanceof LeaseLost) {
        log.warn('the commit lease passed to another process: leaving the commit to it');
        return;
      }
      const e = toRosetError(err);
      log.error({ code: e.rosetCode, err: e.message }, 'commit failed');
      if (await held().then(() => true, () => false)) await this.fail(commit, { code: e.rosetCode, message: e.message });
    } finally {
      progress?.stop();
    }
  }

  /** A manifested commit completes (or waits for its group's seal). */
  private async complete(commit: CommitRecord, held: () => Promise<void>, log: Logger): Promise<void> {
    if (commit.groupId) {
      log.debug('manifested; waiting for the group seal');
      await this.tryCompleteGroup(commit.groupId);
      return;
    }
    await held();
    await this.meta.completeCommits([commit.id], new Date().toISOString());
    commitFinished('completed');
    await this.releaseAll(commit.id);
    log.info('commit completed');
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
        commitFinished('failed', error.code);
        const others = members.filter((c) => c.id !== commit.id).map((c) => c.id);
        await this.meta.failCommits(others, { code: 'GROUP_FAILED', message: `Commit ${commit.id} in the group failed: ${error.code}` }, { id: commit.groupId });
        commitFinished('failed', 'GROUP_FAILED', others.length);
        for (const id of [commit.id, ...others]) await this.releaseAll(id);
      } else {
        await this.meta.failCommits([commit.id], error);
        commitFinished('failed', error.code);
        await this.releaseAll(commit.id);
      }
    } catch (err) {
      this.log.error({ commitId: commit.id, err: (err as Error).message }, 'could not record the commit failure');
    }
  }

  /** Tells every participant the outcome: the agents of this process, and every agent given a task for the commit. */
  private async releaseAll(commitId: string): Promise<void> {
    const c = await this.meta.getCommit(commitId);
    if (!c) return;
    const local = this.agents.forMount(c.mountId);
    for (const a of local) await a.release(commitId, c.phase === 'completed');
    for (const id of await this.meta.commitTaskAgents(commitId)) {
      if (!local.some((a) => a.id === id)) await this.remote(id, c.mountId).release(commitId, c.phase === 'completed');
    }
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
      commitFinished('failed', 'GROUP_FAILED', members.filter((c) => c.phase !== 'failed').length);
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
      commitFinished('completed', undefined, members.length);
      for (const c of members) await this.releaseAll(c.id);
      this.log.info({ groupId, commits: members.length }, 'commit group committed');
    } catch (err) {
      const e = toRosetError(err);
      this.log.error({ groupId, code: e.rosetCode, err: e.message }, 'commit group failed');
      await this.meta.failCommits(members.map((c) => c.id), { code: e.rosetCode, message: e.message }, { id: groupId });
      commitFinished('failed', e.rosetCode, members.length);
      for (const c of members) await this.releaseAll(c.id);
    }
  }

  /**
   * Takes over the commits in flight that no live process drives (after a restart, or
   * when another `roset serve` died): each one whose lease this process gets. Commits
   * still sealing either fail with INTERRUPTED (embedded: the barrier wait died with the
   * old process) or are sealed again (`onSealing: 'resume'`); uploads resume from the
   * agents' persisted snapshots; manifested commits complete (or wait for their group).
   */
  async recover(): Promise<void> {
    const inFlight = await this.meta.listCommitsInPhases(['sealing', 'uploading', 'manifested']);
    for (const c of inFlight) {
      if (this.running.has(c.id)) continue;
      switch (c.phase) {
        case 'sealing':
          if (this.options.onSealing === 'resume') {
            this.start(c, 'seal');
            break;
          }
          if (!(await this.lease(c.id))) break;
          this.log.warn({ commitId: c.id }, 'commit was sealing when the daemon stopped: failing it');
          await this.fail(c, { code: 'INTERRUPTED', message: 'The daemon restarted while the commit was sealing' });
          break;
        case 'uploading':
          this.start(c, 'upload');
          break;
        case 'manifested':
          if (c.groupId) await this.tryCompleteGroup(c.groupId);
          else this.start(c, 'complete');
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
