/**
 * Reading /proc/mounts and clearing FUSE mounts left by a process that died.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Mount points of FUSE filesystems, with /proc/mounts' octal escapes decoded. */
export function fuseMountpoints(): string[] {
  let text = '';
  try {
    text = readFileSync('/proc/mounts', 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').map((l) => l.split(' ')).filter((f) => f.length > 2 && /^fuse(\.|blk$|$)/.test(f[2]!))
    .map((f) => f[1]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

export function isFuseMounted(dir: string): boolean {
  return fuseMountpoints().includes(dir);
}

/** Lazy unmount, trying fusermount3, then fusermount, then umount. */
export async function forceUnmount(dir: string): Promise<void> {
  const attempts: Array<[string, string[]]> = [['fusermount3', ['-uz', dir]], ['fusermount', ['-uz', dir]], ['umount', ['-l', dir]]];
  let last: unknown;
  for (const [cmd, args] of attempts) {
    try {
      await run(cmd, args);
      return;
    } catch (err) {
      last = err;
    }
  }
  if (isFuseMounted(dir)) throw last instanceof Error ? last : new Error(`could not unmount ${dir}`);
}

/** Whether `pid` is a running process (a zombie, killed but not yet reaped, is not). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/s.test(stat);
  } catch {
    return true;
  }
}
