/**
 * POSIX behaviour through the real mount, for files in a STAGING folder. What is not
 * supported, and its errno, is listed in docs/SEMANTICS.md and checked at the end.
 */
import {
  appendFileSync, chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmdirSync,
  statSync, symlinkSync, linkSync, truncateSync, unlinkSync, utimesSync, writeFileSync, writeSync, ftruncateSync,
} from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';
import { errnoOf, sha256, sha256Of } from '../support/files.js';

describe('POSIX through the mount', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startDaemon();
    mkdirSync(d.p('w'));
  });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  it('creates, writes sequentially and randomly, overwrites, appends and truncates', () => {
    const f = d.p('w', 'file.bin');
    const base = randomBytes(300_000);
    writeFileSync(f, base);
    expect(readFileSync(f).equals(base)).toBe(true);

    // Random writes at offsets, including past the end (a hole).
    const expected = Buffer.concat([base, Buffer.alloc(100_000)]);
    const fd = openSync(f, 'r+');
    for (const off of [0, 4095, 131_072, 299_990, 390_000]) {
      const chunk = randomBytes(10_000);
      writeSync(fd, chunk, 0, chunk.length, off);
      chunk.copy(expected, off);
    }
    closeSync(fd);
    expect(sha256(readFileSync(f))).toBe(sha256(expected));

    writeFileSync(f, 'overwritten');
    expect(readFileSync(f, 'utf8')).toBe('overwritten');
    appendFileSync(f, ' and appended');
    expect(readFileSync(f, 'utf8')).toBe('overwritten and appended');
    truncateSync(f, 4);
    expect(readFileSync(f, 'utf8')).toBe('over');
    truncateSync(f, 6);
    expect(readFileSync(f)).toEqual(Buffer.from('over\0\0'));
    const fd2 = openSync(f, 'r+');
    ftruncateSync(fd2, 2);
    closeSync(fd2);
    expect(readFileSync(f, 'utf8')).toBe('ov');
  });

  it('reads at offsets', () => {
    const f = d.p('w', 'offsets.bin');
    const data = randomBytes(1 << 20);
    writeFileSync(f, data);
    const fd = openSync(f, 'r');
    for (const [off, len] of [[0, 10], [12345, 70_000], [(1 << 20) - 5, 100], [1 << 20, 10]] as const) {
      const buf = Buffer.alloc(len);
      const n = readSync(fd, buf, 0, len, off);
      expect(n).toBe(Math.max(0, Math.min(len, (1 << 20) - off)));
      expect(buf.subarray(0, n).equals(data.subarray(off, off + n))).toBe(true);
    }
    closeSync(fd);
  });

  it('renames inside a staging folder, unlinks, and makes and removes folders', () => {
    writeFileSync(d.p('w', 'a.txt'), 'a');
    renameSync(d.p('w', 'a.txt'), d.p('w', 'b.txt'));
    expect(readFileSync(d.p('w', 'b.txt'), 'utf8')).toBe('a');
    expect(errnoOf(() => statSync(d.p('w', 'a.txt')))).toBe('ENOENT');
    // Rename over an existing file replaces it.
    writeFileSync(d.p('w', 'c.txt'), 'c');
    renameSync(d.p('w', 'c.txt'), d.p('w', 'b.txt'));
    expect(readFileSync(d.p('w', 'b.txt'), 'utf8')).toBe('c');
    // Folders move with their contents.
    mkdirSync(d.p('w', 'sub', 'deeper'), { recursive: true });
    writeFileSync(d.p('w', 'sub', 'deeper', 'x'), 'x');
    renameSync(d.p('w', 'sub'), d.p('w', 'moved'));
    expect(readFileSync(d.p('w', 'moved', 'deeper', 'x'), 'utf8')).toBe('x');
    expect(errnoOf(() => rmdirSync(d.p('w', 'moved')))).toBe('ENOTEMPTY');
    unlinkSync(d.p('w', 'moved', 'deeper', 'x'));
    rmdirSync(d.p('w', 'moved', 'deeper'));
    rmdirSync(d.p('w', 'moved'));
    expect(errnoOf(() => statSync(d.p('w', 'moved')))).toBe('ENOENT');
    expect(errnoOf(() => mkdirSync(d.p('w')))).toBe('EEXIST');
    expect(errnoOf(() => unlinkSync(d.p('w', 'nope')))).toBe('ENOENT');
    expect(errnoOf(() => rmdirSync(d.p('w', 'b.txt')))).toBe('ENOTDIR');
    expect(errnoOf(() => unlinkSync(d.p('w')))).toBe('EISDIR');
  });

  it('lists folders and reports size, mtime and mode; chmod and utimes stick; fsync works', () => {
    mkdirSync(d.p('w', 'list'));
    for (const n of ['one', 'two', 'three']) writeFileSync(d.p('w', 'list', n), n);
    expect(readdirSync(d.p('w', 'list')).sort()).toEqual(['one', 'three', 'two']);
    const st = statSync(d.p('w', 'list', 'three'));
    expect(st.isFile()).toBe(true);
    expect(st.size).toBe(5);
    expect(Math.abs(st.mtimeMs - Date.now())).toBeLessThan(60_000);
    expect(statSync(d.p('w', 'list')).isDirectory()).toBe(true);
    chmodSync(d.p('w', 'list', 'one'), 0o600);
    expect(statSync(d.p('w', 'list', 'one')).mode & 0o777).toBe(0o600);
    const when = new Date('2024-01-02T03:04:05Z');
    utimesSync(d.p('w', 'list', 'two'), when, when);
    expect(statSync(d.p('w', 'list', 'two')).mtime.getTime()).toBe(when.getTime());
    const fd = openSync(d.p('w', 'list', 'one'), 'r+');
    writeSync(fd, 'ONE');
    fsyncSync(fd);
    closeSync(fd);
    expect(readFileSync(d.p('w', 'list', 'one'), 'utf8')).toBe('ONE');
  });

  it('refuses what it does not support with the documented errno', () => {
    writeFileSync(d.p('w', 'target'), 't');
    expect(errnoOf(() => symlinkSync('target', d.p('w', 'link')))).toBe('ENOTSUP');
    expect(errnoOf(() => linkSync(d.p('w', 'target'), d.p('w', 'hard')))).toBe('ENOTSUP');
    expect(errnoOf(() => renameSync(d.p('w'), d.p('w', 'inside')))).toBe('EINVAL');
  });

  it('writes and reads back a 2 GiB file with a matching sha256', async () => {
    const f = d.p('w', 'big.bin');
    const chunk = randomBytes(8 << 20);
    const h = createHash('sha256');
    const fd = openSync(f, 'w');
    for (let i = 0; i < 256; i++) {
      // Vary every chunk so a misplaced block cannot hash the same.
      chunk.writeUInt32LE(i, 0);
      writeSync(fd, chunk);
      h.update(chunk);
    }
    closeSync(fd);
    expect(statSync(f).size).toBe(2 ** 31);
    expect(await sha256Of(f)).toBe(h.digest('hex'));
    unlinkSync(f);
  }, 600_000);
});

describe('attributes through the API right after close', () => {
  let d: TestDaemon;
  beforeAll(async () => { d = await startDaemon(); });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  it('reports a file\'s size as soon as close() returns', async () => {
    mkdirSync(d.p('sz'));
    for (let i = 1; i <= 5; i++) {
      writeFileSync(d.p('sz', `f${i}`), randomBytes(i * 1000));
      const n = (await d.client.resolvePath(`/sz/f${i}`))!;
      expect(n.size).toBe(i * 1000);
    }
  });
});
