/**
 * Commit groups (all-or-nothing at seal) and refs (compare-and-swap, only completed
 * commits, a log of every move), through a real daemon and the CLI.
 */
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../../src/util/sleep.js';
import { removeRoot, startDaemon, stopAll, waitCommit, type TestDaemon } from '../support/daemon.js';

async function folderWith(d: TestDaemon, name: string): Promise<string> {
  mkdirSync(d.p(name), { recursive: true });
  writeFileSync(d.p(name, 'data.bin'), `bytes of ${name}`);
  return (await d.client.resolvePath(`/${name}`))!.id;
}

async function waitGroup(d: TestDaemon, id: string) {
  for (let i = 0; i < 600; i++) {
    const g = await d.client.getCommitGroup(id);
    if (g.status !== 'pending') return g;
    await sleep(50);
  }
  throw new Error('group still pending');
}

/** Waits until a commit has written its manifest: uploaded, its status perhaps still pending. */
async function waitManifest(d: TestDaemon, id: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    try {
      await d.client.getManifest(id);
      return;
    } catch (err) {
      if ((err as { rosetCode?: string }).rosetCode !== 'COMMIT_NOT_COMPLETED') throw err;
    }
    await sleep(50);
  }
  throw new Error(`commit ${id} wrote no manifest`);
}

describe('commit groups', () => {
  let d: TestDaemon;
  beforeAll(async () => { d = await startDaemon({ sealTimeout: 2 }); });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  it('completes no commit before the seal, and all of them at the seal', async () => {
    const group = await d.client.createCommitGroup({ message: 'model + optimizer' });
    const a = await d.client.commit(await folderWith(d, 'g1-model'), { groupId: group.id });
    const b = await d.client.commit(await folderWith(d, 'g1-optim'), { groupId: group.id });
    // Both upload and write their manifests, the step after which a commit outside a
    // group completes: these still must not.
    await Promise.all([a, b].map((c) => waitManifest(d, c.id)));
    for (const c of [a, b]) {
      expect((await d.client.getCommit(c.id)).status).toBe('pending');
      await expect(d.client.updateRef('x', c.id)).rejects.toMatchObject({ status: 409, rosetCode: 'COMMIT_NOT_COMPLETED' });
    }
    await d.client.sealCommitGroup(group.id);
    const sealed = await waitGroup(d, group.id);
    expect(sealed.status).toBe('committed');
    expect(sealed.commitIds.sort()).toEqual([a.id, b.id].sort());
    for (const c of [a, b]) expect((await d.client.getCommit(c.id)).status).toBe('completed');
    expect((await d.client.updateRef('x', a.id)).commitId).toBe(a.id);
  });

  it('fails every commit of the group when one fails', async () => {
    const group = await d.client.createCommitGroup();
    const a = await d.client.commit(await folderWith(d, 'g2-model'), { groupId: group.id });
    const bId = await folderWith(d, 'g2-optim');
    const fd = openSync(d.p('g2-optim', 'held.bin'), 'w');
    const b = await d.client.commit(bId, { groupId: group.id });
    await d.client.sealCommitGroup(group.id);
    const g = await waitGroup(d, group.id);
    closeSync(fd);
    expect(g.status).toBe('failed');
    const [ca, cb] = [await d.client.getCommit(a.id), await d.client.getCommit(b.id)];
    expect(ca.status).toBe('failed');
    expect(cb.status).toBe('failed');
    expect(cb.error?.code).toBe('OPEN_HANDLES');
    expect(ca.error?.code).toBe('GROUP_FAILED');
    // Both folders are back in STAGING.
    expect((await d.client.resolvePath('/g2-model'))!.state).toBe('staging');
    expect((await d.client.resolvePath('/g2-optim'))!.state).toBe('staging');
  });

  it('refuses commits into a sealed group', async () => {
    const group = await d.client.createCommitGroup();
    await d.client.sealCommitGroup(group.id);
    await expect(d.client.commit(await folderWith(d, 'g3'), { groupId: group.id })).rejects.toMatchObject({ status: 409, rosetCode: 'GROUP_NOT_PENDING' });
  });
});

describe('refs', () => {
  let d: TestDaemon;
  beforeAll(async () => { d = await startDaemon({ sealTimeout: 1 }); });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  it('compare-and-swaps, refuses pending and failed commits, and logs every move in order', async () => {
    const ids: string[] = [];
    for (const name of ['r1', 'r2', 'r3']) {
      const c = await d.client.commit(await folderWith(d, name));
      expect((await waitCommit(d.client, c.id)).status).toBe('completed');
      ids.push(c.id);
    }
    expect(d.cli('ref', 'set', 'latest', ids[0]!, '--json').code).toBe(0);
    const set2 = d.cli('ref', 'set', 'latest', ids[1]!, '--expect', ids[0]!, '--json');
    expect(set2.code, set2.stderr).toBe(0);
    // A stale expectation loses.
    const stale = d.cli('ref', 'set', 'latest', ids[2]!, '--expect', ids[0]!, '--json');
    expect(stale.code).not.toBe(0);
    expect(stale.stdout + stale.stderr).toContain('REF_CONFLICT');
    await expect(d.client.updateRef('latest', ids[2]!, { expectedCommitId: ids[0]! })).rejects.toMatchObject({ status: 409, rosetCode: 'REF_CONFLICT' });
    expect((await d.client.getRef('latest'))!.commitId).toBe(ids[1]);

    // A pending commit, then a failed one, can't be pointed at.
    mkdirSync(d.p('r4'));
    const fd = openSync(d.p('r4', 'held.bin'), 'w');
    const pending = await d.client.commit((await d.client.resolvePath('/r4'))!.id);
    await expect(d.client.updateRef('latest', pending.id)).rejects.toMatchObject({ status: 409, rosetCode: 'COMMIT_NOT_COMPLETED' });
    const failed = await waitCommit(d.client, pending.id);
    closeSync(fd);
    expect(failed.status).toBe('failed');
    await expect(d.client.updateRef('latest', failed.id)).rejects.toMatchObject({ status: 409, rosetCode: 'COMMIT_NOT_COMPLETED' });

    // Rollback is just another move.
    expect(d.cli('ref', 'set', 'latest', ids[2]!, '--json').code).toBe(0);
    expect(d.cli('ref', 'set', 'latest', ids[0]!, '--json').code).toBe(0);
    const log = d.cli('ref', 'log', 'latest', '--json');
    expect(log.code, log.stderr).toBe(0);
    const entries = log.json<{ items: Array<{ fromCommitId: string | null; toCommitId: string }> } | Array<{ fromCommitId: string | null; toCommitId: string }>>();
    const moves = Array.isArray(entries) ? entries : entries.items;
    expect(moves.map((e) => [e.fromCommitId, e.toCommitId])).toEqual([
      [null, ids[0]], [ids[0], ids[1]], [ids[1], ids[2]], [ids[2], ids[0]],
    ]);
    expect(d.cli('ref', 'delete', 'latest').code).toBe(0);
    expect(await d.client.getRef('latest')).toBeNull();
  });
});
