/**
 * On an `--allow-other` mount, another user (uid 65534) meets the same permission
 * checks, with the same errno, as on ext4, and `chown` sticks: ownership and mode
 * decide who may read, write, chmod and remove, as on a local file system.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, tempRoot, type TestDaemon } from '../support/daemon.js';

const NOBODY = 65534;

interface Outcome { code: number | null; errno: string | null; stderr: string }

/** Runs `script` with sh as uid/gid 65534 (no supplementary groups) in `cwd`. */
function asNobody(cwd: string, script: string): Outcome {
  const r = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', 'sh', '-c', script], { cwd, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  const errno = /Permission denied/.test(r.stderr) ? 'EACCES' : /Operation not permitted/.test(r.stderr) ? 'EPERM' : r.stderr.trim() ? 'other' : null;
  return { code: r.status, errno, stderr: r.stderr.trim() };
}

/** Runs `script` with sh as root in `cwd`. */
function asRoot(cwd: string, script: string): string {
  return execFileSync('sh', ['-c', script], { cwd, encoding: 'utf8' });
}

describe('permissions for another user on an --allow-other mount', () => {
  let d: TestDaemon;
  let ref: string;
  let mnt: string;
  beforeAll(async () => {
    d = await startDaemon({ allowOther: true });
    // The reference: the same tree on the local disk (ext4 or tmpfs), reachable by uid 65534.
    ref = tempRoot('roset-perm-ref-');
    chmodSync(ref, 0o755);
    mnt = d.p('perm');
    mkdirSync(mnt);
    chmodSync(mnt, 0o755);
  });
  afterAll(async () => {
    await stopAll();
    if (d) removeRoot(d.root);
    if (ref) rmSync(ref, { recursive: true, force: true });
  });

  it('refuses cat, append, chmod and rm of root\'s private files with the errno ext4 gives', () => {
    const setup = [
      'mkdir -m700 d', 'echo s > d/f', 'chmod 600 d/f', // private folder
      'mkdir -m755 o', 'echo s > o/f', 'chmod 600 o/f', // open folder, private file
    ].join(' && ');
    for (const base of [ref, mnt]) asRoot(base, setup);
    expect(statSync(path.join(mnt, 'd')).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(mnt, 'o', 'f')).mode & 0o777).toBe(0o600);

    const ops = ['cat d/f', 'echo x >> d/f', 'chmod 666 d/f', 'rm d/f', 'ls d', 'cat o/f', 'echo x >> o/f', 'chmod 666 o/f', 'rm o/f'];
    const want: Record<string, Outcome> = {};
    const got: Record<string, Outcome> = {};
    for (const op of ops) want[op] = asNobody(ref, op);
    for (const op of ops) got[op] = asNobody(mnt, op);
    // Every one is refused on the reference; the mount refuses each the same way.
    for (const op of ops) expect(want[op]!.errno, `reference: ${op}`).toMatch(/^(EACCES|EPERM)$/);
    expect(Object.fromEntries(ops.map((op) => [op, got[op]!.errno]))).toEqual(Object.fromEntries(ops.map((op) => [op, want[op]!.errno])));
    expect(got).toEqual(want);
    // Nothing changed.
    expect(readFileSync(path.join(mnt, 'd', 'f'), 'utf8')).toBe('s\n');
    expect(readFileSync(path.join(mnt, 'o', 'f'), 'utf8')).toBe('s\n');
    expect(statSync(path.join(mnt, 'o', 'f')).mode & 0o777).toBe(0o600);
  });

  it('keeps chown: the new owner may write its 0644 file, a root-owned 0644 file stays refused', () => {
    const setup = ['echo s > f2', 'chmod 644 f2', `chown ${NOBODY}:${NOBODY} f2`, 'echo s > f3', 'chmod 644 f3'].join(' && ');
    for (const base of [ref, mnt]) asRoot(base, setup);
    const st = statSync(path.join(mnt, 'f2'));
    expect([st.uid, st.gid]).toEqual([NOBODY, NOBODY]);
    expect(asRoot(mnt, 'stat -c %u:%g f2 f3')).toBe(asRoot(ref, 'stat -c %u:%g f2 f3'));

    for (const base of [ref, mnt]) {
      expect(asNobody(base, 'echo more >> f2'), base).toEqual({ code: 0, errno: null, stderr: '' });
      expect(asNobody(base, 'echo more >> f3').errno, base).toBe('EACCES');
    }
    expect(readFileSync(path.join(mnt, 'f2'), 'utf8')).toBe('s\nmore\n');
    expect(readFileSync(path.join(mnt, 'f3'), 'utf8')).toBe('s\n');
    // The owner may chmod its file; that too is what ext4 does.
    for (const base of [ref, mnt]) expect(asNobody(base, 'chmod 600 f2').code, base).toBe(0);
    expect(statSync(path.join(mnt, 'f2')).mode & 0o777).toBe(0o600);
  });

  // fuse-native (libfuse 2's binding) does not pass the calling user to the daemon, so
  // there new files belong to the daemon's user (root here): docs/SEMANTICS.md says so.
  const tracksCreator = process.env.ROSET_TEST_FUSE_BINDING !== 'fuse-native';
  it(tracksCreator ? 'gives files and folders another user creates to that user, as ext4 does'
    : 'gives files and folders another user creates to the daemon\'s user (fuse-native)', () => {
    for (const base of [ref, mnt]) asRoot(base, 'mkdir -m777 pub');
    for (const base of [ref, mnt]) expect(asNobody(base, 'echo n > pub/n && mkdir pub/dir'), base).toEqual({ code: 0, errno: null, stderr: '' });
    if (tracksCreator) {
      expect(asRoot(mnt, 'stat -c %u:%g pub/n pub/dir')).toBe(asRoot(ref, 'stat -c %u:%g pub/n pub/dir'));
      expect(asRoot(mnt, 'stat -c %u:%g pub/n')).toBe(`${NOBODY}:${NOBODY}\n`);
    } else {
      expect(asRoot(mnt, 'stat -c %u:%g pub/n pub/dir')).toBe('0:0\n0:0\n');
    }
  });
});
