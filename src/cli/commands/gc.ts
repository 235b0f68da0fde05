/**
 * `roset gc`: garbage collection, run by the control plane (`POST /v1/gc`) that holds
 * the metadata, so it runs from a node or from anywhere with the API URL and a key.
 * What it removes and why it is safe: docs/SEMANTICS.md, "Garbage collection".
 *
 * Output: what went (or, with `--dry-run`, what would go) and the bytes freed; `--json`
 * prints the whole report. On a terminal, a line shows the run's step and how far it
 * is (`GET /v1/gc`).
 */
import type { Command } from 'commander';
import type { GcReport } from '../../sdk/index.js';
import { duration, wholeNumber } from '../../util/cli-args.js';
import { action, clientFor, printJson, println } from '../context.js';
import { formatBytes, ProgressLine } from '../format.js';

interface GcOptions {
  keepLast?: number;
  keepWithin: number;
  grace: number;
  pinExpiry?: number;
  dryRun?: boolean;
  json?: boolean;
}

function describe(r: GcReport): string[] {
  const verb = r.dryRun ? 'would purge' : 'purged';
  const lines: string[] = [];
  for (const d of r.softDeleted) lines.push(`${r.dryRun ? 'would soft-delete' : 'soft-deleted'} (keep-last) ${d.commitId}`);
  for (const d of r.notDeleted) lines.push(`kept (keep-last could not delete, ${d.code}) ${d.commitId}`);
  for (const p of r.purged) lines.push(`${verb} ${p.commitId}  ${p.path}`);
  for (const k of r.kept) lines.push(`kept ${k.commitId}  ${k.path}  (${k.reason})`);
  lines.push(`${r.dryRun ? 'would delete' : 'deleted'} ${r.manifestsDeleted} manifests (${formatBytes(r.manifestBytes)}) and ${r.objectsDeleted} of ${r.objectsListed} objects (${formatBytes(r.bytesFreed)})`);
  if (r.objectsInGrace > 0 || r.objectsPinned > 0) lines.push(`kept ${r.objectsInGrace} unreferenced objects younger than the grace period and ${r.objectsPinned} pinned by uploads`);
  // A control plane older than pin expiry answers without these fields.
  const expired = r.agentsExpired ?? [];
  if (expired.length > 0) lines.push(`${r.dryRun ? 'would expire' : 'expired'} ${r.pinsExpired} pins of agents not heard from within the pin expiry (${r.dryRun ? 'would deregister' : 'deregistered'}): ${expired.join(', ')}`);
  return lines;
}

export function registerGc(program: Command): void {
  program
    .command('gc')
    .description('Purge soft-deleted, unreferenced commits and delete the objects no kept commit references')
    .option('--keep-last <n>', 'first soft-delete, under each parent folder, the committed folders beyond the newest N (never one a ref points at)', wholeNumber)
    .option('--keep-within <duration>', 'ref-log entries this recent keep the commits they name', duration, 7 * 86_400_000)
    .option('--grace <duration>', 'unreferenced objects last modified more recently stay', duration, 86_400_000)
    .option('--pin-expiry <duration>', 'pins of uploads held by an agent not heard from for this long expire: the agent is deregistered (default 7d; never below the agent timeout)', duration)
    .option('--dry-run', 'print what would go and the bytes freed; change nothing')
    .option('--json', 'print the report as JSON')
    .action(action(async (opts: GcOptions, cmd: Command) => {
      const progress = new ProgressLine();
      const started = Date.now();
      const client = clientFor(cmd);
      // The run answers when it is done; meanwhile a terminal shows where it is, as the
      // process that runs it tells (another process behind the same URL: the time only).
      let step = '';
      const tick = progress.enabled ? setInterval(() => {
        client.gcStatus().then((s) => {
          step = s.running && s.phase ? `${s.phase} ${s.done ?? 0}${s.total ? `/${s.total}` : ''}` : '';
        }, () => undefined);
        progress.draw(`garbage collection${opts.dryRun ? ' (dry run)' : ''}: ${Math.round((Date.now() - started) / 1000)}s${step ? `, ${step}` : ''}`);
      }, 500) : null;
      let report: GcReport;
      try {
        report = await client.gc({
          keepLast: opts.keepLast, keepWithinSeconds: opts.keepWithin / 1000, graceSeconds: opts.grace / 1000,
          // Sent only when given: the control plane's default applies, and an older one still answers.
          pinExpirySeconds: opts.pinExpiry === undefined ? undefined : opts.pinExpiry / 1000,
          dryRun: opts.dryRun === true,
        });
      } finally {
        if (tick) clearInterval(tick);
        progress.clear();
      }
      if (opts.json) printJson(report);
      else for (const line of describe(report)) println(line);
    }));
}
