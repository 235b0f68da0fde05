/**
 * The CLI's view of a local `roset-mount` daemon: `<stateDir>/daemon.json`
 * (`{"pid", "mountpoint", "endpoint"}`, written by the daemon while it runs) and
 * `/proc/mounts`.
 *
 * Invariant: a pid is trusted only while the process it names is alive *and* started
 * before daemon.json was last written. After a crash the file stays behind, and its
 * pid may since belong to an unrelated process that must never get our SIGTERM.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const DAEMON_FILE = 'daemon.json';

export interface DaemonRecord {
  pid: number;
  mountpoint: string;
  endpoint: string;
}

export interface DaemonState extends DaemonRecord {
  file: string;
  /** The pid is alive and is the process that wrote the file. */
  running: boolean;
}

export function readDaemonState(stateDir: string): DaemonState | undefined {
  const file = join(stateDir, DAEMON_FILE);
  let raw: string;
  let mtimeMs: number;
  try {
    raw = readFileSync(file, 'utf8');
    mtimeMs = statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
  let rec: Partial<DaemonRecord>;
  try {
    rec = JSON.parse(raw) as Partial<DaemonRecord>;
  } catch {
    return undefined;
  }
  if (!Number.isInteger(rec.pid) || (rec.pid as number) <= 0 || typeof rec.mountpoint !== 'string') return undefined;
  const pid = rec.pid as number;
  return {
    pid,
    mountpoint: rec.mountpoint,
    endpoint: typeof rec.endpoint === 'string' ? rec.endpoint : '',
    file,
    running: isAlive(pid) && !startedAfter(pid, mtimeMs),
  };
}

/** Whether `pid` is a live process. A zombie has exited: its parent just has not reaped it. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/** Whether `pid` started after `ms` (so it is not the process that wrote at `ms`). */
function startedAfter(pid: number, ms: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces and parentheses: split after the last ")".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const startTicks = Number(fields[19]); // field 22, starttime, in clock ticks since boot
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    if (!Number.isFinite(startTicks) || !Number.isFinite(btime)) return false;
    // USER_HZ is 100 on every Linux ABI Node runs on; btime is whole seconds, hence slack.
    const startMs = (btime + startTicks / 100) * 1000;
    return startMs > ms + 2000;
  } catch {
    return false; // no /proc: fall back to liveness alone
  }
}

/** Mountpoints of FUSE filesystems in /proc/mounts (fuse, fuse.*, fuseblk). */
export function fuseMountpoints(): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/mounts', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const [, mountpoint, fstype] = line.split(' ');
    if (mountpoint && fstype && /^fuse(\.|blk$|$)/.test(fstype)) out.push(unescapeMount(mountpoint));
  }
  return out;
}

/** /proc/mounts writes space, tab, newline and backslash as octal escapes. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}
