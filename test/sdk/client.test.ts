/**
 * Unit tests of the TypeScript SDK against an in-process HTTP server: request shapes,
 * retry policy, typed errors, waits, and config resolution.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RosetError } from '../../src/errors/index.js';
import {
  RosetClient,
  SdkApiError,
  SdkCommitFailedError,
  SdkConflictError,
  SdkError,
  SdkGroupFailedError,
  SdkNetworkError,
  SdkNotFoundError,
  SdkTimeoutError,
  defaultStateDir,
  resolveConfig,
  type RosetClientOptions,
} from '../../src/sdk/index.js';
import { apiError, startFakeServer, type FakeServer } from './fake-http.js';
import { commit, group, mount, node, ref } from './fixtures.js';

let server: FakeServer;
let emptyStateDir: string;

beforeAll(async () => {
  server = await startFakeServer(() => ({ body: {} }));
  emptyStateDir = mkdtempSync(join(tmpdir(), 'roset-sdk-empty-'));
});

afterAll(async () => {
  await server.close();
  rmSync(emptyStateDir, { recursive: true, force: true });
});

afterEach(() => {
  server.requests.length = 0;
});

/** A client that sees no environment and no state files: only what the test passes. */
function mk(over: RosetClientOptions = {}): RosetClient {
  return new RosetClient({ apiUrl: server.url, apiKey: 'rsk_test', env: {}, stateDir: emptyStateDir, retryBaseMs: 5, ...over });
}

describe('requests', () => {
  it('sends the key and mount id everywhere but /health', async () => {
    server.handler = (r) => (r.path === '/health' ? { body: { status: 'ok', version: '1.2.3' } } : { body: { items: [mount()], nextCursor: null } });
    const c = mk({ mountId: 'mnt_b' });
    expect(await c.getHealth()).toEqual({ status: 'ok', version: '1.2.3' });
    expect((await c.listMounts()).items[0]!.id).toBe('mnt_a');
    const [health, mounts] = server.requests;
    expect(health!.headers.authorization).toBeUndefined();
    expect(mounts!.headers.authorization).toBe('Bearer rsk_test');
    expect(mounts!.headers['x-roset-mount-id']).toBe('mnt_b');
    expect(mounts!.headers['user-agent']).toMatch(/^roset-sdk-typescript\//);
  });

  it('builds paths, queries and bodies as the API expects', async () => {
    server.handler = (r) => {
      if (r.path === '/v1/resolve') return { body: { nodes: { '/ckpt/step-1': node(), '/nope': null } } };
      if (r.path === '/v1/commits') return { body: { items: [], nextCursor: null } };
      if (r.method === 'PUT') return { body: ref() };
      if (r.path.endsWith('/commit')) return { status: 202, body: commit() };
      if (r.method === 'POST' && r.path === '/v1/nodes') return { status: 201, body: node() };
      if (r.method === 'DELETE') return { status: 204 };
      return { body: {} };
    };
    const c = mk();
    expect(await c.resolve(['/ckpt/step-1', '/nope'])).toEqual({ '/ckpt/step-1': node(), '/nope': null });
    expect(await c.resolvePath('/nope')).toBeNull();
    await c.listCommits({ nodeId: 'n 1', status: 'pending', limit: 5 });
    await c.commit('n1', { message: 'step 1' });
    await c.commit('n1');
    await c.updateRef('latest', 'cmt_2');
    await c.updateRef('latest', 'cmt_2', { expectedCommitId: null });
    await c.updateRef('latest', 'cmt_2', { expectedCommitId: 'cmt_1' });
    await c.createFolder('/ckpt', 'step-2');
    await c.createFolder('n0', 'step-3');
    await expect(c.deleteRef('latest')).resolves.toBeUndefined();

    const [res1, res2, list, c1, c2, u1, u2, u3, f1, f2, del] = server.requests;
    expect(res1!.body).toEqual({ paths: ['/ckpt/step-1', '/nope'] });
    expect(res2!.body).toEqual({ paths: ['/nope'] });
    expect(list!.path).toBe('/v1/commits');
    expect(Object.fromEntries(list!.query)).toEqual({ nodeId: 'n 1', status: 'pending', limit: '5' });
    expect([c1!.path, c1!.body]).toEqual(['/v1/nodes/n1/commit', { message: 'step 1' }]);
    expect(c2!.body).toEqual({});
    expect([u1!.method, u1!.path, u1!.body]).toEqual(['PUT', '/v1/refs/latest', { commitId: 'cmt_2' }]);
    expect(u2!.body).toEqual({ commitId: 'cmt_2', expectedCommitId: null });
    expect(u3!.body).toEqual({ commitId: 'cmt_2', expectedCommitId: 'cmt_1' });
    expect(f1!.body).toEqual({ parentPath: '/ckpt', name: 'step-2', type: 'folder' });
    expect(f2!.body).toEqual({ parentId: 'n0', name: 'step-3', type: 'folder' });
    expect([del!.method, del!.path]).toEqual(['DELETE', '/v1/refs/latest']);
  });

  it('keeps a path prefix of the API URL and escapes ids', async () => {
    server.handler = () => ({ body: node() });
    await mk({ apiUrl: `${server.url}/roset/` }).getNode('a/b?c');
    expect(server.requests[0]!.path).toBe('/roset/v1/nodes/a%2Fb%3Fc');
  });

  it('refuses "." and ".." as path segments instead of reaching another route', async () => {
    await expect(mk().getRef('..')).rejects.toMatchObject({ rosetCode: 'INVALID_REF_NAME' });
    await expect(mk().getNode('.')).rejects.toMatchObject({ rosetCode: 'BAD_REQUEST' });
    expect(server.requests).toHaveLength(0);
  });

  it('splits large resolves into batches under the server limits', async () => {
    server.handler = (r) => ({ body: { nodes: Object.fromEntries((r.body as { paths: string[] }).paths.map((p) => [p, null])) } });
    const paths = Array.from({ length: 1200 }, (_, i) => `/p/${i}`);
    const out = await mk().resolve(paths);
    expect(Object.keys(out)).toHaveLength(1200);
    expect(server.requests.length).toBeGreaterThanOrEqual(3);
    for (const r of server.requests) expect((r.body as { paths: string[] }).paths.length).toBeLessThanOrEqual(1000);
  });

  it('paginates with nextCursor', async () => {
    server.handler = (r) => {
      const cursor = r.query.get('cursor');
      if (!cursor) return { body: { items: [commit({ id: 'c3' }), commit({ id: 'c2' })], nextCursor: 'k2' } };
      return { body: { items: [commit({ id: 'c1' })], nextCursor: null } };
    };
    const c = mk();
    const all = await c.listAll((o) => c.listCommits(o));
    expect(all.map((x) => x.id)).toEqual(['c3', 'c2', 'c1']);
    expect(server.requests.map((r) => r.query.get('cursor'))).toEqual([null, 'k2']);
  });
});

describe('retries', () => {
  it('retries 503 and 429 honouring Retry-After, then succeeds', async () => {
    let n = 0;
    server.handler = () => {
      n++;
      if (n === 1) return { ...apiError(503, 'AGENT_UNAVAILABLE'), headers: { 'retry-after': '1' } };
      if (n === 2) return { ...apiError(429, 'RATE_LIMITED'), headers: { 'retry-after': new Date(Date.now() - 1000).toUTCString() } };
      return { body: node() };
    };
    const t0 = Date.now();
    expect(await mk().getNode('n1')).toEqual(node());
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(server.requests).toHaveLength(3);
  });

  it('retries a creating POST on 503/429 (the server did not act) but not on 500', async () => {
    let n = 0;
    server.handler = () => (++n === 1 ? apiError(503, 'AGENT_UNAVAILABLE') : { status: 202, body: commit() });
    expect((await mk().commit('n1')).id).toBe('cmt_1');
    expect(server.requests).toHaveLength(2);

    server.requests.length = 0;
    server.handler = () => apiError(500, 'INTERNAL', 'boom');
    await expect(mk().commit('n1')).rejects.toMatchObject({ status: 500, rosetCode: 'INTERNAL' });
    expect(server.requests).toHaveLength(1);
  });

  it('retries reads on any 5xx, bounded by maxRetries', async () => {
    server.handler = () => apiError(502, 'STORAGE_ERROR', 'bucket down');
    const err = await mk({ maxRetries: 2 }).getManifest('cmt_1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdkApiError);
    expect(err).toMatchObject({ status: 502, rosetCode: 'STORAGE_ERROR', message: 'bucket down' });
    expect(server.requests).toHaveLength(3);
  });

  it('never retries a 4xx other than 429', async () => {
    for (const [status, code] of [[400, 'BAD_REQUEST'], [401, 'UNAUTHORIZED'], [404, 'NODE_NOT_FOUND'], [409, 'SEALED']] as const) {
      server.requests.length = 0;
      server.handler = () => apiError(status, code);
      await expect(mk().getNode('n1')).rejects.toMatchObject({ status, rosetCode: code });
      expect(server.requests).toHaveLength(1);
    }
  });

  it('retries network errors and then throws SdkNetworkError', async () => {
    let calls = 0;
    const fetchImpl: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    // A port that was just free: connection refused.
    const dead = await startFakeServer(() => ({}));
    const url = dead.url;
    await dead.close();
    const err = await mk({ apiUrl: url, fetch: fetchImpl, maxRetries: 2 }).commit('n1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdkNetworkError);
    expect(err).toMatchObject({ status: 0, rosetCode: 'NETWORK_ERROR', details: { errno: 'ECONNREFUSED' } });
    expect((err as Error).message).toContain(url);
    // Refused connections never reached the server, so even a commit is retried.
    expect(calls).toBe(3);
  });

  it('times out a request that gets no answer', async () => {
    server.handler = () => ({ hang: true });
    const err = await mk({ timeoutMs: 100, maxRetries: 1 }).getNode('n1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdkTimeoutError);
    expect(err).toMatchObject({ rosetCode: 'TIMEOUT' });
    expect(server.requests).toHaveLength(2);
  });

  it('treats a compare-and-swap conflict after a lost response as success when the ref moved', async () => {
    let puts = 0;
    server.handler = (r) => {
      if (r.method === 'PUT') {
        // The first PUT takes effect but its response is lost (502 from a proxy).
        if (++puts === 1) return { status: 502, raw: '<html>bad gateway</html>' };
        return apiError(409, 'REF_CONFLICT', 'Ref latest points at cmt_2, not cmt_1', { currentCommitId: 'cmt_2' });
      }
      return { body: ref({ commitId: 'cmt_2' }) };
    };
    const r = await mk().updateRef('latest', 'cmt_2', { expectedCommitId: 'cmt_1' });
    expect(r.commitId).toBe('cmt_2');
    expect(server.requests.map((x) => x.method)).toEqual(['PUT', 'PUT', 'GET']);
  });

  it('still reports a real compare-and-swap conflict', async () => {
    server.handler = () => apiError(409, 'REF_CONFLICT', 'Ref latest points at cmt_9, not cmt_1', { currentCommitId: 'cmt_9' });
    const err = await mk().updateRef('latest', 'cmt_2', { expectedCommitId: 'cmt_1' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdkConflictError);
    expect(err).toMatchObject({ status: 409, rosetCode: 'REF_CONFLICT', details: { currentCommitId: 'cmt_9' } });
    expect(server.requests).toHaveLength(1);
  });
});

describe('typed errors', () => {
  it('maps error bodies to classes that are RosetErrors', async () => {
    server.handler = () => apiError(404, 'NODE_NOT_FOUND', 'No node x', { id: 'x' });
    const err = await mk().getNode('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdkNotFoundError);
    expect(err).toBeInstanceOf(SdkError);
    expect(err).toBeInstanceOf(RosetError);
    expect(err).toMatchObject({ status: 404, rosetCode: 'NODE_NOT_FOUND', code: 'ROSET_E_NODE_NOT_FOUND', wireCode: 'NODE_NOT_FOUND', message: 'No node x', details: { id: 'x' } });
  });

  it('keeps an unknown wire code while rosetCode stays in the table', async () => {
    server.handler = () => apiError(409, 'SOMETHING_NEW', 'from a newer server');
    const err = await mk().getNode('x').catch((e: unknown) => e);
    expect(err).toMatchObject({ wireCode: 'SOMETHING_NEW', rosetCode: 'INTERNAL', status: 409 });
  });

  it('derives a code from the status when the body is not an API error', async () => {
    server.handler = () => ({ status: 401, raw: 'nope' });
    await expect(mk().getNode('x')).rejects.toMatchObject({ rosetCode: 'UNAUTHORIZED', status: 401 });
  });

  it('getRef returns null only for a missing ref', async () => {
    server.handler = () => apiError(404, 'REF_NOT_FOUND');
    expect(await mk().getRef('latest')).toBeNull();
    server.handler = () => apiError(404, 'MOUNT_NOT_FOUND');
    await expect(mk().getRef('latest')).rejects.toBeInstanceOf(SdkNotFoundError);
  });

  it('never shows the API key when a client is logged', async () => {
    const c = mk({ apiKey: 'rsk_secret' });
    const { inspect } = await import('node:util');
    expect(inspect(c, { depth: 5 })).not.toContain('rsk_secret');
    expect(JSON.stringify(c.config)).not.toContain('rsk_secret');
    expect(c.config.apiKey).toBe('rsk_secret');
  });

  it('never puts the API key in an error', async () => {
    server.handler = () => apiError(401, 'UNAUTHORIZED');
    const err = (await mk({ apiKey: 'rsk_secret' }).getNode('x').catch((e: unknown) => e)) as SdkError;
    expect(JSON.stringify({ m: err.message, d: err.details, s: err.stack })).not.toContain('rsk_secret');
  });
});

describe('waits', () => {
  it('waitForCommit resolves once the commit completes', async () => {
    let polls = 0;
    server.handler = () => ({ body: commit({ status: ++polls < 3 ? 'pending' : 'completed' }) });
    const seen: string[] = [];
    const c = await mk().waitForCommit('cmt_1', { pollMs: 5, onPoll: (x) => seen.push(x.status) });
    expect(c.status).toBe('completed');
    expect(seen).toEqual(['pending', 'pending', 'completed']);
  });

  it('waitForCommit rejects a failed commit with the commit error code', async () => {
    server.handler = () => ({ body: commit({ status: 'failed', error: { code: 'OPEN_HANDLES', message: 'files still open: a.bin' } }) });
    const err = await mk().waitForCommit('cmt_1', { pollMs: 5 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdkCommitFailedError);
    expect(err).not.toBeInstanceOf(SdkTimeoutError);
    expect(err).toMatchObject({ rosetCode: 'OPEN_HANDLES', message: 'files still open: a.bin', status: 409, details: { commitId: 'cmt_1' } });
    expect((err as SdkCommitFailedError).commit.status).toBe('failed');
  });

  it('waitForCommit times out distinctly while the commit is still pending', async () => {
    server.handler = () => ({ body: commit() });
    const t0 = Date.now();
    const err = await mk().waitForCommit('cmt_1', { pollMs: 10, timeoutMs: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdkTimeoutError);
    expect(err).not.toBeInstanceOf(SdkCommitFailedError);
    expect(err).toMatchObject({ rosetCode: 'TIMEOUT', details: { commitId: 'cmt_1' } });
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('waitForCommitGroup reports which commit failed', async () => {
    server.handler = (r) => {
      if (r.path === '/v1/commit-groups/grp_1') return { body: group({ status: 'failed', commitIds: ['c1', 'c2'], sealedAt: 'x' }) };
      if (r.path === '/v1/commits/c1') return { body: commit({ id: 'c1', status: 'failed', error: { code: 'GROUP_FAILED', message: 'another failed' } }) };
      return { body: commit({ id: 'c2', status: 'failed', error: { code: 'STORAGE_ERROR', message: 'bucket down' } }) };
    };
    const err = await mk().waitForCommitGroup('grp_1', { pollMs: 5 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdkGroupFailedError);
    expect(err).toMatchObject({ rosetCode: 'GROUP_FAILED', details: { groupId: 'grp_1', commitId: 'c1' } });
  });

  it('sealCommitGroup resent after a lost response succeeds when the first seal took', async () => {
    let seals = 0;
    server.handler = (r) => {
      if (r.method === 'POST') return ++seals === 1 ? { status: 504, raw: '' } : apiError(409, 'GROUP_NOT_PENDING');
      return { body: group({ sealedAt: '2025-01-01T00:00:01.000Z' }) };
    };
    expect((await mk().sealCommitGroup('grp_1')).sealedAt).not.toBeNull();
  });
});

describe('config', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'roset-sdk-state-'));
    writeFileSync(join(dir, 'endpoint'), 'http://127.0.0.1:4567\n');
    writeFileSync(join(dir, 'api-key'), 'rsk_file\n', { mode: 0o600 });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prefers options, then environment, then state files, then the default', () => {
    const env = { ROSET_API_URL: 'http://env:1', ROSET_API_KEY: 'rsk_env', ROSET_MOUNT_ID: 'mnt_env', ROSET_STATE_DIR: dir };
    expect(resolveConfig({ apiUrl: 'http://opt:1/', apiKey: 'rsk_opt', mountId: 'mnt_opt', env })).toMatchObject({
      apiUrl: 'http://opt:1', apiKey: 'rsk_opt', mountId: 'mnt_opt', stateDir: dir,
      sources: { apiUrl: 'option', apiKey: 'option', mountId: 'option', stateDir: 'env' },
    });
    expect(resolveConfig({ env })).toMatchObject({ apiUrl: 'http://env:1', apiKey: 'rsk_env', mountId: 'mnt_env' });
    expect(resolveConfig({ env: { ROSET_STATE_DIR: dir } })).toMatchObject({
      apiUrl: 'http://127.0.0.1:4567', apiKey: 'rsk_file', mountId: undefined, sources: { apiUrl: 'state-dir', apiKey: 'state-dir' },
    });
    expect(resolveConfig({ env: { ROSET_STATE_DIR: emptyStateDir } })).toMatchObject({
      apiUrl: 'http://127.0.0.1:7070', apiKey: undefined, sources: { apiUrl: 'default', apiKey: undefined },
    });
  });

  it('resolves each setting on its own, and empty values count as unset', () => {
    expect(resolveConfig({ env: { ROSET_API_URL: 'http://env:1', ROSET_API_KEY: '', ROSET_STATE_DIR: dir } })).toMatchObject({
      apiUrl: 'http://env:1', apiKey: 'rsk_file',
    });
  });

  it('an explicit state dir beats ROSET_STATE_DIR', () => {
    expect(resolveConfig({ stateDir: dir, env: { ROSET_STATE_DIR: emptyStateDir } })).toMatchObject({ stateDir: dir, apiKey: 'rsk_file', sources: { stateDir: 'option' } });
  });

  it('defaults the state dir by user', () => {
    const expected = process.getuid?.() === 0 ? '/var/lib/roset' : join(homedir(), '.local', 'state', 'roset');
    expect(defaultStateDir({})).toBe(expected);
    expect(defaultStateDir({ ROSET_STATE_DIR: '/x/y' })).toBe('/x/y');
    expect(resolveConfig({ env: {} }).stateDir).toBe(expected);
  });

  it('accepts a bare host:port in the endpoint file', () => {
    const d = mkdtempSync(join(tmpdir(), 'roset-sdk-state-'));
    writeFileSync(join(d, 'endpoint'), '127.0.0.1:9999');
    expect(resolveConfig({ stateDir: d, env: {} }).apiUrl).toBe('http://127.0.0.1:9999');
    rmSync(d, { recursive: true, force: true });
  });

  it('reports an unreadable key file instead of failing silently', () => {
    const d = mkdtempSync(join(tmpdir(), 'roset-sdk-state-'));
    mkdirSync(join(d, 'api-key')); // EISDIR reads like any unreadable file, even for root
    const cfg = resolveConfig({ stateDir: d, env: {} });
    expect(cfg.apiKey).toBeUndefined();
    expect(cfg.warnings.join()).toContain('api-key');
    rmSync(d, { recursive: true, force: true });
  });

  it('the client uses the state files when nothing else is given', async () => {
    const d = mkdtempSync(join(tmpdir(), 'roset-sdk-state-'));
    writeFileSync(join(d, 'endpoint'), `${server.url}\n`);
    writeFileSync(join(d, 'api-key'), 'rsk_from_file');
    chmodSync(join(d, 'api-key'), 0o600);
    server.handler = () => ({ body: { items: [], nextCursor: null } });
    await new RosetClient({ env: { ROSET_STATE_DIR: d } }).listRefs();
    expect(server.requests[0]!.headers.authorization).toBe('Bearer rsk_from_file');
    rmSync(d, { recursive: true, force: true });
  });

  it('withMountId addresses another mount, and undefined means the default mount', async () => {
    server.handler = () => ({ body: { items: [], nextCursor: null } });
    const c = mk({ env: { ROSET_MOUNT_ID: 'mnt_env' } });
    await c.withMountId('mnt_other').listRefs();
    await c.withMountId(undefined).listRefs();
    expect(server.requests[0]!.headers['x-roset-mount-id']).toBe('mnt_other');
    expect(server.requests[1]!.headers['x-roset-mount-id']).toBeUndefined();
    expect(server.requests[1]!.headers.authorization).toBe('Bearer rsk_test');
  });
});
