/**
 * The node routes keep the mount's rules: nothing inside a committed folder is created
 * or deleted through the API, files are never created through it (only through a
 * mount), and the quick start's `createFolder('/checkpoints', 'step-1000')` works on a
 * fresh mount, creating the missing parents as `mkdir -p` would.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';
import { errnoOf } from '../support/files.js';

type Call = (method: string, url: string, body?: object) => Promise<{ status: number; body: any }>;

function caller(d: TestDaemon): Call {
  return async (method, url, body) => {
    const res = await fetch(`${d.endpoint}${url}`, {
      method,
      headers: { authorization: `Bearer ${d.apiKey}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
}

describe('node routes inside committed folders, and files', () => {
  let d: TestDaemon;
  let call: Call;
  beforeAll(async () => {
    d = await startDaemon();
    call = caller(d);
  });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  it('refuses to delete a file of, or create a folder in, a committed folder with 409 COMMITTED', async () => {
    mkdirSync(d.p('done', 'sub'), { recursive: true });
    writeFileSync(d.p('done', 'model.pt'), 'weights');
    writeFileSync(d.p('done', 'sub', 'deep.bin'), 'deep');
    const r = d.cli('commit', d.p('done'), '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.json().status).toBe('completed');

    for (const rel of ['/done/model.pt', '/done/sub/deep.bin', '/done/sub']) {
      const node = (await d.client.resolvePath(rel))!;
      const del = await call('DELETE', `/v1/nodes/${node.id}`);
      expect(del.status, rel).toBe(409);
      expect(del.body.error.code, rel).toBe('COMMITTED');
      expect((await d.client.getNode(node.id)).deletedAt, rel).toBeNull();
      expect((await d.client.resolvePath(rel))?.id, rel).toBe(node.id);
    }
    expect(readFileSync(d.p('done', 'model.pt'), 'utf8')).toBe('weights');
    expect(readFileSync(d.p('done', 'sub', 'deep.bin'), 'utf8')).toBe('deep');

    const mk = await call('POST', '/v1/nodes', { parentPath: '/done', name: 'extra', type: 'folder' });
    expect(mk.status).toBe(409);
    expect(mk.body.error.code).toBe('COMMITTED');
    expect(await d.client.resolvePath('/done/extra')).toBeNull();

    // The committed folder itself may still go to the trash as a whole.
    const folder = (await d.client.resolvePath('/done'))!;
    const gone = await call('DELETE', `/v1/nodes/${folder.id}`);
    expect(gone.status).toBe(200);
    expect(gone.body.deletedAt).not.toBeNull();
  });

  it('refuses POST /v1/nodes with type "file" (400 FILE_CREATE_NOT_SUPPORTED) and creates nothing', async () => {
    mkdirSync(d.p('staged'));
    for (const body of [
      { parentPath: '/staged', name: 'api.bin', type: 'file' },
      { parentId: (await d.client.resolvePath('/staged'))!.id, name: 'api.bin', type: 'file' },
      { parentPath: '/', name: 'top.bin', type: 'file' },
    ]) {
      const res = await call('POST', '/v1/nodes', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('FILE_CREATE_NOT_SUPPORTED');
      expect(res.body.error.message).toMatch(/mount/i);
    }
    expect(await d.client.resolvePath('/staged/api.bin')).toBeNull();
    expect(await d.client.resolvePath('/top.bin')).toBeNull();
    expect(readdirSync(d.p('staged'))).toEqual([]);
    expect(errnoOf(() => statSync(d.p('top.bin')))).toBe('ENOENT');
    // The same file, created through the mount, is fine.
    writeFileSync(d.p('staged', 'api.bin'), 'through the mount');
    expect((await d.client.resolvePath('/staged/api.bin'))?.type).toBe('file');
  });
});

describe('the quick start on a fresh mount', () => {
  let d: TestDaemon;
  beforeAll(async () => { d = await startDaemon(); });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  it("createFolder('/checkpoints', 'step-1000') creates /checkpoints too; the same leaf again is NODE_EXISTS", async () => {
    expect(await d.client.resolvePath('/checkpoints')).toBeNull();
    const folder = await d.client.createFolder('/checkpoints', 'step-1000');
    expect(folder).toMatchObject({ path: '/checkpoints/step-1000', name: 'step-1000', type: 'folder', state: 'staging' });
    const parent = (await d.client.resolvePath('/checkpoints'))!;
    expect(parent).toMatchObject({ type: 'folder', state: 'staging' });
    expect(folder.parentId).toBe(parent.id);
    expect(statSync(d.p('checkpoints', 'step-1000')).isDirectory()).toBe(true);
    expect(readdirSync(d.p('checkpoints'))).toEqual(['step-1000']);

    await expect(d.client.createFolder('/checkpoints', 'step-1000')).rejects.toMatchObject({ status: 409, wireCode: 'NODE_EXISTS' });
    // An existing parent is used as it is, as `mkdir -p` does.
    expect((await d.client.createFolder('/checkpoints', 'step-2000')).parentId).toBe(parent.id);

    // Several missing levels at once.
    const deep = await d.client.createFolder('/runs/a/b', 'step-1');
    expect(deep.path).toBe('/runs/a/b/step-1');
    for (const p of ['/runs', '/runs/a', '/runs/a/b']) expect((await d.client.resolvePath(p))?.type, p).toBe('folder');

    // The quick start goes on: write through the mount, commit.
    writeFileSync(d.p('checkpoints', 'step-1000', 'model.pt'), 'weights');
    const c = await d.client.waitForCommit((await d.client.commit(folder.id, { message: 'Training step 1000' })).id);
    expect(c.stats.files).toBe(1);
  });
});
