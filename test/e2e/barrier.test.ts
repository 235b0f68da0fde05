/**
 * The write barrier through a real mount: while a seal waits on an open handle, new
 * writes are refused and the open handle may finish; the commit holds exactly the
 * closed bytes. A handle held past the seal timeout fails the commit with OPEN_HANDLES
 * and the folder is writable again with its files intact.
 */
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, waitCommit, type TestDaemon } from '../support/daemon.js';
import { errnoOf, sha256, sha256Of } from '../support/files.js';

describe('write barrier', () => {
  let d: TestDaemon;

  beforeAll(async () => {
    d = await startDaemon({ sealTimeout: 3 });
  });
  afterAll(async () => {
    await stopAll();
    if (d) removeRoot(d.root);
  });

  it('refuses new writes during the seal, lets the open handle finish, and commits exactly the closed bytes', async () => {
    mkdirSync(d.p('ck', 'a'), { recursive: true });
    writeFileSync(d.p('ck', 'a', 'other.bin'), 'other');
    const part1 = randomBytes(3 << 20);
    const part2 = randomBytes(1 << 20);
    const fd = openSync(d.p('ck', 'a', 'weights.bin'), 'w');
    writeSync(fd, part1);

    const folder = (await d.client.resolvePath('/ck/a'))!;
    const pending = await d.client.commit(folder.id, { message: 'barrier' });
    expect(pending.status).toBe('pending');

    // The barrier is up: nothing new gets in.
    expect(errnoOf(() => writeFileSync(d.p('ck', 'a', 'late.bin'), 'late'))).toBe('EROFS');
    expect(errnoOf(() => writeFileSync(d.p('ck', 'a', 'other.bin'), 'changed'))).toBe('EROFS');
    expect(errnoOf(() => unlinkSync(d.p('ck', 'a', 'other.bin')))).toBe('EROFS');
    expect(errnoOf(() => renameSync(d.p('ck', 'a', 'other.bin'), d.p('ck', 'a', 'moved.bin')))).toBe('EROFS');
    expect(errnoOf(() => truncateSync(d.p('ck', 'a', 'other.bin'), 0))).toBe('EROFS');
    expect(errnoOf(() => mkdirSync(d.p('ck', 'a', 'sub')))).toBe('EROFS');
    // The seal waits for the open handle: however long the checks above took, the
    // commit cannot have moved on while weights.bin is open.
    expect((await d.client.getCommit(pending.id)).status).toBe('pending');

    // The handle opened before the seal finishes its write.
    writeSync(fd, part2);
    closeSync(fd);

    const done = await waitCommit(d.client, pending.id);
    expect(done.status, JSON.stringify(done.error)).toBe('completed');
    const manifest = await d.client.getManifest(pending.id);
    expect(manifest.files.map((f) => f.path)).toEqual(['other.bin', 'weights.bin']);
    const weights = manifest.files.find((f) => f.path === 'weights.bin')!;
    expect(weights.size).toBe(part1.length + part2.length);
    expect(weights.sha256).toBe(sha256(Buffer.concat([part1, part2])));
    expect(await sha256Of(d.p('ck', 'a', 'weights.bin'))).toBe(weights.sha256);
  });

  it('fails the commit with OPEN_HANDLES after the seal timeout and returns the folder to STAGING intact', async () => {
    mkdirSync(d.p('ck', 'b'), { recursive: true });
    const closedBytes = randomBytes(1 << 20);
    writeFileSync(d.p('ck', 'b', 'closed.bin'), closedBytes);
    const fd = openSync(d.p('ck', 'b', 'held.bin'), 'w');
    writeSync(fd, 'partial');

    const folder = (await d.client.resolvePath('/ck/b'))!;
    const c = await d.client.commit(folder.id);
    const done = await waitCommit(d.client, c.id, 30_000);
    expect(done.status).toBe('failed');
    expect(done.error?.code).toBe('OPEN_HANDLES');
    expect((await d.client.resolvePath('/ck/b'))!.state).toBe('staging');

    // Writable again, with everything still there.
    writeSync(fd, ' and the rest');
    closeSync(fd);
    writeFileSync(d.p('ck', 'b', 'after.bin'), 'after');
    expect(sha256(readFileSync(d.p('ck', 'b', 'closed.bin')))).toBe(sha256(closedBytes));
    expect(readFileSync(d.p('ck', 'b', 'held.bin'), 'utf8')).toBe('partial and the rest');

    // And a retry commits all of it.
    const retry = await waitCommit(d.client, (await d.client.commit(folder.id)).id);
    expect(retry.status).toBe('completed');
    expect(retry.stats.files).toBe(3);
  });

  it('refuses a second commit of a folder that is sealing (409) and of a committed one', async () => {
    mkdirSync(d.p('ck', 'c'), { recursive: true });
    const fd = openSync(d.p('ck', 'c', 'f.bin'), 'w');
    const folder = (await d.client.resolvePath('/ck/c'))!;
    const first = await d.client.commit(folder.id);
    await expect(d.client.commit(folder.id)).rejects.toMatchObject({ rosetCode: 'COMMIT_IN_PROGRESS', status: 409 });
    closeSync(fd);
    expect((await waitCommit(d.client, first.id)).status).toBe('completed');
    await expect(d.client.commit(folder.id)).rejects.toMatchObject({ rosetCode: 'COMMITTED', status: 409 });
  });

  it('puts every write(2) acknowledged before close into the commit, kernel writeback cache or not', async () => {
    // Under the native binding's writeback cache, write(2) returns once the kernel has
    // the bytes; nothing here calls fsync, so only the binding's flushes can get them to
    // the staged files before the snapshot.
    if (d.binding !== 'fuse-native') expect(d.logs()).toMatch(/"writebackCache":true/);
    mkdirSync(d.p('ck', 'wb'), { recursive: true });
    const expected = new Map<string, Buffer>();
    for (let i = 0; i < 12; i++) {
      // Odd sizes and odd chunk boundaries, so partial pages are in play.
      const bytes = randomBytes((i + 1) * 313_337);
      const fd = openSync(d.p('ck', 'wb', `shard-${i}.bin`), 'w');
      for (let off = 0; off < bytes.length; off += 65_537) writeSync(fd, bytes, off, Math.min(65_537, bytes.length - off));
      closeSync(fd);
      expected.set(`shard-${i}.bin`, bytes);
    }
    // Rewritten in the middle, out of order: no hash taken while writing applies.
    const patched = Buffer.from(expected.get('shard-3.bin')!);
    const patch = randomBytes(10_000);
    const pfd = openSync(d.p('ck', 'wb', 'shard-3.bin'), 'r+');
    writeSync(pfd, patch, 0, patch.length, 123_456);
    closeSync(pfd);
    patch.copy(patched, 123_456);
    expected.set('shard-3.bin', patched);
    // One handle is still writing when the commit is asked for.
    const tail = randomBytes(5 << 20);
    const open = openSync(d.p('ck', 'wb', 'open.bin'), 'w');
    writeSync(open, tail, 0, 3 << 20);

    const folder = (await d.client.resolvePath('/ck/wb'))!;
    const pending = await d.client.commit(folder.id);
    writeSync(open, tail, 3 << 20, 2 << 20);
    closeSync(open);
    expected.set('open.bin', tail);

    const done = await waitCommit(d.client, pending.id);
    expect(done.status, JSON.stringify(done.error)).toBe('completed');
    const manifest = await d.client.getManifest(pending.id);
    expect(manifest.files.map((f) => f.path).sort()).toEqual([...expected.keys()].sort());
    for (const f of manifest.files) {
      const want = expected.get(f.path)!;
      expect({ path: f.path, size: f.size, sha256: f.sha256 }).toEqual({ path: f.path, size: want.length, sha256: sha256(want) });
      // The object in the store holds those bytes (read past every cache).
      const obj = readFileSync(path.join(d.stateDir, 'store', 'objects', f.sha256.slice(0, 2), f.sha256));
      expect(sha256(obj)).toBe(f.sha256);
    }
  });
});
