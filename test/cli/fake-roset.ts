/**
 * A stateful stand-in for the `/v1` API, just deep enough for CLI tests: mounts with
 * mountpoints, path resolution, commits that complete or fail after a number of polls,
 * refs with compare-and-swap and a log. It is not the server: the daemon team's
 * end-to-end tests cover the real one.
 */
import type { Commit, Mount, Node, Ref, RefLogEntry } from '../../src/api/types.js';
import { apiError, startFakeServer, type FakeServer, type Recorded, type Reply } from '../sdk/fake-http.js';
import { commit as mkCommit, mount as mkMount, node as mkNode } from '../sdk/fixtures.js';

export interface CommitPlan {
  /** GETs of the commit before it settles; Infinity keeps it pending. */
  polls: number;
  fail?: { code: string; message: string };
}

export class FakeRoset {
  readonly key = 'rsk_cli_test';
  mounts: Mount[] = [mkMount({ id: 'mnt_a', name: 'default' })];
  readonly nodes = new Map<string, Node>();
  readonly commits = new Map<string, Commit>();
  readonly refs = new Map<string, Ref>();
  readonly refLog: RefLogEntry[] = [];
  plan: CommitPlan = { polls: 1 };
  private readonly pollsLeft = new Map<string, number>();
  private readonly plans = new Map<string, CommitPlan>();
  private seq = 0;

  private constructor(readonly server: FakeServer) {}

  static async start(): Promise<FakeRoset> {
    const server = await startFakeServer(() => ({}));
    const fake = new FakeRoset(server);
    server.handler = (r) => fake.handle(r);
    return fake;
  }

  get url(): string {
    return this.server.url;
  }

  get requests(): Recorded[] {
    return this.server.requests;
  }

  close(): Promise<void> {
    return this.server.close();
  }

  addFolder(path: string, mountId = 'mnt_a'): Node {
    const n = mkNode({ id: `n${++this.seq}`, mountId, path, name: path.slice(path.lastIndexOf('/') + 1) });
    this.nodes.set(`${mountId}:${path}`, n);
    return n;
  }

  addCommit(over: Partial<Commit>): Commit {
    const c = mkCommit({ id: `cmt_${String(++this.seq).padStart(3, '0')}`, createdAt: new Date(Date.now() + this.seq).toISOString(), ...over });
    this.commits.set(c.id, c);
    return c;
  }

  private handle(r: Recorded): Reply {
    if (r.method === 'GET' && r.path === '/health') return { body: { status: 'ok', version: '9.9.9' } };
    if (r.headers.authorization !== `Bearer ${this.key}`) return apiError(401, 'UNAUTHORIZED', 'Missing or invalid API key');
    const header = r.headers['x-roset-mount-id'];
    const mountId = typeof header === 'string' ? header : this.mounts[0]!.id;
    if (!this.mounts.some((m) => m.id === mountId)) return apiError(404, 'MOUNT_NOT_FOUND', `No mount ${mountId}`);
    const parts = r.path.split('/').slice(1).map(decodeURIComponent); // ['v1', ...]
    const route = `${r.method} /${parts.map((p, i) => (i === 2 ? ':' : p)).join('/')}`;
    const body = (r.body ?? {}) as Record<string, unknown>;

    switch (route) {
      case 'GET /v1/mounts':
        return page(this.mounts);
      case 'GET /v1/agents':
        return page([]);
      case 'GET /v1/mounts/:/auto-commit':
        // No rules were ever set on a fake mount.
        return { body: { mountId: parts[2], rules: [], version: 0, updatedAt: null, updatedBy: null } };
      case 'POST /v1/resolve': {
        const nodes: Record<string, Node | null> = {};
        for (const p of body.paths as string[]) nodes[p] = this.nodes.get(`${mountId}:${p}`) ?? null;
        return { body: { nodes } };
      }
      case 'POST /v1/nodes/:/commit': {
        const n = [...this.nodes.values()].find((x) => x.id === parts[2] && x.mountId === mountId);
        if (!n) return apiError(404, 'NODE_NOT_FOUND', `No node ${parts[2]}`);
        const c = this.addCommit({ mountId, nodeId: n.id, path: n.path, message: (body.message as string) ?? '', groupId: (body.groupId as string) ?? null });
        this.plans.set(c.id, this.plan);
        this.pollsLeft.set(c.id, this.plan.polls);
        return { status: 202, body: c };
      }
      case 'GET /v1/commits':
        return page(
          [...this.commits.values()]
            .filter((c) => c.mountId === mountId)
            .filter((c) => !r.query.get('nodeId') || c.nodeId === r.query.get('nodeId'))
            .filter((c) => !r.query.get('status') || c.status === r.query.get('status'))
            .sort((a, b) => b.createdAt.localeCompare(a.createdAt)),
        );
      case 'GET /v1/commits/:': {
        const c = this.commits.get(parts[2]!);
        if (!c || c.mountId !== mountId) return apiError(404, 'COMMIT_NOT_FOUND', `No commit ${parts[2]}`);
        return { body: this.advance(c) };
      }
      case 'GET /v1/refs':
        return page([...this.refs.values()].filter((x) => x.mountId === mountId));
      case 'GET /v1/refs/:': {
        const ref = this.refs.get(`${mountId}:${parts[2]}`);
        return ref ? { body: ref } : apiError(404, 'REF_NOT_FOUND', `No ref ${parts[2]}`);
      }
      case 'PUT /v1/refs/:':
        return this.putRef(mountId, parts[2]!, body);
      case 'DELETE /v1/refs/:': {
        const ref = this.refs.get(`${mountId}:${parts[2]}`);
        if (!ref) return apiError(404, 'REF_NOT_FOUND', `No ref ${parts[2]}`);
        this.refs.delete(`${mountId}:${parts[2]}`);
        this.refLog.push({ name: ref.name, mountId, fromCommitId: ref.commitId, toCommitId: null, updatedAt: new Date().toISOString(), updatedBy: 'key_test' });
        return { status: 204 };
      }
      case 'GET /v1/refs/:/log': {
        const log = this.refLog.filter((e) => e.mountId === mountId && e.name === parts[2]);
        return log.length ? page(log) : apiError(404, 'REF_NOT_FOUND', `No ref ${parts[2]}`);
      }
      default:
        return apiError(404, 'ROUTE_NOT_FOUND', route);
    }
  }

  private advance(c: Commit): Commit {
    const left = this.pollsLeft.get(c.id);
    if (c.status !== 'pending' || left === undefined) return c;
    const plan = this.plans.get(c.id)!;
    if (left > 1) {
      this.pollsLeft.set(c.id, left - 1);
      // Uploading: one more file of four done per poll, as far as the plan's polls go.
      const done = Number.isFinite(plan.polls) ? Math.min(4, Math.floor((4 * (plan.polls - left + 1)) / plan.polls)) : 1;
      c.progress = { phase: 'uploading', filesTotal: 4, filesDone: done, bytesTotal: 4096, bytesUploaded: 1024 * done };
      return c;
    }
    this.pollsLeft.delete(c.id);
    c.progress = null;
    if (plan.fail) {
      c.status = 'failed';
      c.error = plan.fail;
    } else {
      c.status = 'completed';
      c.completedAt = new Date().toISOString();
      c.stats = { files: 4, bytes: 4096, uploadedBytes: 2048, dedupedBytes: 2048 };
    }
    return c;
  }

  private putRef(mountId: string, name: string, body: Record<string, unknown>): Reply {
    const c = this.commits.get(body.commitId as string);
    if (!c) return apiError(404, 'COMMIT_NOT_FOUND', `No commit ${String(body.commitId)}`);
    if (c.status !== 'completed') return apiError(409, 'COMMIT_NOT_COMPLETED', `Commit ${c.id} is ${c.status}`);
    const cur = this.refs.get(`${mountId}:${name}`);
    if ('expectedCommitId' in body && (cur?.commitId ?? null) !== body.expectedCommitId) {
      return apiError(409, 'REF_CONFLICT', `Ref ${name} points at ${cur?.commitId ?? 'nothing'}, not ${String(body.expectedCommitId)}`, {
        currentCommitId: cur?.commitId ?? null,
      });
    }
    const ref: Ref = { name, mountId, commitId: c.id, commit: c, updatedAt: new Date().toISOString(), updatedBy: 'key_test' };
    this.refs.set(`${mountId}:${name}`, ref);
    this.refLog.push({ name, mountId, fromCommitId: cur?.commitId ?? null, toCommitId: c.id, updatedAt: ref.updatedAt, updatedBy: 'key_test' });
    return { body: ref };
  }
}

function page<T>(items: T[]): Reply {
  return { body: { items, nextCursor: null } };
}
