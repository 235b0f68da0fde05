/**
 * The crash matrix (design §8, issue: crash and fault safety). SIGKILL, for real, of
 * the writer or of the daemon at each point of a checkpoint's life; then a restart.
 * Afterwards `latest` resolves to a complete commit whose files read back with the
 * manifest's sha256, every commit has left `pending`, and no ref points at a partial
 * folder. Exact points inside a commit are reached with failpoints
 * (src/util/failpoints.ts): the daemon pauses there and the test kills it.
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { RosetClient } from '../../src/sdk/index.js';
import { sleep } from '../../src/util/sleep.js';
import { removeRoot, startDaemon, stopAll, tempRoot, waitCommit, type TestDaemon } from '../support/daemon.js';
import { sha256Of, writeRandom } from '../support/files.js';
import { startWriter } from '../support/writer.js';

async function waitForLog(d: TestDaemon, text: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!d.logs().includes(text)) {
    if (Date.now() > end) throw new Error(`timed out waiting for "${text}" in the daemon log:\n${d.logs()}`);
    await sleep(20);
  }
}

/** Commits a first checkpoint and points `latest` at it: what every crash must preserve. */
async function baseline(d: TestDaemon): Promise<string> {
  mkdirSync(d.p('ck', 'step-1'), { recursive: true });
  writeRandom(d.p('ck', 'step-1', 'model.pt'), 4 << 20);
  writeFileSync(d.p('ck', 'step-1', 'meta.json'), '{"step":1}');
  const r = d.cli('commit', d.p('ck', 'step-1'), '--ref', 'latest', '--json');
  expect(r.code, r.stderr).toBe(0);
  return r.json().id;
}

/** The safety contract after any crash and restart. */
async function assertSafe(d: TestDaemon): Promise<void> {
  const c: RosetClient = d.client;
  // Nothing stays pending once the daemon has recovered (give resumed uploads a moment).
  for (const p of (await c.listCommits({ status: 'pending' })).items) {
    if (p.groupId) continue;
    expect((await waitCommit(c, p.id)).status).not.toBe('pending');
  }
  const refs = (await c.listRefs()).items;
  expect(refs.length).toBeGreaterThan(0);
  for (const ref of refs) {
    expect(ref.commit.status).toBe('completed');
    const m = await c.getManifest(ref.commitId);
    for (const f of m.files) expect(await sha256Of(path.join(d.mnt, m.path, f.path)), `${m.path}/${f.path}`).toBe(f.sha256);
  }
}

describe('crash matrix', () => {
  let root: string | undefined;
  afterEach(async () => {
    await stopAll();
    if (root) removeRoot(root);
    root = undefined;
  });

  it('writer killed mid-write: latest keeps the previous checkpoint; the partial folder is never referenced', async () => {
    root = tempRoot();
    const d = await startDaemon({ root });
    const c1 = await baseline(d);
    mkdirSync(d.p('ck', 'step-2'));
    const w = startWriter(d.p('ck', 'step-2', 'model.pt'));
    await w.reached('writing');
    w.proc.kill('SIGKILL');
    await w.exited;
    await assertSafe(d);
    expect((await d.client.getRef('latest'))!.commitId).toBe(c1);
    expect((await d.client.resolvePath('/ck/step-2'))!.state).toBe('staging');
  });

  it('daemon killed mid-write: staged bytes come back, latest is intact', async () => {
    root = tempRoot();
    let d = await startDaemon({ root });
    const c1 = await baseline(d);
    mkdirSync(d.p('ck', 'step-2'));
    const w = startWriter(d.p('ck', 'step-2', 'model.pt'));
    await w.reached('writing');
    await d.kill9();
    await w.exited;
    d = await startDaemon({ root });
    await assertSafe(d);
    expect((await d.client.getRef('latest'))!.commitId).toBe(c1);
    expect(statSync(d.p('ck', 'step-2', 'model.pt')).size).toBeGreaterThanOrEqual(1 << 20);
    expect(d.logs()).toContain('were open for writing when the daemon stopped');
  });

  it('daemon killed after close, before commit: the files are back and commit normally', async () => {
    root = tempRoot();
    let d = await startDaemon({ root });
    await baseline(d);
    mkdirSync(d.p('ck', 'step-2'));
    const sha = writeRandom(d.p('ck', 'step-2', 'model.pt'), 3 << 20);
    await d.kill9();
    d = await startDaemon({ root });
    expect(await sha256Of(d.p('ck', 'step-2', 'model.pt'))).toBe(sha);
    const r = d.cli('commit', d.p('ck', 'step-2'), '--ref', 'latest', '--json');
    expect(r.code, r.stderr).toBe(0);
    await assertSafe(d);
    expect((await d.client.getRef('latest'))!.commit.path).toBe('/ck/step-2');
  });

  it('daemon killed while a seal waits on an open file: the commit fails INTERRUPTED, the folder is STAGING', async () => {
    root = tempRoot();
    let d = await startDaemon({ root });
    const c1 = await baseline(d);
    mkdirSync(d.p('ck', 'step-2'));
    const w = startWriter(d.p('ck', 'step-2', 'model.pt'));
    await w.reached('writing');
    const pending = await d.client.commit((await d.client.resolvePath('/ck/step-2'))!.id);
    await d.kill9();
    await w.exited;
    d = await startDaemon({ root });
    const c = await d.client.getCommit(pending.id);
    expect(c.status).toBe('failed');
    expect(c.error?.code).toBe('INTERRUPTED');
    expect((await d.client.resolvePath('/ck/step-2'))!.state).toBe('staging');
    expect((await d.client.getRef('latest'))!.commitId).toBe(c1);
    await assertSafe(d);
  });

  for (const point of ['commit.after-snapshot', 'upload.after-first-object', 'commit.after-manifest']) {
    it(`daemon killed at ${point}: the commit completes after restart, latest never saw it partial`, async () => {
      root = tempRoot();
      let d = await startDaemon({ root });
      const c1 = await baseline(d);
      await d.stop();
      d = await startDaemon({ root, env: { ROSET_FAILPOINTS: point } });
      mkdirSync(d.p('ck', 'step-2'));
      const shas = new Map([['a.bin', writeRandom(d.p('ck', 'step-2', 'a.bin'), 2 << 20)], ['b.bin', writeRandom(d.p('ck', 'step-2', 'b.bin'), 2 << 20)]]);
      const pending = await d.client.commit((await d.client.resolvePath('/ck/step-2'))!.id);
      await waitForLog(d, `"failpoint":"${point}"`);
      expect((await d.client.getRef('latest'))!.commitId).toBe(c1);
      await d.kill9();
      d = await startDaemon({ root });
      const done = await waitCommit(d.client, pending.id);
      expect(done.status, JSON.stringify(done.error)).toBe('completed');
      const m = await d.client.getManifest(pending.id);
      expect(new Map(m.files.map((f) => [f.path, f.sha256]))).toEqual(shas);
      expect((await d.client.getRef('latest'))!.commitId).toBe(c1);
      await assertSafe(d);
    });
  }

  it('daemon killed mid-group-seal: the whole group completes after restart, never half of it', async () => {
    root = tempRoot();
    let d = await startDaemon({ root });
    await baseline(d);
    await d.stop();
    d = await startDaemon({ root, env: { ROSET_FAILPOINTS: 'group.after-record' } });
    const ids: string[] = [];
    const group = await d.client.createCommitGroup({ message: 'model+optim' });
    for (const name of ['model', 'optim']) {
      mkdirSync(d.p('ck', 'g', name), { recursive: true });
      writeRandom(d.p('ck', 'g', name, 'state.bin'), 1 << 20);
      ids.push((await d.client.commit((await d.client.resolvePath(`/ck/g/${name}`))!.id, { groupId: group.id })).id);
    }
    await d.client.sealCommitGroup(group.id);
    await waitForLog(d, '"failpoint":"group.after-record"');
    for (const id of ids) expect((await d.client.getCommit(id)).status).toBe('pending');
    await d.kill9();
    d = await startDaemon({ root });
    const g = await d.client.getCommitGroup(group.id);
    expect(g.status).toBe('committed');
    for (const id of ids) expect((await d.client.getCommit(id)).status).toBe('completed');
    await assertSafe(d);
    expect(existsSync(path.join(d.stateDir, 'store', 'groups', `${group.id}.json`))).toBe(true);
  });
});
