/**
 * Named pause points for crash tests. `ROSET_FAILPOINTS=commit.after-manifest,...`
 * makes the daemon log "failpoint reached" and then wait forever at those points, so a
 * test can SIGKILL it at an exact step of a commit. Unset (the normal case) a failpoint
 * is one Set lookup.
 *
 * Points: commit.after-snapshot, commit.while-uploading, upload.after-first-object,
 * commit.after-manifest, group.after-record, gc.after-tombstone (gc raised a tombstone
 * and has not deleted the object yet).
 *
 * Named delays for race tests: `ROSET_DELAYS=open.after-check=1500,...` makes the
 * process wait that many milliseconds at each such point, widening a window a race
 * test must show is closed. Points: open.after-check (an open for writing, between
 * the barrier check and the open of the staged file), agent.before-seal (an agent on
 * another node, between receiving a seal and starting it).
 */
import type { Logger } from 'pino';

const active = new Set((process.env.ROSET_FAILPOINTS ?? '').split(',').map((s) => s.trim()).filter(Boolean));

export async function failpoint(name: string, log: Logger): Promise<void> {
  if (!active.has(name)) return;
  log.warn({ failpoint: name }, 'failpoint reached');
  await new Promise<never>(() => {});
}

const delays = new Map((process.env.ROSET_DELAYS ?? '').split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
  const [name, ms] = s.split('=');
  return [name!, Number(ms)] as const;
}).filter(([, ms]) => Number.isFinite(ms) && ms > 0));

/** Waits the delay configured for `name` (none: returns at once, without a promise tick when unset). */
export function delayPoint(name: string, log: Logger): Promise<void> | undefined {
  const ms = delays.get(name);
  if (ms === undefined) return undefined;
  log.warn({ delay: name, ms }, 'delay point reached');
  return new Promise((r) => setTimeout(r, ms));
}
