/**
 * Removing committed folders through a real mount: what rmdir, unlink, `rm -rf` and
 * Python's shutil.rmtree (the call of Hugging Face's checkpoint rotation) do in a
 * committed folder and in a folder inside one (docs/SEMANTICS.md, "Removing committed
 * folders").
 *
 * Invariants checked: a committed folder either stays whole (every file reads back
 * its committed bytes) or leaves the namespace as a whole; its commit stays in
 * history; a folder that a ref points at is refused with EBUSY.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, waitCommit, type TestDaemon } from '../support/daemon.js';

const FILES: Record<string, string> = { 'model.bin': 'weights', 'optimizer.pt': 'moments', 'sub/rng.pt': 'seed', 'sub/deep/x': 'x' };

async function committed(d: TestDaemon, name: string): Promise<string> {
  for (const [rel, body] of Object.entries(FILES)) {
    mkdirSync(d.p(name, ...rel.split('/').slice(0, -1)), { recursive: true });
    writeFileSync(d.p(name, ...rel.split('/')), `${body} of ${name}`);
  }
  const id = (await d.client.resolvePath(`/${name}`))!.id;
  const c = await d.client.commit(id);
  await waitCommit(d.client, c.id);
  return c.id;
}

/** Every file of the folder is there and reads back its committed bytes. */
function whole(d: TestDaemon, name: string): void {
  for (const [rel, body] of Object.entries(FILES)) expect(readFileSync(d.p(name, ...rel.split('/')), 'utf8')).toBe(`${body} of ${name}`);
  expect(readdirSync(d.p(name)).sort()).toEqual(['model.bin', 'optimizer.pt', 'sub']);
}

const errnoOf = (f: () => void): string | undefined => {
  try {
    f();
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
};

const python = (script: string, ...args: string[]) => spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8' });

describe('removing committed folders through the mount', () => {
  let d: TestDaemon;
  beforeAll(async () => { d = await startDaemon(); });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  async function inHistory(commitId: string): Promise<void> {
    expect((await d.client.getCommit(commitId)).status).toBe('completed');
    const all = await d.client.listCommits({ limit: 200 });
    expect(all.items.map((c) => c.id)).toContain(commitId);
  }

  it('refuses unlink and rmdir inside a committed folder (EROFS): nothing leaves it', async () => {
    await committed(d, 'ck-inside');
    expect(errnoOf(() => unlinkSync(d.p('ck-inside', 'model.bin')))).toBe('EROFS');
    expect(errnoOf(() => unlinkSync(d.p('ck-inside', 'sub', 'rng.pt')))).toBe('EROFS');
    expect(errnoOf(() => rmdirSync(d.p('ck-inside', 'sub')))).toBe('EROFS');
    expect(errnoOf(() => rmdirSync(d.p('ck-inside', 'sub', 'deep')))).toBe('EROFS');
    whole(d, 'ck-inside');
  });

  it('rmdir of the committed folder itself soft-deletes it as a whole; its commit stays', async () => {
    const c = await committed(d, 'ck-rmdir');
    rmdirSync(d.p('ck-rmdir'));
    expect(existsSync(d.p('ck-rmdir'))).toBe(false);
    expect(await d.client.resolvePath('/ck-rmdir')).toBeNull();
    await inHistory(c);
    // No ref may move onto the commit of a folder that left the namespace.
    await expect(d.client.updateRef('rmdir-ref', c)).rejects.toMatchObject({ status: 409, rosetCode: 'COMMIT_FOLDER_DELETED' });
    expect(await d.client.getRef('rmdir-ref')).toBeNull();
    // The name is free again.
    mkdirSync(d.p('ck-rmdir'));
    expect(readdirSync(d.p('ck-rmdir'))).toEqual([]);
  });

  it('shutil.rmtree(ignore_errors=True), the Trainer\'s rotation, soft-deletes the folder', async () => {
    const c = await committed(d, 'checkpoint-1');
    const r = python('import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)', d.p('checkpoint-1'));
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(d.p('checkpoint-1'))).toBe(false);
    await inHistory(c);
  });

  it('shutil.rmtree without ignore_errors fails at the first file and leaves the folder whole', async () => {
    await committed(d, 'ck-strict');
    const r = python('import shutil, sys; shutil.rmtree(sys.argv[1])', d.p('ck-strict'));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Read-only file system/);
    whole(d, 'ck-strict');
  });

  it('rm -rf fails (EROFS on each file; it never tries rmdir above a failure) and leaves the folder whole; rmdir then removes it', async () => {
    const c = await committed(d, 'ck-rm');
    const rm = spawnSync('rm', ['-rf', d.p('ck-rm')], { encoding: 'utf8' });
    expect(rm.status).not.toBe(0);
    expect(rm.stderr).toMatch(/Read-only file system/);
    whole(d, 'ck-rm');
    rmdirSync(d.p('ck-rm'));
    expect(existsSync(d.p('ck-rm'))).toBe(false);
    await inHistory(c);
  });

  it('refuses (EBUSY) to remove a folder a ref points at, by rmdir, rm -rf, rmtree or the API; it stays whole', async () => {
    const c = await committed(d, 'ck-ref');
    await d.client.updateRef('latest', c);
    expect(errnoOf(() => rmdirSync(d.p('ck-ref')))).toBe('EBUSY');
    const rm = spawnSync('rm', ['-rf', d.p('ck-ref')], { encoding: 'utf8' });
    expect(rm.status).not.toBe(0);
    const r = python('import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)', d.p('ck-ref'));
    expect(r.status, r.stderr).toBe(0);
    const id = (await d.client.resolvePath('/ck-ref'))!.id;
    await expect(d.client.deleteNode(id)).rejects.toMatchObject({ status: 409, rosetCode: 'REFERENCED_BY_REF' });
    whole(d, 'ck-ref');
    expect((await d.client.getRef('latest'))!.commitId).toBe(c);
    // A staging folder that holds the ref's folder is held too.
    mkdirSync(d.p('runs'));
    const c2 = await committed(d, 'runs/ck');
    await d.client.updateRef('best', c2);
    const runs = (await d.client.resolvePath('/runs'))!.id;
    await expect(d.client.deleteNode(runs)).rejects.toMatchObject({ status: 409, rosetCode: 'REFERENCED_BY_REF' });
    // Once the ref moves on, the old folder may go.
    const c3 = await committed(d, 'ck-next');
    await d.client.updateRef('latest', c3);
    rmdirSync(d.p('ck-ref'));
    expect(existsSync(d.p('ck-ref'))).toBe(false);
    await inHistory(c);
  });

  it('a folder inside a staging folder: rm -rf of the staging parent stops at the committed folder, which stays whole', async () => {
    mkdirSync(d.p('run2'));
    writeFileSync(d.p('run2', 'notes.txt'), 'staging');
    await committed(d, 'run2/ck');
    const rm = spawnSync('rm', ['-rf', d.p('run2')], { encoding: 'utf8' });
    expect(rm.status).not.toBe(0);
    expect(existsSync(d.p('run2', 'notes.txt'))).toBe(false);
    whole(d, 'run2/ck');
  });
});
