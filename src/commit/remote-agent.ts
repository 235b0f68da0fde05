/**
 * An agent on another node, seen from the process driving a commit: the seal, upload
 * and release it is asked for become tasks in the metadata store, which the agent
 * fetches by polling (`POST /v1/agents/{id}/poll`) on whichever `roset serve` it is
 * connected to, and answers the same way.
 *
 * Invariants:
 * - One task per (commit, kind, agent), with an id made from the three: a driver that
 *   takes over a commit waits on the tasks its predecessor created instead of asking
 *   twice.
 * - An agent not heard from (no poll, no answer) for longer than the agent timeout
 *   fails the task with AGENT_UNAVAILABLE; nothing waits for a dead node forever.
 */
import { CommitError, fromWire } from '../errors/index.js';
import { agentTaskId, type AgentTaskKind, type MetadataStore } from '../meta/types.js';
import { uploadProgressOf, type Agent, type AgentUploadResult, type UploadProgress } from './agents.js';
import type { TaskBus } from './task-bus.js';

export interface RemoteAgentOptions {
  /** How long an agent may stay silent before it counts as gone. */
  agentTimeoutMs: number;
  /** How often a waiter re-reads the store (a task answered through another process). */
  pollMs: number;
}

export class RemoteAgent implements Agent {
  readonly mountpoint = null;

  constructor(readonly id: string, readonly mountId: string, private readonly meta: MetadataStore, private readonly bus: TaskBus,
    private readonly options: RemoteAgentOptions) {}

  async seal(commitId: string, folderId: string, timeoutMs: number): Promise<void> {
    await this.run(commitId, 'seal', { folderId, timeoutMs });
  }

  /** Progress is what the agent last reported on the task (`POST .../tasks/{taskId}/progress`), read as the task is. */
  async upload(commitId: string, folderId: string, onProgress?: (p: UploadProgress) => void): Promise<AgentUploadResult> {
    let last = '';
    return (await this.run(commitId, 'upload', { folderId }, (reported) => {
      const p = uploadProgressOf(reported);
      const key = JSON.stringify(p);
      if (p && key !== last) { last = key; onProgress?.(p); }
    })) as AgentUploadResult;
  }

  /** Queued, not awaited: the commit's outcome is recorded already; the agent tidies up when it next polls. */
  async release(commitId: string, completed: boolean): Promise<void> {
    await this.add(commitId, 'release', { completed });
  }

  private async add(commitId: string, kind: AgentTaskKind, args: Record<string, unknown>): Promise<string> {
    const t = await this.meta.addAgentTask({
      id: agentTaskId(commitId, kind, this.id), agentId: this.id, commitId, kind, args, status: 'pending', result: null, error: null,
      createdAt: new Date().toISOString(), finishedAt: null,
    });
    this.bus.taskAdded(this.id);
    return t.id;
  }

  private async run(commitId: string, kind: AgentTaskKind, args: Record<string, unknown>, onProgress?: (reported: unknown) => void): Promise<unknown> {
    const id = await this.add(commitId, kind, args);
    for (;;) {
      const t = await this.meta.getAgentTask(id);
      if (!t) throw new CommitError('INTERNAL', `The ${kind} task of agent ${this.id} disappeared`);
      if (t.progress !== null && t.progress !== undefined) onProgress?.(t.progress);
      switch (t.status) {
        case 'done': return t.result;
        case 'failed': throw fromWire(t.error ?? { code: 'INTERNAL', message: 'no error recorded' });
        case 'pending': break;
        default: { const never: never = t.status; throw new Error(`unknown task status ${String(never)}`); }
      }
      await this.assertAlive();
      await this.bus.waitForTask(id, this.options.pollMs);
    }
  }

  private async assertAlive(): Promise<void> {
    const a = await this.meta.getAgent(this.id);
    const silentMs = a ? Date.now() - Date.parse(a.lastSeenAt) : Infinity;
    if (silentMs > this.options.agentTimeoutMs) {
      const where = a ? ` on ${a.hostname}${a.mountpoint ? ` (${a.mountpoint})` : ''}` : '';
      throw new CommitError('AGENT_UNAVAILABLE', `Agent ${this.id}${where} holds files of this folder and has not been heard from for ${Number.isFinite(silentMs) ? `${Math.round(silentMs / 1000)} s` : 'ever'}`,
        { agentId: this.id });
    }
  }
}
