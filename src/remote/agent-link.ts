/**
 * An agent's connection to a remote control plane: it registers, then long-polls for
 * its tasks (each poll is also its heartbeat), runs them on the node's staging agent
 * and answers. The agent opens every connection: no inbound port on the node.
 *
 * Owns: the poll loop, the order of a commit's tasks on this node, and delivering
 * each answer until the control plane has it.
 *
 * Invariants:
 * - The tasks of one commit run one after another, in the order given (seal, upload,
 *   release), so a release never overtakes a seal still waiting for writers.
 * - A task is run at most once per process, however often a poll returns it before
 *   its answer lands; after a restart a task still pending is run again, which the
 *   staging agent makes safe (a seal re-reads the folder, an upload resumes from the
 *   persisted snapshot, a release is idempotent).
 * - Losing the control plane loses nothing: staged bytes stay, polls and answers are
 *   retried with backoff until it is back.
 * - `onRegistered` runs as each registration is answered, before the next poll: gc may
 *   have deregistered this agent and dropped its pins while it was not heard from
 *   (src/commit/gc.ts, pin expiry), so its uploads must be checked again.
 */
import type { Logger } from 'pino';
import type { Agent, UploadProgress } from '../commit/agents.js';
import type { AgentStoreConfig, Registration } from '../control/agent-hub.js';
import { codeOf, toRosetError, toWire } from '../errors/index.js';
import type { AgentTaskRecord } from '../meta/types.js';
import { delayPoint } from '../util/failpoints.js';
import { sleep } from '../util/sleep.js';
import { LatestThrottle } from '../util/throttle.js';
import type { ControlLink } from './http.js';

export type { AgentStoreConfig, Registration };

/** How often a running upload reports its progress, at most. */
const PROGRESS_INTERVAL_MS = 500;

/**
 * How the poll keeps the mount's auto-commit rules fresh: each poll names the version
 * held, and an answer naming another one is followed by `refresh`, awaited before the
 * next poll (which would otherwise answer at once, again and again, until it lands).
 */
export interface AutoCommitSync {
  version(): number;
  refresh(version: number): Promise<void>;
}

export interface AgentIdentity {
  agentId: string;
  mountpoint: string;
  hostname: string;
}

export class AgentLink {
  private readonly stopped = new AbortController();
  private readonly active = new Set<string>();
  private readonly chains = new Map<string, Promise<void>>();
  private loop: Promise<void> | null = null;
  private agent: Agent | null = null;
  private pollWaitMs = 10_000;
  /** Called after every registration (the daemon: the uploader distrusts its records). */
  onRegistered: (() => void) | null = null;
  private autoCommit: AutoCommitSync | null = null;

  constructor(private readonly link: ControlLink, private readonly identity: AgentIdentity, private readonly log: Logger) {}

  /** Registers this node's agent (again, after the control plane forgot it). */
  async register(): Promise<Registration> {
    const r = await this.link.call<Registration>('POST', '/v1/agents', {
      agentId: this.identity.agentId, mountpoint: this.identity.mountpoint, hostname: this.identity.hostname,
    }, { idempotent: true });
    this.link.mountId = r.mountId;
    this.pollWaitMs = r.pollWaitMs;
    this.onRegistered?.();
    return r;
  }

  /** Starts answering tasks with `agent`, and keeping `autoCommit` (if given) at the mount's version. */
  start(agent: Agent, autoCommit?: AutoCommitSync): void {
    this.agent = agent;
    this.autoCommit = autoCommit ?? null;
    this.loop ??= this.pollLoop();
  }

  /** Stops polling; tasks already running finish (the caller drains them). */
  async stop(): Promise<void> {
    this.stopped.abort();
    await this.loop;
    await Promise.allSettled([...this.chains.values()]);
  }

  private async pollLoop(): Promise<void> {
    const signal = this.stopped.signal;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const sync = this.autoCommit;
        const { tasks, autoCommitVersion } = await this.link.call<{ tasks: AgentTaskRecord[]; autoCommitVersion?: number }>('POST', `/v1/agents/${encodeURIComponent(this.identity.agentId)}/poll`,
          { waitMs: this.pollWaitMs, running: [...this.active], ...(sync ? { autoCommitVersion: sync.version() } : {}) },
          { idempotent: true, signal, timeoutMs: this.pollWaitMs + 30_000, retryForMs: 0 });
        if (failures > 0) this.log.info({ failures }, 'connected to the control plane again');
        failures = 0;
        for (const t of tasks) this.accept(t);
        if (sync && autoCommitVersion !== undefined && autoCommitVersion !== sync.version()) await sync.refresh(autoCommitVersion);
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        if (codeOf(err) === 'AGENT_NOT_FOUND') {
          this.log.warn('the control plane does not know this agent: registering again');
          await this.register().catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not register again'));
        } else if (failures === 1 || failures % 30 === 0) {
          this.log.warn({ err: (err as Error).message, failures }, 'cannot poll the control plane; retrying');
        }
        await sleep(Math.min(2000, 100 * 2 ** Math.min(failures, 5)));
      }
    }
  }

  private accept(t: AgentTaskRecord): void {
    if (this.active.has(t.id)) return;
    this.active.add(t.id);
    const prev = this.chains.get(t.commitId) ?? Promise.resolve();
    const next = prev.then(() => this.runTask(t)).finally(() => {
      this.active.delete(t.id);
      if (this.chains.get(t.commitId) === next) this.chains.delete(t.commitId);
    });
    this.chains.set(t.commitId, next);
  }

  private async runTask(t: AgentTaskRecord): Promise<void> {
    const agent = this.agent!;
    const log = this.log.child({ commitId: t.commitId, task: t.kind });
    let answer: Record<string, unknown>;
    try {
      const a = t.args;
      let result: unknown = null;
      switch (t.kind) {
        case 'seal': await delayPoint('agent.before-seal', log); await agent.seal(t.commitId, String(a.folderId), Number(a.timeoutMs)); break;
        case 'upload': {
          const report = this.progressReporter(t, log);
          try {
            result = await agent.upload(t.commitId, String(a.folderId), (p) => report.push(p));
          } finally {
            report.stop();
          }
          break;
        }
        case 'release': await agent.release(t.commitId, a.completed === true); break;
        default: { const never: never = t.kind; throw new Error(`unknown task kind ${String(never)}`); }
      }
      log.debug('task done');
      answer = { status: 'done', result };
    } catch (err) {
      const e = toRosetError(err);
      log.warn({ code: e.rosetCode, err: e.message }, 'task failed');
      answer = { status: 'failed', error: toWire(e) };
    }
    await this.deliver(t, answer, log);
  }

  /**
   * Reports an upload's progress on its task, at most every PROGRESS_INTERVAL_MS; a
   * report that does not land is dropped (the next one carries everything).
   */
  private progressReporter(t: AgentTaskRecord, log: Logger): LatestThrottle<UploadProgress> {
    const path = `/v1/agents/${encodeURIComponent(this.identity.agentId)}/tasks/${encodeURIComponent(t.id)}/progress`;
    return new LatestThrottle<UploadProgress>(async (p) => {
      await this.link.call('POST', path, p, { idempotent: true, retryForMs: 0 });
    }, PROGRESS_INTERVAL_MS, (err) => log.debug({ err: (err as Error).message }, 'could not report progress'));
  }

  /** Sends an answer until the control plane has it (or the task is gone there). */
  private async deliver(t: AgentTaskRecord, answer: Record<string, unknown>, log: Logger): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.link.call('POST', `/v1/agents/${encodeURIComponent(this.identity.agentId)}/tasks/${encodeURIComponent(t.id)}`, answer, { idempotent: true });
        return;
      } catch (err) {
        const code = codeOf(err);
        if (code === 'TASK_NOT_FOUND') return; // its commit ended and the rows were dropped
        if (code === 'AGENT_NOT_FOUND') await this.register().catch(() => undefined);
        if (this.stopped.signal.aborted && attempt > 3) {
          log.warn({ err: (err as Error).message }, 'stopping before the control plane took a task answer; it asks again after restart');
          return;
        }
        if (attempt === 1 || attempt % 30 === 0) log.warn({ err: (err as Error).message, attempt }, 'could not deliver a task answer; retrying');
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
      }
    }
  }
}
