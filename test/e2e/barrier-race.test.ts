/**
 * `truncate(path)` and `utimes(path)` racing a commit of their folder, through a real
 * mount: each either lands before the seal (and the commit holds it) or is refused
 * with EROFS (and the commit holds the bytes and times from before); the commit always
 * completes, never with an internal error. Before path operations counted as writers,
 * a seal could snapshot between the barrier check and the change, and the commit then
 * failed with INTERNAL ("changed after the seal").
 *
 * The two sides are started together on every round, with no delay between them, so
 * the interleaving is whatever the kernel and the daemon make of it: the test fails
 * whenever the race is lost, and more rounds (ROSET_RACE_ROUNDS) search harder. Through
 * a mount the old window (between a check and a syscall) is rarely hit: 40 rounds
 * passed on 0.1.0. The interleaving that loses it every time is driven explicitly in
 * the core (test/core/model.property.test.ts); this test proves the two outcomes a user
 * can see through the mount, on both bindings.
 */
import { mkdirSync, promises as fsp, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, waitCommit, type TestDaemon } from '../support/daemon.js';

const ROUNDS = Number(process.env.ROSET_RACE_ROUNDS ?? 20);
const SIZE = 64 * 1024;

describe('path operations racing a seal', () => {
  let d: TestDaemon;

  beforeAll(async () => {
    d = await startDaemon({});
    mkdirSync(d.p('race'));
  });
  afterAll(async () => {
    await stopAll();
    if (d) removeRoot(d.root);
  });

  const round = async (i: number, op: 'truncate' | 'utimes'): Promise<void> => {
    const dir = `race/${op}-${i}`;
    mkdirSync(d.p(dir));
    writeFileSync(d.p(dir, 'f.bin'), Buffer.alloc(SIZE, 7));
    const id = (await d.client.resolvePath(`/${dir}`))!.id;
    const when = new Date(1_500_000_000_000 + i * 1000);
    const [change, started] = await Promise.allSettled([
      op === 'truncate' ? fsp.truncate(d.p(dir, 'f.bin'), 1000) : fsp.utimes(d.p(dir, 'f.bin'), when, when),
      d.client.commit(id),
    ]);
    expect(started.status).toBe('fulfilled');
    const c = await waitCommit(d.client, (started as PromiseFulfilledResult<{ id: string }>).value.id);
    expect(c.status, JSON.stringify(c.error)).toBe('completed');
    const [file] = (await d.client.getManifest(c.id)).files;
    if (change.status === 'rejected') {
      expect((change.reason as NodeJS.ErrnoException).code).toBe('EROFS');
      expect(file!.size).toBe(SIZE);
      if (op === 'utimes') expect(file!.mtime).not.toBe(when.getTime());
    } else if (op === 'truncate') {
      expect(file!.size).toBe(1000);
    } else {
      expect(file!.mtime).toBe(when.getTime());
    }
  };

  it(`truncate(path) lands before the seal or gets EROFS, ${ROUNDS} rounds`, async () => {
    for (let i = 0; i < ROUNDS; i++) await round(i, 'truncate');
  });

  it(`utimes(path) lands before the seal or gets EROFS, ${ROUNDS} rounds`, async () => {
    for (let i = 0; i < ROUNDS; i++) await round(i, 'utimes');
  });
});
