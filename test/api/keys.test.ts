/**
 * API keys over `/v1/keys`, on the real server and control plane (in process, no mount
 * needed): a created key works, listings never show a token or a hash, a revoked key
 * is refused from the very next request while every other key still works, names are
 * validated, and revoking is idempotent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashToken } from '../../src/control/service.js';
import { startApi, type InProcessApi } from '../support/api-server.js';

let api: InProcessApi;

async function call(method: string, path: string, key: string | null, body?: unknown): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  const res = await fetch(`${api.url}${path}`, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

beforeAll(async () => {
  api = await startApi();
});
afterAll(async () => {
  await api?.close();
});

describe('/v1/keys', () => {
  it('creates a key whose token works, and shows the token only in that reply', async () => {
    const r = await call('POST', '/v1/keys', api.apiKey, { name: 'node-7' });
    expect(r.status).toBe(201);
    expect(Object.keys(r.body).sort()).toEqual(['createdAt', 'id', 'name', 'revokedAt', 'token']);
    expect(r.body).toMatchObject({ name: 'node-7', revokedAt: null });
    expect(r.body.id).toMatch(/^key_/);
    expect(r.body.token).toMatch(/^rsk_[A-Za-z0-9_-]{32}$/);
    expect(r.body.token).not.toBe(api.apiKey);

    const withNew = await call('GET', '/v1/mounts', r.body.token);
    expect(withNew.status).toBe(200);
    expect(withNew.body.items.map((m: { name: string }) => m.name)).toEqual(['default']);

    // The list shows the key, never its token or hash.
    const list = await call('GET', '/v1/keys', r.body.token);
    expect(list.status).toBe(200);
    expect(list.body.nextCursor).toBeNull();
    const text = JSON.stringify(list.body);
    expect(text).not.toContain(r.body.token);
    expect(text).not.toContain(api.apiKey);
    expect(text).not.toContain(hashToken(r.body.token));
    expect(text).not.toContain(hashToken(api.apiKey));
    for (const k of list.body.items) expect(Object.keys(k).sort()).toEqual(['createdAt', 'id', 'name', 'revokedAt']);
    expect(list.body.items.map((k: { name: string }) => k.name)).toEqual(['default', 'node-7']);
  });

  it('refuses a revoked key from the very next request, saying so, while other keys work', async () => {
    const alice = (await call('POST', '/v1/keys', api.apiKey, { name: 'alice' })).body;
    const bob = (await call('POST', '/v1/keys', api.apiKey, { name: 'bob' })).body;
    expect((await call('GET', '/v1/refs', alice.token)).status).toBe(200);

    // Alice revokes Bob's key; Bob's next request is refused.
    const revoked = await call('DELETE', `/v1/keys/${bob.id}`, alice.token);
    expect(revoked.status).toBe(200);
    expect(revoked.body).toEqual({ id: bob.id, name: 'bob', createdAt: bob.createdAt, revokedAt: expect.any(String) });
    expect(Date.parse(revoked.body.revokedAt)).not.toBeNaN();

    const refused = await call('GET', '/v1/refs', bob.token);
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('UNAUTHORIZED');
    expect(refused.body.error.message).toMatch(/revoked/);
    expect(refused.body.error.message).toContain(bob.id);
    expect(refused.body.error.message).not.toContain(bob.token);
    // Every route, the key routes included.
    expect((await call('POST', '/v1/keys', bob.token, { name: 'bob-again' })).status).toBe(401);
    expect((await call('DELETE', `/v1/keys/${alice.id}`, bob.token)).status).toBe(401);

    // The others are untouched.
    expect((await call('GET', '/v1/refs', alice.token)).status).toBe(200);
    expect((await call('GET', '/v1/refs', api.apiKey)).status).toBe(200);
    // A wrong key is still told apart from a revoked one.
    const wrong = await call('GET', '/v1/refs', `${bob.token}x`);
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.message).toBe('Invalid API key');

    // Revoking again changes nothing (idempotent), and the key stays listed as revoked.
    const again = await call('DELETE', `/v1/keys/${bob.id}`, alice.token);
    expect(again.status).toBe(200);
    expect(again.body.revokedAt).toBe(revoked.body.revokedAt);
    const listed = (await call('GET', '/v1/keys', alice.token)).body.items.find((k: { id: string }) => k.id === bob.id);
    expect(listed.revokedAt).toBe(revoked.body.revokedAt);
    expect(await api.cp.verifyApiKey(bob.token)).toBeNull();
    expect((await api.cp.lookupApiKey(bob.token))?.id).toBe(bob.id);
  });

  it('lets a key revoke itself: its own next request is refused', async () => {
    const k = (await call('POST', '/v1/keys', api.apiKey, { name: 'short-lived' })).body;
    expect((await call('DELETE', `/v1/keys/${k.id}`, k.token)).status).toBe(200);
    expect((await call('GET', '/v1/keys', k.token)).status).toBe(401);
  });

  it('answers KEY_NOT_FOUND for an unknown id, and validates names', async () => {
    const missing = await call('DELETE', '/v1/keys/key_nope', api.apiKey);
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('KEY_NOT_FOUND');

    const bad: unknown[] = ['', 'x'.repeat(129), 'nul\u0000byte', 'new\nline', 'tab\there', 'del\u007f', 'c1\u0085', 'half\ud800', 42, null, ['a']];
    for (const name of bad) {
      const r = await call('POST', '/v1/keys', api.apiKey, { name });
      expect({ name, status: r.status, code: r.body.error?.code }).toEqual({ name, status: 400, code: 'INVALID_KEY_NAME' });
    }
    expect((await call('POST', '/v1/keys', api.apiKey, {})).body.error.code).toBe('INVALID_KEY_NAME');
    expect((await call('POST', '/v1/keys', api.apiKey, '{"name": ')).body.error.code).toBe('INVALID_JSON');
    for (const name of ['x'.repeat(128), 'é'.repeat(128), '🔑'.repeat(128), 'Ada Lovelace (laptop)', ' spaced ']) {
      const r = await call('POST', '/v1/keys', api.apiKey, { name });
      expect(r.status, name).toBe(201);
      expect(r.body.name).toBe(name);
    }
    // Nothing without a key.
    expect((await call('GET', '/v1/keys', null)).status).toBe(401);
    expect((await call('POST', '/v1/keys', null, { name: 'x' })).status).toBe(401);
  });

  it('pages the list with a cursor', async () => {
    const all = (await call('GET', '/v1/keys?limit=1000', api.apiKey)).body.items as Array<{ id: string }>;
    expect(all.length).toBeGreaterThan(5);
    const seen: string[] = [];
    let cursor: string | null = '';
    for (let i = 0; cursor !== null && i < 100; i++) {
      const r: { status: number; body: any } = await call('GET', `/v1/keys?limit=2${cursor ? `&cursor=${cursor}` : ''}`, api.apiKey);
      expect(r.status).toBe(200);
      expect(r.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...r.body.items.map((k: { id: string }) => k.id));
      cursor = r.body.nextCursor;
    }
    expect(seen).toEqual(all.map((k) => k.id));
    expect((await call('GET', '/v1/keys?cursor=abc', api.apiKey)).body.error.code).toBe('BAD_REQUEST');
    expect((await call('GET', '/v1/keys?limit=0', api.apiKey)).body.error.code).toBe('BAD_REQUEST');
  });
});
