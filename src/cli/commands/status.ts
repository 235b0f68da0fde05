/**
 * `roset status` and `roset log [PATH]`: what the API and the local daemon are doing.
 *
 * `status` exits 1 when the API cannot be reached (so scripts can wait on it); the
 * error's details then still name the endpoint and where it came from.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { RosetError } from '../../errors/index.js';
import { SdkError, type AgentInfo, type AutoCommitRules, type RosetClient, type Commit, type Health, type Mount } from '../../sdk/index.js';
import { action, clientFor, parsePositiveInt, printJson, println } from '../context.js';
import { readDaemonState } from '../daemon-state.js';
import { describeProgress, formatBytes } from '../format.js';
import { resolveTarget } from '../paths.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('Show the API endpoint and health, the local daemon, mounts with their mountpoints, the nodes (agents) serving them, and pending commits')
    .option('--json', 'print the status as JSON')
    .action(action(async (opts: { json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const { config } = client;
      const daemon = readDaemonState(config.stateDir) ?? null;
      const localAutoCommit = readAutoCommitState(config.stateDir);
      const autoCommitFailures = localAutoCommit?.failures ?? [];
      let health: Health;
      try {
        health = await client.getHealth();
      } catch (err) {
        if (err instanceof RosetError) {
          throw new SdkError(err instanceof SdkError ? err.wireCode : err.rosetCode, err.message, err instanceof SdkError ? err.status : 0, {
            ...err.details, endpoint: config.apiUrl, endpointSource: config.sources.apiUrl, daemon,
          });
        }
        throw err;
      }
      const mounts = await client.listAll((o) => client.listMounts(o));
      const pending: Commit[] = [];
      const agents: AgentInfo[] = [];
      const mountRules: AutoCommitRules[] = [];
      for (const m of mounts) {
        const c = client.withMountId(m.id);
        pending.push(...(await c.listAll((o) => c.listCommits({ ...o, status: 'pending' }))));
        agents.push(...(await c.listAll((o) => c.listAgents(o))));
        const rules = await mountRulesOf(c, m.id);
        if (rules) mountRules.push(rules);
      }
      // What the local daemon applies (its flags, and the mount's rules at the version it
      // last read) beside what each mount keeps through the API.
      const autoCommitRules = {
        daemon: localAutoCommit ? { flags: localAutoCommit.flags, mount: localAutoCommit.mount, mountVersion: localAutoCommit.mountVersion } : null,
        mounts: mountRules,
      };

      if (opts.json) {
        printJson({ endpoint: config.apiUrl, endpointSource: config.sources.apiUrl, stateDir: config.stateDir, health, daemon, mounts, agents, pendingCommits: pending, autoCommitRules, autoCommitFailures });
        return;
      }
      println(`endpoint  ${config.apiUrl} (from ${config.sources.apiUrl})`);
      println(`api       ${health.status}, version ${health.version}`);
      if (daemon) println(`daemon    pid ${daemon.pid} on ${daemon.mountpoint} (${daemon.running ? 'running' : 'not running'})${cacheLimit(daemon.cacheMaxBytes)}`);
      println(mounts.length === 0 ? 'mounts    (none)' : 'mounts');
      for (const m of mounts) println(`  ${describeMount(m)}`);
      if (agents.length > 0) {
        println('nodes');
        for (const a of agents) println(`  ${a.id}  ${a.hostname}  ${a.mountpoint ?? ''}  ${a.connected ? 'connected' : 'silent'} (last heard ${a.lastSeenAt})`);
      }
      const withRules = mountRules.filter((r) => r.rules.length > 0);
      if (localAutoCommit || withRules.length > 0) {
        println('auto-commit rules');
        if (localAutoCommit) {
          println(`  daemon flags        ${localAutoCommit.flags.length ? localAutoCommit.flags.join('  ') : '(none)'}`);
          println(`  daemon applies      ${localAutoCommit.mount.length ? localAutoCommit.mount.join('  ') : '(none)'} from its mount (version ${localAutoCommit.mountVersion})`);
        }
        for (const r of withRules) println(`  mount ${r.mountId}  ${r.rules.map((x) => x.rule).join('  ')}  (version ${r.version}, set ${r.updatedAt ?? '?'} by ${r.updatedBy ?? '?'})`);
      }
      if (autoCommitFailures.length > 0) {
        println('auto-commit failures (newest last)');
        for (const f of autoCommitFailures) println(`  ${f.at}  ${f.folder}  ${f.code}: ${f.message}  (rule ${f.rule})`);
      }
      println(pending.length === 0 ? 'pending   (none)' : 'pending commits');
      for (const c of pending) println(`  ${c.id}  ${c.path}  ${describeProgress(c)}  since ${c.createdAt}`);
    }));
}

/** The daemon's read cache limit, as `status` prints it after the daemon line. */
function cacheLimit(bytes: number | undefined): string {
  if (bytes === undefined) return '';
  return `, read cache ${bytes > 0 ? `up to ${formatBytes(bytes)}` : 'without limit'}`;
}

/** A mount's auto-commit rules; null from a server of an earlier release, which keeps none (it has no such route). */
async function mountRulesOf(c: RosetClient, mountId: string): Promise<AutoCommitRules | null> {
  try {
    return await c.getAutoCommitRules({ mountId });
  } catch (err) {
    if (err instanceof SdkError && err.wireCode === 'ROUTE_NOT_FOUND') return null;
    throw err;
  }
}

interface LocalAutoCommit {
  flags: string[];
  mount: string[];
  mountVersion: number;
  failures: Array<{ at: string; rule: string; folder: string; code: string; message: string }>;
}

/**
 * The local daemon's auto-commit state (`<stateDir>/auto-commit.json`): its rules and
 * recent failures; null without a daemon that wrote one. A file of an older daemon holds
 * failures only.
 */
function readAutoCommitState(stateDir: string): LocalAutoCommit | null {
  let text: string;
  try {
    text = readFileSync(path.join(stateDir, 'auto-commit.json'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'EACCES') return null;
    throw err;
  }
  let j: Partial<LocalAutoCommit>;
  try {
    j = JSON.parse(text) as Partial<LocalAutoCommit>;
  } catch {
    // Written atomically, so only another program's file: not ours to show.
    return null;
  }
  const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  return {
    flags: strings(j.flags), mount: strings(j.mount), mountVersion: typeof j.mountVersion === 'number' ? j.mountVersion : -1,
    failures: Array.isArray(j.failures) ? j.failures : [],
  };
}

function describeMount(m: Mount): string {
  return `${m.id}  ${m.name}  ${m.store}  ${m.mountpoints.length ? m.mountpoints.join(', ') : '(not mounted)'}`;
}

export function registerLog(program: Command): void {
  program
    .command('log')
    .description('List commits, newest first: of the folder at PATH, or all of the mount')
    .argument('[path]', 'folder under a mountpoint, or a mount-relative path')
    .option('-n, --limit <count>', 'show at most this many commits', parsePositiveInt)
    .option('--json', 'print an array of commits as JSON')
    .action(action(async (path: string | undefined, opts: { limit?: number; json?: boolean }, cmd: Command) => {
      let client = clientFor(cmd);
      let nodeId: string | undefined;
      if (path !== undefined) {
        const target = await resolveTarget(client, path);
        client = target.client;
        nodeId = target.node.id;
      }
      const commits: Commit[] = [];
      for await (const c of client.paginate((o) => client.listCommits({ ...o, nodeId }), { limit: opts.limit ? Math.min(opts.limit, 100) : undefined })) {
        commits.push(c);
        if (opts.limit !== undefined && commits.length >= opts.limit) break;
      }
      if (opts.json) {
        printJson(commits);
        return;
      }
      // Decorate like `git log`: which refs point at each commit.
      const refsByCommit = new Map<string, string[]>();
      for (const r of await client.listAll((o) => client.listRefs(o))) {
        refsByCommit.set(r.commitId, [...(refsByCommit.get(r.commitId) ?? []), r.name]);
      }
      for (const c of commits) {
        const refs = refsByCommit.get(c.id);
        const extra = c.status === 'failed' && c.error ? `  ${c.error.code}: ${c.error.message}` : c.message ? `  ${c.message}` : '';
        // A purged commit stays in the history, but its files are gone: say so.
        const purged = c.purgedAt ? `  [purged ${c.purgedAt}]` : '';
        println(`${c.id}  ${c.status.padEnd(9)}  ${c.createdAt}  ${c.path}${refs ? `  (${refs.join(', ')})` : ''}${purged}${extra}`);
      }
    }));
}
