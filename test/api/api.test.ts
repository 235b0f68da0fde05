/**
 * The `/v1` API against a real daemon: authentication, hostile input (every case a 4xx
 * with a code, never a 500), and the OpenAPI document listing exactly the served routes.
 */
import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTES } from '../../src/api/routes.js';
import { sleep } from '../../src/util/sleep.js';
import { REPO, removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';

describe('/v1 API', () => {
  let d: TestDaemon;
  let call: (method: string, url: string, body?: string | object, headers?: Record<string, string>) => Promise<{ status: number; body: any }>;

  beforeAll(async () => {
    d = await startDaemon();
    call = async (method, url, body, headers = {}) => {
      const res = await fetch(`${d.endpoint}${url}`, {
        method,
        headers: { authorization: `Bearer ${d.apiKey}`, 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    };
  });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  it('keeps the API key in a 0600 file, and answers 401 to a missing or wrong key', async () => {
    expect(statSync(path.join(d.stateDir, 'api-key')).mode & 0o777).toBe(0o600);
    expect(d.apiKey).toMatch(/^rsk_/);
    const noKey = await fetch(`${d.endpoint}/v1/refs`);
    expect(noKey.status).toBe(401);
    expect((await noKey.json()).error.code).toBe('UNAUTHORIZED');
    const wrong = await call('GET', '/v1/refs', undefined, { authorization: `Bearer ${d.apiKey}x` });
    expect(wrong.status).toBe(401);
    const health = await fetch(`${d.endpoint}/health`);
    expect(health.status).toBe(200);
    // The key never reaches the logs.
    expect(d.logs()).not.toContain(d.apiKey);
  });

  it('answers bad input with a 4xx and a code, never a 500', async () => {
    const cases: Array<[string, string, string | object | undefined, number, string]> = [
      ['POST', '/v1/nodes', '{"parentPath": "/", "name": ', 400, 'INVALID_JSON'],
      ['POST', '/v1/nodes', '[1,2]', 400, 'BAD_REQUEST'],
      ['POST', '/v1/nodes', { parentPath: '/../etc', name: 'x', type: 'folder' }, 400, 'INVALID_PATH'],
      ['POST', '/v1/nodes', { parentPath: '/', name: '..', type: 'folder' }, 400, 'INVALID_PATH'],
      ['POST', '/v1/nodes', { parentPath: '/', name: 'a/b', type: 'folder' }, 400, 'INVALID_PATH'],
      ['POST', '/v1/nodes', { parentPath: '/', name: 'nul\u0000byte', type: 'folder' }, 400, 'INVALID_PATH'],
      ['POST', '/v1/nodes', { parentPath: '/', name: 'x'.repeat(256), type: 'folder' }, 400, 'NAME_TOO_LONG'],
      ['POST', '/v1/nodes', { parentPath: '/', name: 'é'.repeat(128), type: 'folder' }, 400, 'NAME_TOO_LONG'],
      ['POST', '/v1/nodes', { parentPath: '/', name: 'x', type: 'symlink' }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/nodes', { parentId: 'node_missing', name: 'x', type: 'folder' }, 404, 'NODE_NOT_FOUND'],
      ['POST', '/v1/nodes', { parentPath: '/', name: 'f', type: 'file' }, 400, 'FILE_CREATE_NOT_SUPPORTED'],
      ['POST', '/v1/resolve', { paths: ['/a/../b'] }, 400, 'INVALID_PATH'],
      ['POST', '/v1/resolve', { paths: ['relative'] }, 400, 'INVALID_PATH'],
      ['POST', '/v1/resolve', { paths: 'nope' }, 400, 'BAD_REQUEST'],
      ['GET', '/v1/nodes/node_nope', undefined, 404, 'NODE_NOT_FOUND'],
      ['GET', '/v1/nodes/%00', undefined, 400, 'BAD_REQUEST'],
      ['GET', '/v1/nodes/%E0%A4%A', undefined, 400, 'BAD_REQUEST'],
      ['POST', '/v1/nodes/node_nope/commit', {}, 404, 'NODE_NOT_FOUND'],
      ['GET', '/v1/commits/cmt_nope', undefined, 404, 'COMMIT_NOT_FOUND'],
      ['GET', '/v1/commits?limit=0', undefined, 400, 'BAD_REQUEST'],
      ['GET', '/v1/commits?status=weird', undefined, 400, 'BAD_REQUEST'],
      ['GET', '/v1/commits?cursor=abc', undefined, 400, 'BAD_REQUEST'],
      ['GET', '/v1/refs/nope', undefined, 404, 'REF_NOT_FOUND'],
      ['GET', '/v1/refs/.hidden', undefined, 400, 'INVALID_REF_NAME'],
      ['PUT', '/v1/refs/latest', { commitId: 'cmt_nope' }, 404, 'COMMIT_NOT_FOUND'],
      ['PUT', '/v1/refs/latest', { commitId: 42 }, 400, 'BAD_REQUEST'],
      ['PUT', '/v1/refs/latest', 'not json', 400, 'INVALID_JSON'],
      ['GET', '/v1/commit-groups/grp_nope', undefined, 404, 'GROUP_NOT_FOUND'],
      ['POST', '/v1/commit-groups/grp_nope/seal', undefined, 404, 'GROUP_NOT_FOUND'],
      ['GET', '/v1/nope', undefined, 404, 'ROUTE_NOT_FOUND'],
      ['PATCH', '/v1/refs/latest', {}, 405, 'METHOD_NOT_ALLOWED'],
      ['GET', '/v1/refs', undefined, 404, 'MOUNT_NOT_FOUND'],
    ];
    for (const [method, url, body, status, code] of cases) {
      const headers: Record<string, string> = code === 'MOUNT_NOT_FOUND' ? { 'x-roset-mount-id': 'mnt_nope' } : {};
      const r = await call(method, url, body, headers);
      expect({ method, url, status: r.status, code: r.body?.error?.code }).toEqual({ method, url, status, code });
      expect(typeof r.body.error.message).toBe('string');
    }
    const huge = await call('POST', '/v1/nodes', JSON.stringify({ name: 'x'.repeat(2 << 20) }));
    expect([413, 400]).toContain(huge.status);
    expect((await fetch(`${d.endpoint}/health`)).status).toBe(200);
    expect(d.logs()).not.toContain('"level":50');
  });

  it('serves exactly the routes in the OpenAPI document', () => {
    const doc = JSON.parse(readFileSync(path.join(REPO, 'openapi', 'roset-v1.json'), 'utf8')) as { paths: Record<string, Record<string, unknown>> };
    const methods = new Set(['get', 'put', 'post', 'delete', 'patch', 'head', 'options']);
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).filter((m) => methods.has(m)).map((m) => `${m.toUpperCase()} ${p}`)).sort();
    const served = ROUTES.map((r) => `${r.method} ${r.path}`).sort();
    expect(documented).toEqual(served);
  });

  it('creates folders through the API that appear in the mount, and soft-deletes them', async () => {
    const r = await call('POST', '/v1/nodes', { parentPath: '/', name: 'from-api', type: 'folder' });
    expect(r.status).toBe(201);
    expect(statSync(d.p('from-api')).isDirectory()).toBe(true);
    const dup = await call('POST', '/v1/nodes', { parentPath: '/', name: 'from-api', type: 'folder' });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe('NODE_EXISTS');
    const del = await call('DELETE', `/v1/nodes/${r.body.id}`);
    expect(del.status).toBe(200);
    expect(del.body.deletedAt).not.toBeNull();
    // The kernel may keep the entry for its 1 s entry timeout.
    let gone = false;
    for (let i = 0; i < 40 && !gone; i++) {
      try { statSync(d.p('from-api')); await sleep(100); } catch { gone = true; }
    }
    expect(gone).toBe(true);
  });
});
