/**
 * What the tests of the mount(8) helper share (test/deploy/mount-helper.test.ts calls
 * bin/mount.fuse.roset directly; test/deploy/fstab.test.ts goes through util-linux
 * mount): running a command the way mount(8) would (no state dir or notify socket
 * inherited from the test's environment), reading what /proc/mounts says of a
 * mountpoint, finding the roset-mount serving it, and a scratch root per case whose
 * daemons are killed and files removed after the file's tests, whatever failed.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll } from 'vitest';
import { processAlive } from '../../src/util/mounts.js';
import { sleep } from '../../src/util/sleep.js';
import { REPO, removeRoot, requireFuse, tempRoot } from './daemon.js';

export const HELPER = path.join(REPO, 'bin', 'mount.fuse.roset');

export interface Ran { code: number | null; stdout: string; stderr: string }

/** Runs `cmd` with no ROSET_STATE_DIR or NOTIFY_SOCKET of the test's. */
export function run(cmd: string, args: string[]): Ran {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ROSET_STATE_DIR: '', NOTIFY_SOCKET: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The fstype /proc/mounts gives `mnt`, or null. */
export function mountedAs(mnt: string): string | null {
  const line = readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[1] === mnt);
  return line?.[2] ?? null;
}

/** Pids of live processes whose command line names `mnt`. */
export function daemonsOf(mnt: string): number[] {
  const r = spawnSync('pgrep', ['-f', `roset-mount.js ${mnt}`], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/** Whether `pid` exits within `ms`. */
export async function gone(pid: number, ms = 30_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (processAlive(pid)) {
    if (Date.now() > end) return false;
    await sleep(50);
  }
  return true;
}

/**
 * Scratch roots for one test file, each with an empty `mnt/`; registers the afterAll
 * that kills what still serves them and removes them.
 */
export function scratchRoots(prefix?: string): (names: { stateDir: string; cacheDir: string }) => { root: string; mnt: string; stateDir: string; cacheDir: string } {
  const roots: string[] = [];
  afterAll(() => {
    for (const r of roots) {
      for (const pid of daemonsOf(path.join(r, 'mnt'))) process.kill(pid, 'SIGKILL');
      removeRoot(r);
    }
  });
  return (names) => {
    requireFuse();
    const root = tempRoot(prefix);
    roots.push(root);
    const mnt = path.join(root, 'mnt');
    mkdirSync(mnt);
    return { root, mnt, stateDir: path.join(root, names.stateDir), cacheDir: path.join(root, names.cacheDir) };
  };
}
