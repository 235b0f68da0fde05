/**
 * Progress across nodes: an agent on another node reports its upload's progress on
 * its task (`POST /v1/agents/{id}/tasks/{taskId}/progress`, through AgentHub); the
 * process driving the commit reads it with the task (RemoteAgent) and passes it on.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { UploadProgress } from '../../src/commit/agents.js';
import { RemoteAgent } from '../../src/commit/remote-agent.js';
import { TaskBus } from '../../src/commit/task-bus.js';
import { AgentHub } from '../../src/control/agent-hub.js';
import type { ControlApi } from '../../src/control/service.js';
import { SqliteMetadataStore } from '../../src/meta/sqlite.js';

describe('remote agent progress', () => {
  let dir: string;
  let meta: SqliteMetadataStore;
  let hub: AgentHub;
  let bus: TaskBus;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'roset-rprog-'));
    meta = new SqliteMetadataStore(path.join(dir, 'metadata.db'));
    bus = new TaskBus();
    hub = new AgentHub(meta, {} as ControlApi, bus, pino({ level: 'silent' }), { agentTimeoutMs: 30_000, store: { url: 's3://b/p' } });
    const now = new Date().toISOString();
    await meta.upsertAgent({ id: 'agt_2', mountId: 'mnt_1', mountpoint: '/mnt/r', hostname: 'n2', registeredAt: now, lastSeenAt: now });
  });
  afterEach(async () => {
    await meta.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes each new report to the driver, refuses a malformed one, and ignores reports after the answer', async () => {
    const agent = new RemoteAgent('agt_2', 'mnt_1', meta, bus, { agentTimeoutMs: 30_000, pollMs: 50 });
    const seen: UploadProgress[] = [];
    const upload = agent.upload('cmt_1', 'node_1', (p) => seen.push(p));
    const task = await (async () => {
      for (;;) {
        const [t] = await meta.pendingAgentTasks('agt_2');
        if (t) return t;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const p1 = { filesTotal: 3, filesDone: 1, bytesTotal: 300, bytesUploaded: 100 };
    expect(await hub.progress('agt_2', task.id, p1)).toEqual({ recorded: true });
    await expect(hub.progress('agt_2', task.id, { filesTotal: -1 })).rejects.toMatchObject({ rosetCode: 'BAD_REQUEST' });
    await expect(hub.progress('agt_other', task.id, p1)).rejects.toMatchObject({ rosetCode: 'AGENT_NOT_FOUND' });
    for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([p1]);
    const p2 = { ...p1, filesDone: 3, bytesUploaded: 300 };
    await hub.progress('agt_2', task.id, p2);
    for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([p1, p2]);
    await hub.answer('agt_2', task.id, { status: 'done', result: { files: [], uploadedBytes: 300, dedupedBytes: 0 } });
    expect(await upload).toEqual({ files: [], uploadedBytes: 300, dedupedBytes: 0 });
    expect(await hub.progress('agt_2', task.id, p1)).toEqual({ recorded: false });
  });
});

describe('agent side', () => {
  it('reports an upload\'s progress on its task at most about twice a second, then answers', async () => {
    const { AgentLink } = await import('../../src/remote/agent-link.js');
    const calls: Array<{ path: string; body: unknown; at: number }> = [];
    let polled = false;
    const link = {
      mountId: 'mnt_1',
      call: async (_method: string, p: string, body: unknown, o: { signal?: AbortSignal } = {}) => {
        calls.push({ path: p, body, at: Date.now() });
        if (p.endsWith('/poll')) {
          if (!polled) {
            polled = true;
            return { tasks: [{ id: 'cmt_1.upload.agt_2', agentId: 'agt_2', commitId: 'cmt_1', kind: 'upload', args: { folderId: 'n' }, status: 'pending', result: null, error: null, createdAt: '', finishedAt: null }] };
          }
          await new Promise((_r, reject) => o.signal?.addEventListener('abort', () => reject(new Error('stopped')), { once: true }));
        }
        return {};
      },
    };
    const started = Date.now();
    const agent = {
      id: 'agt_2', mountId: 'mnt_1', mountpoint: null,
      seal: async () => undefined, release: async () => undefined,
      upload: async (_c: string, _f: string, onProgress?: (p: UploadProgress) => void) => {
        // 1000 files in about 1.2 s.
        for (let i = 1; i <= 1000; i++) {
          onProgress?.({ filesTotal: 1000, filesDone: i, bytesTotal: 1000, bytesUploaded: i });
          if (i % 100 === 0) await new Promise((r) => setTimeout(r, 120));
        }
        return { files: [], uploadedBytes: 1000, dedupedBytes: 0 };
      },
    };
    const al = new AgentLink(link as never, { agentId: 'agt_2', mountpoint: '/mnt/r', hostname: 'n2' }, pino({ level: 'silent' }));
    al.start(agent);
    for (let i = 0; i < 300 && !calls.some((c) => c.path === '/v1/agents/agt_2/tasks/cmt_1.upload.agt_2'); i++) await new Promise((r) => setTimeout(r, 10));
    await al.stop();
    const reports = calls.filter((c) => c.path.endsWith('/progress'));
    const elapsed = Date.now() - started;
    expect(reports.length).toBeGreaterThanOrEqual(2);
    expect(reports.length).toBeLessThanOrEqual(Math.ceil(elapsed / 500) + 1);
    for (let i = 1; i < reports.length; i++) expect(reports[i]!.at - reports[i - 1]!.at).toBeGreaterThanOrEqual(450);
    expect(reports[0]!.path).toBe('/v1/agents/agt_2/tasks/cmt_1.upload.agt_2/progress');
    expect(calls.find((c) => c.path === '/v1/agents/agt_2/tasks/cmt_1.upload.agt_2')!.body).toMatchObject({ status: 'done' });
  });
});
