/**
 * A file unlinked while open keeps working through its descriptors, as POSIX requires:
 * fstat (nlink 0), read, write and close all succeed, and Python's
 * `tempfile.TemporaryFile` (create, unlink, then use) works inside the mount.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';
import { errnoOf } from '../support/files.js';

function readAll(fd: number, size: number): string {
  const buf = Buffer.alloc(size + 16);
  const n = readSync(fd, buf, 0, buf.length, 0);
  return buf.subarray(0, n).toString();
}

describe('unlinked open files', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startDaemon();
    mkdirSync(d.p('u'));
  });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  it('keeps a read-write descriptor working after unlink: fstat, read, write, close', () => {
    const f = d.p('u', 'rw.bin');
    const fd = openSync(f, 'w+');
    let closed = false;
    try {
      writeSync(fd, 'first part;', 0);
      unlinkSync(f);
      expect(errnoOf(() => statSync(f))).toBe('ENOENT');
      expect(readdirSync(d.p('u'))).not.toContain('rw.bin');
      const st = fstatSync(fd);
      expect(st.nlink).toBe(0);
      expect(st.size).toBe('first part;'.length);
      expect(readAll(fd, st.size)).toBe('first part;');
      writeSync(fd, 'second part', 'first part;'.length);
      expect(fstatSync(fd).size).toBe('first part;second part'.length);
      expect(readAll(fd, 64)).toBe('first part;second part');
      closeSync(fd);
      closed = true;
    } finally {
      if (!closed) errnoOf(() => closeSync(fd));
    }
    // The name is free again.
    writeFileSync(f, 'new');
    expect(statSync(f).size).toBe(3);
  });

  it('keeps a read-only descriptor reading after unlink, and closes it cleanly', () => {
    const f = d.p('u', 'ro.bin');
    writeFileSync(f, 'read me after unlink');
    const fd = openSync(f, 'r');
    let closed = false;
    try {
      unlinkSync(f);
      const st = fstatSync(fd);
      expect(st.nlink).toBe(0);
      expect(st.size).toBe('read me after unlink'.length);
      expect(readAll(fd, st.size)).toBe('read me after unlink');
      closeSync(fd);
      closed = true;
    } finally {
      if (!closed) errnoOf(() => closeSync(fd));
    }
  });

  it('runs tempfile.TemporaryFile(dir=<mount>): write, seek, read, close', () => {
    const script = [
      'import os, sys, tempfile',
      'd = sys.argv[1]',
      'data = os.urandom(300000)',
      'with tempfile.TemporaryFile(dir=d) as f:',
      '    f.write(data)',
      '    f.flush()',
      '    assert os.fstat(f.fileno()).st_nlink == 0, os.fstat(f.fileno())',
      '    assert os.fstat(f.fileno()).st_size == len(data), os.fstat(f.fileno())',
      '    f.seek(0)',
      '    assert f.read() == data, "bytes differ"',
      '    f.write(b"tail")',
      '    f.seek(len(data))',
      '    assert f.read() == b"tail"',
      // fuse-native (libfuse 2) keeps an unlinked open file as .fuse_hidden* until the
      // kernel's RELEASE reaches it, a moment after close(2): wait for that, there only.
      'import time',
      'end = time.time() + 30',
      'while os.environ.get("ROSET_TEST_FUSE_BINDING") == "fuse-native" and os.listdir(d) and time.time() < end: time.sleep(0.01)',
      'assert os.listdir(d) == [], os.listdir(d)',
      'print("ok")',
    ].join('\n');
    mkdirSync(d.p('py'));
    const r = spawnSync('python3', ['-c', script, d.p('py')], { encoding: 'utf8', timeout: 60_000 });
    expect(r.error).toBeUndefined();
    expect({ status: r.status, stdout: r.stdout.trim(), stderr: r.stderr.trim() }).toEqual({ status: 0, stdout: 'ok', stderr: '' });
  });
});
