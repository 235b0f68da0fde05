/**
 * The control plane's side of agents on other nodes: registration, the long poll that
 * delivers their tasks and counts as their heartbeat, their answers, and the
 * namespace calls their filesystems make (`rpc`).
 *
 * Why long polling: an agent opens every connection itself, so a GPU node behind NAT
 * or a firewall with no inbound port works, over plain HTTP(S) through any proxy, with
 * no extra protocol or dependency. Each poll is an independent request, so a restart
 * of `roset serve`, or a second one on the same database, is just where the next poll
 * lands: the tasks are in the metadata store, not in the connection.
 *
 * Invariants:
 * - An agent is heard from (`lastSeenAt` moves) on every poll and every answer. A poll
 *   waits at most a third of the agent timeout (and at most `MAX_POLL_WAIT_MS`), so a
 *   connected agent never looks silent.
 * - A task is answered once (`finishAgentTask` only moves a pending task); only the
 *   agent it was given to may answer it.
 * - `rpc` exposes exactly the `ControlApi` the data plane uses on one node, with each
 *   argument checked, and nothing else.
 */
import type { Logger } from 'pino';
import type { NodeType } from '../api/types.js';
import type { AgentRecord, AgentTaskRecord, AttrChange, Barrier, Guard, MetadataStore, MoveRequest, NewNode, Timespec } from '../meta/types.js';
import { ApiError, toWire, type WireError } from '../errors/index.js';
import type { TaskBus } from '../commit/task-bus.js';
import { uploadProgressOf } from '../commit/agents.js';
import type { ControlApi } from './service.js';

/** Where agents find the bucket. Credentials are never here: each node takes its own. */
export interface AgentStoreConfig {
  url: string;
  s3Endpoint?: string;
  s3Region?: string;
  s3ForcePathStyle?: boolean;
}

export interface AgentHubOptions {
  agentTimeoutMs: number;
  /** null: this control plane does not serve agents on other nodes (tests of one node). */
  store: AgentStoreConfig | null;
}

export interface Registration {
  agent: AgentRecord;
  mountId: string;
  store: AgentStoreConfig;
  agentTimeoutMs: number;
  /** How long the agent should ask each poll to wait. */
  pollWaitMs: number;
}

/** A poll's answer: the tasks, and the version of the agent's mount's auto-commit rules. */
export interface PollAnswer {
  tasks: AgentTaskRecord[];
  autoCommitVersion: number;
}

export const MAX_POLL_WAIT_MS = 10_000;
/** How often a waiting poll re-reads the store for tasks added by another process. */
const POLL_RECHECK_MS = 250;
const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export class AgentHub {
  constructor(private readonly meta: MetadataStore, private readonly control: ControlApi, private readonly bus: TaskBus,
    private readonly log: Logger, private readonly options: AgentHubOptions) {}

  /** Registered agents of a mount, each with whether it was heard from within the agent timeout. */
  async list(mountId: string): Promise<Array<AgentRecord & { connected: boolean }>> {
    const now = Date.now();
    return (await this.meta.listAgents(mountId)).map((a) => ({ ...a, connected: now - Date.parse(a.lastSeenAt) <= this.options.agentTimeoutMs }));
  }

  async register(mountId: string, body: Record<string, unknown>): Promise<Registration> {
    const store = this.options.store;
    if (!store) throw new ApiError('BAD_REQUEST', 'This control plane does not accept agents from other nodes');
    const id = body.agentId;
    if (typeof id !== 'string' || !AGENT_ID.test(id)) throw new ApiError('BAD_REQUEST', 'agentId must be 1-128 characters of [A-Za-z0-9._-]');
    const mountpoint = optionalString(body.mountpoint, 'mountpoint', 4096);
    const hostname = optionalString(body.hostname, 'hostname', 255) ?? 'unknown';
    const now = new Date().toISOString();
    const existing = await this.meta.getAgent(id);
    if (existing && existing.mountId !== mountId) {
      // Its staged files belong to that mount's namespace: serving another would orphan them.
      throw new ApiError('BAD_REQUEST', `Agent ${id} serves mount ${existing.mountId}; give this node its own state directory to serve another mount`);
    }
    const agent = await this.meta.upsertAgent({ id, mountId, mountpoint, hostname, registeredAt: now, lastSeenAt: now });
    this.log.info({ agentId: id, hostname, mountpoint, mountId }, existing ? 'agent reconnected' : 'agent registered');
    return { agent, mountId, store, agentTimeoutMs: this.options.agentTimeoutMs, pollWaitMs: this.pollWaitMs };
  }

  /**
   * Waits up to `waitMs` for tasks of `agentId` it is not already running (`running`:
   * the ids it named); returns at once when there are some. A task the agent runs stays
   * pending until answered, so without `running` a seal that waits minutes for a writer
   * would turn the long poll into a busy loop. An agent that names the version of its
   * mount's auto-commit rules it holds (`autoCommitVersion`) is answered at once when
   * they are at another version, so it fetches them within one poll of a change.
   */
  async poll(agentId: string, body: Record<string, unknown>, closed: AbortSignal): Promise<PollAnswer> {
    const waitMs = body.waitMs === undefined ? this.pollWaitMs : body.waitMs;
    if (typeof waitMs !== 'number' || !Number.isFinite(waitMs) || waitMs < 0) throw new ApiError('BAD_REQUEST', 'waitMs must be a number of milliseconds');
    const running = body.running === undefined ? [] : body.running;
    if (!Array.isArray(running) || running.length > 100_000 || !running.every((id) => typeof id === 'string')) throw new ApiError('BAD_REQUEST', 'running must be an array of task ids');
    const known = body.autoCommitVersion;
    if (known !== undefined && (typeof known !== 'number' || !Number.isSafeInteger(known) || known < 0)) throw new ApiError('BAD_REQUEST', 'autoCommitVersion must be a non-negative integer');
    const skip = new Set(running as string[]);
    const deadline = Date.now() + Math.min(waitMs, this.pollWaitMs);
    await this.heard(agentId);
    const agent = await this.meta.getAgent(agentId);
    if (!agent) throw new ApiError('AGENT_NOT_FOUND', `Agent ${agentId} is not registered`);
    for (;;) {
      const tasks = (await this.meta.pendingAgentTasks(agentId)).filter((t) => !skip.has(t.id));
      const autoCommitVersion = (await this.meta.getAutoCommitRules(agent.mountId)).version;
      const left = deadline - Date.now();
      if (tasks.length > 0 || left <= 0 || closed.aborted || (known !== undefined && known !== autoCommitVersion)) return { tasks, autoCommitVersion };
      await this.bus.waitForAgent(agentId, Math.min(left, POLL_RECHECK_MS), closed);
    }
  }

  /**
   * How long a poll may wait: at most a third of the agent timeout, so an idle agent is
   * heard from at least three times within it, and never more than MAX_POLL_WAIT_MS.
   */
  private get pollWaitMs(): number {
    return Math.max(100, Math.min(MAX_POLL_WAIT_MS, Math.floor(this.options.agentTimeoutMs / 3)));
  }

  async answer(agentId: string, taskId: string, body: Record<string, unknown>): Promise<{ accepted: boolean }> {
    await this.heard(agentId);
    const t = await this.meta.getAgentTask(taskId);
    if (!t || t.agentId !== agentId) throw new ApiError('TASK_NOT_FOUND', `No task ${taskId} for agent ${agentId}`);
    let accepted: boolean;
    const at = new Date().toISOString();
    if (body.status === 'done') {
      accepted = await this.meta.finishAgentTask(taskId, { status: 'done', result: body.result ?? null }, at);
    } else if (body.status === 'failed') {
      const e = body.error as Partial<WireError> | undefined;
      if (!e || typeof e.code !== 'string' || typeof e.message !== 'string') throw new ApiError('BAD_REQUEST', 'error must be {code, message}');
      accepted = await this.meta.finishAgentTask(taskId, { status: 'failed', error: { code: e.code, message: e.message.slice(0, 4096), details: isObject(e.details) ? e.details : {} } }, at);
    } else {
      throw new ApiError('BAD_REQUEST', 'status must be "done" or "failed"');
    }
    this.bus.taskFinished(taskId);
    // Release is the agent's last task of a commit: its rows have served their purpose.
    if (t.kind === 'release') await this.meta.dropAgentTasks(t.commitId, agentId);
    return { accepted };
  }

  /** What an agent reports while it runs a task (an upload's files and bytes so far); a heartbeat too. */
  async progress(agentId: string, taskId: string, body: Record<string, unknown>): Promise<{ recorded: boolean }> {
    await this.heard(agentId);
    const t = await this.meta.getAgentTask(taskId);
    if (!t || t.agentId !== agentId) throw new ApiError('TASK_NOT_FOUND', `No task ${taskId} for agent ${agentId}`);
    const p = uploadProgressOf(body);
    if (!p) throw new ApiError('BAD_REQUEST', 'progress must be {filesTotal, filesDone, bytesTotal, bytesUploaded}, non-negative integers');
    if (t.status !== 'pending') return { recorded: false };
    await this.meta.setAgentTaskProgress(taskId, p);
    this.bus.taskProgress(taskId);
    return { recorded: true };
  }

  private async heard(agentId: string): Promise<void> {
    if (!(await this.meta.touchAgent(agentId, new Date().toISOString()))) {
      throw new ApiError('AGENT_NOT_FOUND', `Agent ${agentId} is not registered`);
    }
  }

  /** One `ControlApi` call of an agent's filesystem, its arguments checked. */
  async rpc(mountId: string, agentId: string, body: Record<string, unknown>): Promise<unknown> {
    await this.heard(agentId);
    const method = body.method;
    const args = body.args;
    if (typeof method !== 'string' || !Array.isArray(args)) throw new ApiError('BAD_REQUEST', 'rpc needs {method, args: []}');
    const a = new Args(args);
    const c = this.control;
    const mount = (): string => {
      const m = a.str();
      if (m !== mountId) throw new ApiError('BAD_REQUEST', 'The call names another mount than this agent serves');
      return m;
    };
    switch (method) {
      case 'root': return c.root(mount());
      case 'lookupChild': return c.lookupChild(a.str(), a.str());
      case 'lookupById': return c.lookupById(mount(), a.str());
      case 'nodeForWrite': return c.nodeForWrite(mount(), a.str());
      case 'children': return c.children(a.str());
      case 'countSubfolders': return c.countSubfolders(a.str());
      case 'createChild': return c.createChild(newNode(a.obj(), mountId, agentId));
      case 'removeChild': return c.removeChild(mount(), a.str(), a.str(), nodeType(a.str()));
      case 'moveChild': return c.moveChild(moveRequest(a.obj(), mountId));
      case 'setNodeAttrs': return c.setNodeAttrs(mount(), a.str(), attrChange(a.obj()), guard(a.str()));
      case 'assertWritable': return c.assertWritable(mount(), a.str()).then(() => null);
      case 'barrierError': return toWire(await c.barrierError(barrier(a.obj())));
      case 'subtree': return c.subtree(a.str());
      case 'pathOf': return c.pathOf(a.str());
      case 'resolvePath': return c.resolvePath(mount(), a.str());
      // The pin is the calling agent's, whatever the arguments say.
      case 'autoCommitRules': return c.autoCommitRules(mount());
      case 'pinObject': { const m = mount(); a.str(); return c.pinObject(m, agentId, a.str(), a.str()); }
      default: throw new ApiError('BAD_REQUEST', `Unknown rpc method ${JSON.stringify(method).slice(0, 64)}`);
    }
  }
}

class Args {
  private i = 0;
  constructor(private readonly values: unknown[]) {}
  str(): string {
    const v = this.values[this.i++];
    if (typeof v !== 'string' || v.length > 4096 || v.includes('\0')) throw new ApiError('BAD_REQUEST', `Argument ${this.i} must be a string`);
    return v;
  }
  obj(): Record<string, unknown> {
    const v = this.values[this.i++];
    if (!isObject(v)) throw new ApiError('BAD_REQUEST', `Argument ${this.i} must be an object`);
    return v;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optionalString(v: unknown, name: string, max: number): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || v.length > max || v.includes('\0')) throw new ApiError('BAD_REQUEST', `${name} must be a string of at most ${max} characters`);
  return v;
}

function int(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ApiError('BAD_REQUEST', `${name} must be a non-negative integer`);
  return v;
}

function str(v: unknown, name: string): string {
  if (typeof v !== 'string' || v.length > 4096 || v.includes('\0')) throw new ApiError('BAD_REQUEST', `${name} must be a string`);
  return v;
}

function timespec(v: unknown, name: string): Timespec {
  if (!isObject(v)) throw new ApiError('BAD_REQUEST', `${name} must be {sec, nsec}`);
  const nsec = int(v.nsec, `${name}.nsec`);
  if (nsec >= 1e9) throw new ApiError('BAD_REQUEST', `${name}.nsec must be below 1e9`);
  return { sec: int(v.sec, `${name}.sec`), nsec };
}

function nodeType(v: string): NodeType {
  if (v !== 'file' && v !== 'folder') throw new ApiError('BAD_REQUEST', 'type must be file or folder');
  return v;
}

function guard(v: string): Guard {
  if (v !== 'writable' && v !== 'not-committed' && v !== 'none') throw new ApiError('BAD_REQUEST', 'guard must be writable or not-committed');
  // `none` is the commit engine's, which runs in the control plane, never an agent's.
  if (v === 'none') throw new ApiError('BAD_REQUEST', 'An agent cannot change a node without the barrier');
  return v;
}

/** An agent creates nodes in its own mount, and files it creates are staged by itself. */
function newNode(o: Record<string, unknown>, mountId: string, agentId: string): NewNode {
  const type = nodeType(str(o.type, 'type'));
  if (o.mountId !== mountId) throw new ApiError('BAD_REQUEST', 'The call names another mount than this agent serves');
  if (o.ownerAgent !== (type === 'file' ? agentId : null)) throw new ApiError('BAD_REQUEST', 'A file is staged by the agent that creates it; a folder by none');
  return {
    mountId, parentId: str(o.parentId, 'parentId'), name: str(o.name, 'name'), type, mode: int(o.mode, 'mode'), uid: int(o.uid, 'uid'), gid: int(o.gid, 'gid'),
    ownerAgent: type === 'file' ? agentId : null, ...(o.time === undefined ? {} : { time: timespec(o.time, 'time') }),
  };
}

function moveRequest(o: Record<string, unknown>, mountId: string): MoveRequest {
  if (o.mountId !== mountId) throw new ApiError('BAD_REQUEST', 'The call names another mount than this agent serves');
  return {
    mountId, srcParentId: str(o.srcParentId, 'srcParentId'), srcName: str(o.srcName, 'srcName'), dstParentId: str(o.dstParentId, 'dstParentId'),
    dstName: str(o.dstName, 'dstName'), noReplace: o.noReplace === true,
  };
}

function attrChange(o: Record<string, unknown>): AttrChange {
  const out: AttrChange = {};
  if (o.size !== undefined) out.size = int(o.size, 'size');
  if (o.mode !== undefined) out.mode = int(o.mode, 'mode');
  if (o.uid !== undefined) out.uid = int(o.uid, 'uid');
  if (o.gid !== undefined) out.gid = int(o.gid, 'gid');
  if (o.atime !== undefined) out.atime = timespec(o.atime, 'atime');
  if (o.mtime !== undefined) out.mtime = timespec(o.mtime, 'mtime');
  return out;
}

function barrier(o: Record<string, unknown>): Barrier {
  if (o.code !== 'SEALED' && o.code !== 'COMMITTED') throw new ApiError('BAD_REQUEST', 'barrier.code must be SEALED or COMMITTED');
  return { code: o.code, nodeId: str(o.nodeId, 'nodeId') };
}
