/**
 * The `/v1` route table (design §4). `openapi/roset-v1.json` documents exactly these
 * routes; a test compares the two.
 *
 * Invariant: handlers validate their input and throw RosetErrors; they never write to
 * the response themselves.
 */
import type { IncomingMessage } from 'node:http';
import { ApiError } from '../errors/index.js';
import { toApiKey, toCommit, toNode, type ControlPlane } from '../control/service.js';
import { registry } from '../metrics/index.js';
import type { CreatedApiKey, Page } from './types.js';

export interface RequestContext {
  req: IncomingMessage;
  params: Record<string, string>;
  query: URLSearchParams;
  mountId: string;
  /** Who is calling, for ref logs: `key:<name>`. */
  actor: string;
  /** The JSON body; `maxBytes` raises the 1 MiB default for routes that carry lists (an agent's upload result). */
  body: (maxBytes?: number) => Promise<Record<string, unknown>>;
}

export interface Reply {
  status: number;
  body?: unknown;
  /** Sent as it is, with `contentType`, instead of `body` as JSON. */
  text?: { contentType: string; body: string };
}

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Path in OpenAPI form, e.g. `/v1/nodes/{id}`. */
  path: string;
  auth: boolean;
  handler: (cp: ControlPlane, ctx: RequestContext) => Promise<Reply>;
}

/** An upload result lists every file an agent staged in the folder: 10,000 files is normal. */
const AGENT_ANSWER_MAX_BYTES = 64 << 20;

const ok = (body: unknown): Reply => ({ status: 200, body });

function limitOf(q: URLSearchParams): number {
  const raw = q.get('limit');
  if (raw === null) return 100;
  if (!/^\d{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > 1000) throw new ApiError('BAD_REQUEST', 'limit must be an integer from 1 to 1000');
  return Number(raw);
}

function cursorOf(q: URLSearchParams): string | undefined {
  const c = q.get('cursor');
  if (c === null || c === '') return undefined;
  if (c.length > 1024 || c.includes('\0')) throw new ApiError('BAD_REQUEST', 'Invalid cursor');
  return c;
}

function page<T>(items: T[], nextCursor: string | null = null): Page<T> {
  return { items, nextCursor };
}

export const ROUTES: Route[] = [
  { method: 'GET', path: '/health', auth: false, handler: async () => ok({ status: 'ok', version: '0.1.0' }) },
  // Prometheus: no key, and nothing in it names a path, a node or a key (src/metrics/).
  { method: 'GET', path: '/metrics', auth: false, handler: async () => ({ status: 200, text: { contentType: registry.contentType, body: await registry.metrics() } }) },
  { method: 'GET', path: '/v1/mounts', auth: true, handler: async (cp) => ok(page(await cp.listMounts())) },
  { method: 'POST', path: '/v1/mounts', auth: true, handler: async (cp, c) => ({ status: 201, body: await cp.createMount((await c.body()).name) }) },
  // A mount's auto-commit rules; each roset-mount serving it applies them with its own.
  { method: 'GET', path: '/v1/mounts/{mountId}/auto-commit', auth: true, handler: async (cp, c) => ok(await cp.getAutoCommitRules(c.params.mountId!)) },
  { method: 'PUT', path: '/v1/mounts/{mountId}/auto-commit', auth: true, handler: async (cp, c) => ok(await cp.setAutoCommitRules(c.params.mountId!, await c.body(), c.actor)) },
  { method: 'POST', path: '/v1/resolve', auth: true, handler: async (cp, c) => ok({ nodes: await cp.resolve(c.mountId, (await c.body()).paths) }) },
  { method: 'GET', path: '/v1/nodes/{id}', auth: true, handler: async (cp, c) => ok(toNode(await cp.getNode(c.mountId, c.params.id!))) },
  {
    method: 'GET', path: '/v1/nodes/{id}/children', auth: true,
    handler: async (cp, c) => {
      const r = await cp.listChildrenPage(c.mountId, c.params.id!, cursorOf(c.query), limitOf(c.query));
      return ok(page(r.items.map(toNode), r.nextCursor));
    },
  },
  {
    method: 'POST', path: '/v1/nodes', auth: true,
    handler: async (cp, c) => {
      const b = await c.body();
      return { status: 201, body: toNode(await cp.createNode({ mountId: c.mountId, parentPath: b.parentPath, parentId: b.parentId, name: b.name, type: b.type })) };
    },
  },
  { method: 'DELETE', path: '/v1/nodes/{id}', auth: true, handler: async (cp, c) => ok(toNode(await cp.deleteNode(c.mountId, c.params.id!))) },
  {
    method: 'POST', path: '/v1/nodes/{id}/commit', auth: true,
    handler: async (cp, c) => ({ status: 202, body: toCommit(await cp.commit(c.mountId, c.params.id!, await c.body())) }),
  },
  { method: 'GET', path: '/v1/commits/{id}', auth: true, handler: async (cp, c) => ok(toCommit(await cp.getCommit(c.mountId, c.params.id!))) },
  {
    method: 'GET', path: '/v1/commits', auth: true,
    handler: async (cp, c) => {
      const r = await cp.listCommits(c.mountId, {
        nodeId: c.query.get('nodeId') ?? undefined, status: c.query.get('status') ?? undefined, cursor: cursorOf(c.query), limit: limitOf(c.query),
      });
      return ok(page(r.items.map(toCommit), r.nextCursor));
    },
  },
  { method: 'GET', path: '/v1/commits/{id}/manifest', auth: true, handler: async (cp, c) => ok(await cp.getManifest(c.mountId, c.params.id!)) },
  { method: 'GET', path: '/v1/refs', auth: true, handler: async (cp, c) => ok(page(await cp.listRefs(c.mountId))) },
  { method: 'GET', path: '/v1/refs/{name}', auth: true, handler: async (cp, c) => ok(await cp.getRef(c.mountId, c.params.name!)) },
  { method: 'PUT', path: '/v1/refs/{name}', auth: true, handler: async (cp, c) => ok(await cp.setRef(c.mountId, c.params.name!, await c.body(), c.actor)) },
  {
    method: 'DELETE', path: '/v1/refs/{name}', auth: true,
    handler: async (cp, c) => {
      await cp.deleteRef(c.mountId, c.params.name!, c.actor);
      return { status: 204 };
    },
  },
  { method: 'GET', path: '/v1/refs/{name}/log', auth: true, handler: async (cp, c) => ok(page(await cp.refLog(c.mountId, c.params.name!))) },
  // Garbage collection over every mount (src/commit/gc.ts); answers when it is done.
  { method: 'POST', path: '/v1/gc', auth: true, handler: async (cp, c) => ok(await cp.gc(await c.body())) },
  // Where the run of this process is (a client shows it while its POST waits).
  { method: 'GET', path: '/v1/gc', auth: true, handler: async (cp) => ok(cp.gcStatus()) },
  { method: 'POST', path: '/v1/commit-groups', auth: true, handler: async (cp, c) => ({ status: 201, body: await cp.createGroup(c.mountId, await c.body()) }) },
  { method: 'GET', path: '/v1/commit-groups/{id}', auth: true, handler: async (cp, c) => ok(await cp.getGroup(c.mountId, c.params.id!)) },
  // Agents on other nodes (src/control/agent-hub.ts). The agent opens every connection.
  { method: 'GET', path: '/v1/agents', auth: true, handler: async (cp, c) => ok(page(await cp.hub.list(c.mountId))) },
  { method: 'POST', path: '/v1/agents', auth: true, handler: async (cp, c) => ({ status: 201, body: await cp.hub.register(c.mountId, await c.body()) }) },
  {
    method: 'POST', path: '/v1/agents/{id}/poll', auth: true,
    handler: async (cp, c) => {
      const body = await c.body();
      // The poll waits: stop waiting when the agent hangs up.
      const closed = new AbortController();
      const abort = (): void => closed.abort();
      c.req.socket.once('close', abort);
      try {
        return ok(await cp.hub.poll(c.params.id!, body, closed.signal));
      } finally {
        c.req.socket.off('close', abort);
      }
    },
  },
  { method: 'POST', path: '/v1/agents/{id}/tasks/{taskId}', auth: true, handler: async (cp, c) => ok(await cp.hub.answer(c.params.id!, c.params.taskId!, await c.body(AGENT_ANSWER_MAX_BYTES))) },
  { method: 'POST', path: '/v1/agents/{id}/tasks/{taskId}/progress', auth: true, handler: async (cp, c) => ok(await cp.hub.progress(c.params.id!, c.params.taskId!, await c.body())) },
  { method: 'POST', path: '/v1/agents/{id}/rpc', auth: true, handler: async (cp, c) => ok({ value: (await cp.hub.rpc(c.mountId, c.params.id!, await c.body())) ?? null }) },
  {
    method: 'POST', path: '/v1/keys', auth: true,
    handler: async (cp, c) => {
      const { token, record } = await cp.createApiKey((await c.body()).name);
      const body: CreatedApiKey = { ...toApiKey(record), token };
      return { status: 201, body };
    },
  },
  {
    method: 'GET', path: '/v1/keys', auth: true,
    handler: async (cp, c) => {
      const r = await cp.listApiKeys(cursorOf(c.query), limitOf(c.query));
      return ok(page(r.items, r.nextCursor));
    },
  },
  { method: 'DELETE', path: '/v1/keys/{id}', auth: true, handler: async (cp, c) => ok(await cp.revokeApiKey(c.params.id!)) },
  { method: 'POST', path: '/v1/commit-groups/{id}/seal', auth: true, handler: async (cp, c) => ({ status: 202, body: await cp.sealGroup(c.mountId, c.params.id!) }) },
];
