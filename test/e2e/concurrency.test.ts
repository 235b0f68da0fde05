/**
 * Concurrency: several writer processes fill different folders and commit at once;
 * two commits of the same folder race and exactly one wins (the other 409);
 * compare-and-swap moves of a ref from the same commit, sent at once by separate
 * processes: exactly one wins, the others get REF_CONFLICT, and the ref log records
 * one move.
 */
import { mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, waitCommit, type TestDaemon } from '../support/daemon.js';
import { sha256Of } from '../support/files.js';
import { raceRefMoves, type RaceOutcome } from '../support/ref-racer.js';
import { startWriter } from '../support/writer.js';

describe('concurrency', () => {
  let d: TestDaemon;
  beforeAll(async () => { d = await startDaemon(); });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  it('commits folders written by several processes at once, each with its own bytes', async () => {
    const names = ['w1', 'w2', 'w3', 'w4'];
    for (const n of names) mkdirSync(d.p(n));
    const writers = names.map((n) => startWriter(d.p(n, 'shard.bin'), 6 << 20, 256 << 10));
    expect(await Promise.all(writers.map((w) => w.exited))).toEqual([0, 0, 0, 0]);
    const nodes = await Promise.all(names.map((n) => d.client.resolvePath(`/${n}`)));
    const commits = await Promise.all(nodes.map((n) => d.client.commit(n!.id)));
    const done = await Promise.all(commits.map((c) => waitCommit(d.client, c.id)));
    for (const [i, c] of done.entries()) {
      expect(c.status).toBe('completed');
      const m = await d.client.getManifest(c.id);
      expect(m.files[0]!.sha256).toBe(await sha256Of(d.p(names[i]!, 'shard.bin')));
    }
  });

  it('lets exactly one of two simultaneous commits of a folder win; the other gets 409', async () => {
    mkdirSync(d.p('race'));
    const w = startWriter(d.p('race', 'f.bin'), 1 << 20);
    await w.exited;
    const id = (await d.client.resolvePath('/race'))!.id;
    const results = await Promise.allSettled([d.client.commit(id), d.client.commit(id), d.client.commit(id)]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won.length).toBe(1);
    for (const l of lost) expect(l.reason).toMatchObject({ status: 409 });
    expect((await waitCommit(d.client, (won[0] as PromiseFulfilledResult<{ id: string }>).value.id)).status).toBe('completed');
  });

  it('lets exactly one of several processes racing to compare-and-swap a ref win', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      mkdirSync(d.p(`cas${i}`));
      await startWriter(d.p(`cas${i}`, 'f'), 1000, 1000).exited;
      ids.push((await waitCommit(d.client, (await d.client.commit((await d.client.resolvePath(`/cas${i}`))!.id)).id)).id);
    }
    await d.client.updateRef('cas', ids[0]!);
    const outcomes = await raceRefMoves(d, 'cas', ids[0]!, ids.slice(1));
    const won = outcomes.filter((o): o is Extract<RaceOutcome, { won: true }> => o.won);
    expect(won).toHaveLength(1);
    const winner = won[0]!.commitId;
    expect(ids.slice(1)).toContain(winner);
    for (const o of outcomes.filter((x) => !x.won)) expect(o).toMatchObject({ status: 409, code: 'REF_CONFLICT' });
    expect((await d.client.getRef('cas'))!.commitId).toBe(winner);
    // The creation, then exactly one move: the winner's.
    const log = (await d.client.getRefLog('cas')).items;
    expect(log.map((e) => [e.fromCommitId, e.toCommitId])).toEqual([[null, ids[0]], [ids[0], winner]]);
  });
});
