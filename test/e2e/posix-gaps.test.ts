/**
 * Smaller POSIX behaviours, each compared with a directory on the local disk (ext4 or
 * tmpfs) as the reference: atime set alone, folder mtime and ctime on every change of
 * their entries, EFBIG from a huge truncate, a folder's link count, and nanosecond
 * timestamps from utimensat.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, rmdirSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, tempRoot, type TestDaemon } from '../support/daemon.js';

/** Runs `sh -c script` in `cwd` and returns its exit status and stderr. */
function sh(cwd: string, script: string): { code: number | null; stderr: string } {
  const r = spawnSync('sh', ['-c', script], { cwd, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return { code: r.status, stderr: r.stderr.trim() };
}

function times(p: string): { atimeNs: bigint; mtimeNs: bigint; ctimeNs: bigint } {
  const st = statSync(p, { bigint: true });
  return { atimeNs: st.atimeNs, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

/**
 * Returns once the file system's own clock, as it stamps a ctime, is past `ns`: touches
 * a probe file under `base` until its ctime passes. Then a change made next gets a
 * later time stamp than anything stamped before, on any timestamp granularity.
 */
function clockPast(base: string, ns: bigint): void {
  const probe = path.join(base, '.clock-probe');
  writeFileSync(probe, '');
  for (let i = 0; i < 100_000; i++) {
    utimesSync(probe, new Date(), new Date());
    if (statSync(probe, { bigint: true }).ctimeNs > ns) {
      rmSync(probe);
      return;
    }
  }
  throw new Error(`the clock of ${base} never passed ${ns}`);
}

describe('POSIX details, against a local reference directory', () => {
  let d: TestDaemon;
  let ref: string;
  let mnt: string;
  beforeAll(async () => {
    d = await startDaemon();
    ref = tempRoot('roset-posix-ref-');
    mnt = d.p('gaps');
    mkdirSync(mnt);
  });
  afterAll(async () => {
    await stopAll();
    if (d) removeRoot(d.root);
    if (ref) rmSync(ref, { recursive: true, force: true });
  });

  it('touch -a sets the atime alone: atime 1500000000, mtime unchanged', () => {
    const got: Record<string, { atimeNs: bigint; mtimeNs: bigint }> = {};
    for (const base of [ref, mnt]) {
      writeFileSync(path.join(base, 'a.txt'), 'a');
      utimesSync(path.join(base, 'a.txt'), 1_600_000_000, 1_600_000_000);
      const before = times(path.join(base, 'a.txt'));
      execFileSync('touch', ['-a', '-d', '@1500000000', 'a.txt'], { cwd: base });
      const after = times(path.join(base, 'a.txt'));
      expect(before.mtimeNs, base).toBe(1_600_000_000_000_000_000n);
      got[base] = { atimeNs: after.atimeNs, mtimeNs: after.mtimeNs };
    }
    expect(got[ref]).toEqual({ atimeNs: 1_500_000_000_000_000_000n, mtimeNs: 1_600_000_000_000_000_000n });
    if (d.binding === 'fuse-native') {
      // libfuse 2.9 (fuse.c, fuse_lib_setattr) calls utimens only when a SETATTR sets
      // both times, so `touch -a` never reaches this binding's file system: nothing
      // changes. (Had it come, fuse-native 2.2.6 would have passed the atime as the
      // mtime too: fuse-native.c, utimens, FUSE_UINT64_TO_INTS_ARGV(l->atime, 5).)
      expect(got[mnt]).toEqual({ atimeNs: 1_600_000_000_000_000_000n, mtimeNs: 1_600_000_000_000_000_000n });
    } else {
      expect(got[mnt]).toEqual(got[ref]);
    }
  });

  it('moves a folder\'s mtime and ctime forward on create, unlink, mkdir, rmdir and rename in it', () => {
    /** Runs `op` and says, per folder, whether its mtime and ctime moved past their old values. */
    const moved = (base: string, dirs: string[], op: () => void) => {
      const before = dirs.map((dir) => times(path.join(base, dir)));
      clockPast(base, before.reduce((m, t) => (t.ctimeNs > m ? t.ctimeNs : m), 0n));
      op();
      return Object.fromEntries(dirs.map((dir, i) => {
        const after = times(path.join(base, dir));
        return [dir, { mtime: after.mtimeNs > before[i]!.mtimeNs, ctime: after.ctimeNs > before[i]!.ctimeNs }];
      }));
    };
    const forward = { mtime: true, ctime: true };
    for (const base of [ref, mnt]) {
      const at = (...p: string[]) => path.join(base, ...p);
      mkdirSync(at('m1'));
      mkdirSync(at('m2'));
      const steps = {
        create: moved(base, ['m1'], () => writeFileSync(at('m1', 'f'), 'f')),
        rename: moved(base, ['m1'], () => renameSync(at('m1', 'f'), at('m1', 'g'))),
        'rename across': moved(base, ['m1', 'm2'], () => renameSync(at('m1', 'g'), at('m2', 'g'))),
        unlink: moved(base, ['m2'], () => unlinkSync(at('m2', 'g'))),
        mkdir: moved(base, ['m1'], () => mkdirSync(at('m1', 'sub'))),
        'rename folder across': moved(base, ['m1', 'm2'], () => renameSync(at('m1', 'sub'), at('m2', 'sub'))),
        rmdir: moved(base, ['m2'], () => rmdirSync(at('m2', 'sub'))),
      };
      expect(steps, base).toEqual({
        create: { m1: forward },
        rename: { m1: forward },
        'rename across': { m1: forward, m2: forward },
        unlink: { m2: forward },
        mkdir: { m1: forward },
        'rename folder across': { m1: forward, m2: forward },
        rmdir: { m2: forward },
      });
    }
  });

  it('truncate -s 999999999999999 fails with EFBIG (File too large), as on the local disk', () => {
    const got: Record<string, { code: number | null; stderr: string; size: number }> = {};
    for (const base of [ref, mnt]) {
      writeFileSync(path.join(base, 'big'), 'small');
      const r = sh(base, 'truncate -s 999999999999999 big');
      got[base] = { ...r, size: statSync(path.join(base, 'big')).size };
    }
    expect(got[ref]!.stderr).toMatch(/File too large/);
    expect(got[mnt]).toEqual(got[ref]);
  });

  it('counts 2 + subfolders as a folder\'s link count', () => {
    const got: Record<string, number[]> = {};
    for (const base of [ref, mnt]) {
      const n = path.join(base, 'links');
      const counts: number[] = [];
      mkdirSync(n);
      counts.push(statSync(n).nlink);
      mkdirSync(path.join(n, 'a'));
      mkdirSync(path.join(n, 'b'));
      writeFileSync(path.join(n, 'f'), 'f');
      counts.push(statSync(n).nlink);
      mkdirSync(path.join(n, 'a', 'deeper'));
      counts.push(statSync(n).nlink, statSync(path.join(n, 'a')).nlink);
      rmdirSync(path.join(n, 'b'));
      counts.push(statSync(n).nlink);
      got[base] = counts;
    }
    expect(got[ref]).toEqual([2, 4, 4, 3, 3]);
    expect(got[mnt]).toEqual(got[ref]);
  });

  it('keeps the nanoseconds of os.utime(ns=(atime, mtime))', () => {
    const A = 1_500_000_000_123_456_789n;
    const M = 1_600_000_000_987_654_321n;
    const got: Record<string, { atimeNs: bigint; mtimeNs: bigint }> = {};
    for (const base of [ref, mnt]) {
      const f = path.join(base, 'ns.txt');
      writeFileSync(f, 'ns');
      const r = spawnSync('python3', ['-c', 'import os, sys; os.utime(sys.argv[1], ns=(int(sys.argv[2]), int(sys.argv[3])))', f, String(A), String(M)], { encoding: 'utf8' });
      expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
      const { atimeNs, mtimeNs } = times(f);
      got[base] = { atimeNs, mtimeNs };
    }
    expect(got[ref]).toEqual({ atimeNs: A, mtimeNs: M });
    if (d.binding === 'fuse-native') {
      // fuse-native (2.2.6) converts both times to whole milliseconds and passes the
      // atime as the mtime too (fuse-native.c: timespec_to_uint64, and utimens's
      // FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)); its getattr carries milliseconds only.
      const aMs = (A / 1_000_000n) * 1_000_000n;
      expect(got[mnt]).toEqual({ atimeNs: aMs, mtimeNs: aMs });
    } else {
      expect(got[mnt]).toEqual({ atimeNs: A, mtimeNs: M });
    }
  });
});
