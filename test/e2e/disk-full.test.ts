/**
 * A full cache disk (a small tmpfs as the cache directory): the writer gets ENOSPC
 * (from write(2), or from fsync(2) under the native binding's writeback cache);
 * other folders, committed data and the staging index stay intact; writing resumes
 * once space is freed, and a restart finds everything.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, statfsSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sleep } from '../../src/util/sleep.js';
import { removeRoot, startDaemon, stopAll, tempRoot } from '../support/daemon.js';
import { errnoOf, sha256, sha256Of } from '../support/files.js';

describe('full cache disk', () => {
  const root = tempRoot();
  const cacheDir = path.join(root, 'small-cache');
  afterAll(async () => {
    await stopAll();
    spawnSync('umount', ['-l', cacheDir]);
    removeRoot(root);
  });

  it('gives the writer ENOSPC and breaks nothing else', async () => {
    mkdirSync(cacheDir, { recursive: true });
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', cacheDir], { encoding: 'utf8' });
    expect(m.status, `mounting a tmpfs for the cache needs root: ${m.stderr}`).toBe(0);
    let d = await startDaemon({ root, cacheDir });

    mkdirSync(d.p('a'));
    const model = randomBytes(8 << 20);
    writeFileSync(d.p('a', 'model.pt'), model);
    const r = d.cli('commit', d.p('a'), '--ref', 'latest', '--json');
    expect(r.code, r.stderr).toBe(0);
    mkdirSync(d.p('other'));
    writeFileSync(d.p('other', 'notes.txt'), 'staged, not committed');

    // Fill the disk from one writer.
    mkdirSync(d.p('b'));
    const fd = openSync(d.p('b', 'huge.bin'), 'w');
    const chunk = randomBytes(1 << 20);
    let code: string | null = null;
    for (let i = 0; i < 64 && !code; i++) code = errnoOf(() => writeSync(fd, chunk));
    // Under the native binding's writeback cache, write(2) returns once the kernel has
    // the bytes, and the failure of writing them back comes from fsync(2) (or close(2)).
    code ??= errnoOf(() => fsyncSync(fd));
    const closed = errnoOf(() => closeSync(fd));
    expect(code ?? closed).toBe('ENOSPC');

    // Everything else is intact and readable.
    expect(sha256(readFileSync(d.p('a', 'model.pt')))).toBe(sha256(model));
    expect(readFileSync(d.p('other', 'notes.txt'), 'utf8')).toBe('staged, not committed');
    expect((await d.client.getRef('latest'))!.commit.status).toBe('completed');

    // Free the space: writing and committing work again. The daemon holds the file's
    // blocks until the kernel's RELEASE of the closed descriptor reaches it, a moment
    // after close(2) returned: wait until the cache disk shows them free.
    unlinkSync(d.p('b', 'huge.bin'));
    for (const end = Date.now() + 30_000; statfsSync(cacheDir).bavail * statfsSync(cacheDir).bsize < (16 << 20);) {
      if (Date.now() > end) throw new Error('the blocks of the unlinked file were never freed');
      await sleep(10);
    }
    writeFileSync(d.p('b', 'small.bin'), randomBytes(1 << 20));
    const c = d.cli('commit', d.p('b'), '--json');
    expect(c.code, c.stderr).toBe(0);
    expect(c.json().status).toBe('completed');

    // The staging index survived: a restart serves all of it.
    await d.stop();
    d = await startDaemon({ root, cacheDir });
    expect(await sha256Of(d.p('a', 'model.pt'))).toBe(sha256(model));
    expect(readFileSync(d.p('other', 'notes.txt'), 'utf8')).toBe('staged, not committed');
    expect(d.logs()).not.toContain('lost with the cache');
  });
});
