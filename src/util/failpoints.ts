/**
 * Named pause points for crash tests. `ROSET_FAILPOINTS=commit.after-manifest,...`
 * makes the daemon log "failpoint reached" and then wait forever at those points, so a
 * test can SIGKILL it at an exact step of a commit. Unset (the normal case) a failpoint
 * is one Set lookup.
 *
 * Points: commit.after-snapshot, upload.after-first-object, commit.after-manifest,
 * group.after-record.
 */
import type { Logger } from 'pino';

const active = new Set((process.env.ROSET_FAILPOINTS ?? '').split(',').map((s) => s.trim()).filter(Boolean));

export async function failpoint(name: string, log: Logger): Promise<void> {
  if (!active.has(name)) return;
  log.warn({ failpoint: name }, 'failpoint reached');
  await new Promise<never>(() => {});
}
