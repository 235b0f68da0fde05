/**
 * `roset unmount PATH`: stop the daemon serving PATH, or clear a stale FUSE mount.
 *
 * A running daemon is asked to stop with SIGTERM, never unmounted from outside: on
 * SIGTERM it drains its uploads and unmounts itself, while a `fusermount -u` would cut
 * it off mid-upload. Only a mount that no live daemon owns (the daemon crashed, or it
 * exited without unmounting) is removed with fusermount3 -u, then fusermount -uz, then
 * umount -l.
 *
 * Invariant: SIGTERM goes only to the pid in `<stateDir>/daemon.json`, only when its
 * mountpoint is realpath(PATH) and the pid is still the daemon (see daemon-state.ts).
 */
import { execFile } from 'node:child_process';
import { realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { Option } from 'commander';
import { RosetError } from '../../errors/index.js';
import { resolveConfig } from '../../sdk/index.js';
import { action, globalsOf, parseSeconds, printJson, println } from '../context.js';
import { fuseMountpoints, processAlive } from '../../util/mounts.js';
import { sleep } from '../../util/sleep.js';
import { readDaemonState } from '../daemon-state.js';

const run = promisify(execFile);
const DEFAULT_TIMEOUT_S = 300;

interface UnmountOptions {
  timeout: number;
  json?: boolean;
}

async function realOrResolved(p: string): Promise<string> {
  try {
    return await realpath(p);
  } catch {
    return resolve(p); // a dead FUSE mount fails realpath with ENOTCONN
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (processAlive(pid)) {
    if (timeoutMs > 0 && Date.now() >= deadline) return false;
    await sleep(100);
  }
  return true;
}

/**
 * Unmounts a FUSE mount that no daemon serves; returns the command that worked. Unlike
 * the daemon's forceUnmount (src/util/mounts.ts), a plain `-u` comes first: the user
 * should learn that the mount is busy rather than have it detached lazily at once.
 */
async function forceUnmount(mountpoint: string): Promise<string> {
  const attempts: Array<[string, string[]]> = [
    ['fusermount3', ['-u', mountpoint]],
    ['fusermount', ['-uz', mountpoint]],
    ['umount', ['-l', mountpoint]],
  ];
  const failures: string[] = [];
  for (const [cmd, args] of attempts) {
    try {
      await run(cmd, args, { timeout: 30_000 });
      if (!fuseMountpoints().includes(mountpoint)) return `${cmd} ${args[0]}`;
      failures.push(`${cmd} ${args[0]}: still mounted`);
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      failures.push(`${cmd} ${args[0]}: ${e.code === 'ENOENT' ? 'not installed' : (e.stderr?.trim() || e.message)}`);
    }
  }
  throw new RosetError('UNMOUNT_FAILED', `Could not unmount ${mountpoint}: ${failures.join('; ')}`, { mountpoint });
}

export function registerUnmount(program: Command): void {
  program
    .command('unmount')
    .description('Stop the roset-mount daemon serving PATH (it drains uploads, then unmounts), or clear a stale FUSE mount')
    .argument('<path>', 'mountpoint')
    .addOption(new Option('--timeout <seconds>', 'how long to wait for the daemon to exit (0: no limit)').default(DEFAULT_TIMEOUT_S * 1000, String(DEFAULT_TIMEOUT_S)).argParser(parseSeconds))
    .option('--json', 'print {"mountpoint", "pid", "method"} as JSON')
    .action(action(async (path: string, opts: UnmountOptions, cmd: Command) => {
      const { stateDir } = resolveConfig(globalsOf(cmd));
      const mountpoint = await realOrResolved(path);
      const daemon = readDaemonState(stateDir);
      let pid: number | null = null;
      let method: string;

      if (daemon?.running && (await realOrResolved(daemon.mountpoint)) === mountpoint) {
        pid = daemon.pid;
        try {
          process.kill(pid, 'SIGTERM');
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'ESRCH') throw new RosetError('UNMOUNT_FAILED', `Cannot signal roset-mount (pid ${pid}): ${code}`, { pid, mountpoint });
        }
        if (!(await waitForExit(pid, opts.timeout))) {
          throw new RosetError('TIMEOUT', `roset-mount (pid ${pid}) is still running ${opts.timeout / 1000}s after SIGTERM; it may still be draining uploads`, { pid, mountpoint });
        }
        method = 'daemon';
        // A daemon that died while stopping can leave its mount behind.
        if (fuseMountpoints().includes(mountpoint)) method = `daemon, then ${await forceUnmount(mountpoint)}`;
      } else if (fuseMountpoints().includes(mountpoint)) {
        method = await forceUnmount(mountpoint);
      } else {
        const why = daemon ? `${daemon.file} names ${daemon.mountpoint} (pid ${daemon.pid}, ${daemon.running ? 'running' : 'not running'})` : `no daemon.json in ${stateDir}`;
        throw new RosetError('NOT_MOUNTED', `${path} is not a FUSE mount, and no running roset-mount serves it (${why})`, { mountpoint });
      }

      if (opts.json) printJson({ mountpoint, pid, method });
      else println(pid !== null ? `unmounted ${mountpoint} (roset-mount pid ${pid} exited)` : `unmounted stale mount ${mountpoint} (${method})`);
    }));
}
