/**
 * The CLI's view of a local `roset-mount` daemon: `<stateDir>/daemon.json`
 * (`{"pid", "mountpoint", "endpoint", "cacheMaxBytes"}`, written by the daemon while it
 * runs; `cacheMaxBytes` absent from the file of an earlier release). The
 * /proc helpers are the daemon's own (src/util/mounts.ts).
 *
 * Invariant: a pid is trusted only while the process it names is alive *and* started
 * before daemon.json was last written. After a crash the file stays behind, and its
 * pid may since belong to an unrelated process that must never get our SIGTERM.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { processAlive } from '../util/mounts.js';
import { STATE_FILES, type DaemonInfo } from '../util/state-dir.js';

export interface DaemonState extends DaemonInfo {
  file: string;
  /** The pid is alive and is the process that wrote the file. */
  running: boolean;
}

export function readDaemonState(stateDir: string): DaemonState | undefined {
  const file = join(stateDir, STATE_FILES.daemon);
  let raw: string;
  let mtimeMs: number;
  try {
    raw = readFileSync(file, 'utf8');
    mtimeMs = statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
  let rec: Partial<DaemonInfo>;
  try {
    rec = JSON.parse(raw) as Partial<DaemonInfo>;
  } catch {
    return undefined;
  }
  if (!Number.isInteger(rec.pid) || (rec.pid as number) <= 0 || typeof rec.mountpoint !== 'string') return undefined;
  const pid = rec.pid as number;
  return {
    pid,
    mountpoint: rec.mountpoint,
    endpoint: typeof rec.endpoint === 'string' ? rec.endpoint : '',
    ...(Number.isSafeInteger(rec.cacheMaxBytes) && (rec.cacheMaxBytes as number) >= 0 ? { cacheMaxBytes: rec.cacheMaxBytes } : {}),
    file,
    running: processAlive(pid) && !startedAfter(pid, mtimeMs),
  };
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
