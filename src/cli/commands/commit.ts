/**
 * `roset commit PATH`: seal a folder, wait for its commit, optionally move a ref.
 *
 * Order: resolve → commit → wait → (--ref) update the ref, compare-and-swap with
 * --expect. The ref moves only after the commit completed; the server would refuse
 * otherwise, so --ref with --no-wait or --group is a usage error rather than a request
 * bound to fail. With --group the commit cannot complete before the group is sealed,
 * so the command returns the pending commit without waiting.
 *
 * Invariant: a failure after the commit was made (wait timeout, failed commit, ref
 * conflict) carries the commit id in the error's details, so scripts can recover.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { RosetError } from '../../errors/index.js';
import { SdkError, type Commit, type Ref, type RosetClient } from '../../sdk/index.js';
import { UsageError, action, clientFor, parseExpect, parseSeconds, printJson, println } from '../context.js';
import { ProgressLine, commitStats } from '../format.js';
import { resolveTarget } from '../paths.js';

interface CommitOptions {
  message?: string;
  ref?: string;
  expect?: string;
  group?: string;
  wait: boolean;
  timeout: number;
  json?: boolean;
}

const DEFAULT_TIMEOUT_S = 3600;

export function registerCommit(program: Command): void {
  program
    .command('commit')
    .description('Commit a folder: it becomes immutable and lands in the bucket at once')
    .argument('<path>', 'folder under a mountpoint (e.g. /mnt/roset/ckpt/step-1), or a mount-relative path (/ckpt/step-1)')
    .option('-m, --message <msg>', 'commit message')
    .option('--ref <name>', 'move this ref to the commit once it has completed')
    .option('--expect <commitId>', 'with --ref: compare-and-swap, only move the ref if it points at this commit ("none": only if it does not exist)')
    .option('--group <id>', 'make the commit part of a commit group (it completes when the group is sealed; implies --no-wait)')
    .option('--no-wait', 'return the pending commit at once')
    .addOption(new Option('--timeout <seconds>', 'how long to wait for the commit (0: no limit)').default(DEFAULT_TIMEOUT_S * 1000, String(DEFAULT_TIMEOUT_S)).argParser(parseSeconds))
    .option('--json', 'print the commit as JSON (with a "ref" field when a ref moved)')
    .action(action(async (path: string, opts: CommitOptions, cmd: Command) => {
      if (opts.expect !== undefined && opts.ref === undefined) throw new UsageError('--expect needs --ref');
      if (opts.ref !== undefined && !opts.wait) throw new UsageError('--ref needs the commit to complete first: drop --no-wait');
      if (opts.ref !== undefined && opts.group !== undefined) {
        throw new UsageError('--ref cannot be used with --group: the commit completes when the group is sealed; move the ref then with "roset ref set"');
      }

      const target = await resolveTarget(clientFor(cmd), path);
      const client = target.client;
      let commit = await client.commit(target.node.id, { message: opts.message, groupId: opts.group });

      if (opts.wait && opts.group === undefined) {
        commit = await waitWithProgress(client, commit, opts.timeout);
      }

      let ref: Ref | undefined;
      if (opts.ref !== undefined) {
        try {
          ref = await client.updateRef(opts.ref, commit.id, { expectedCommitId: parseExpect(opts.expect) });
        } catch (err) {
          throw withCommit(err, commit, `commit ${commit.id} completed, but the ref was not moved`);
        }
      }

      if (opts.json) {
        printJson(ref ? { ...commit, ref } : commit);
        return;
      }
      if (commit.status === 'completed') println(`committed ${commit.path} as ${commit.id} (${commitStats(commit)})`);
      else println(`commit ${commit.id} of ${commit.path} is ${commit.status}${opts.group ? ` in group ${opts.group}` : ''}`);
      if (ref) println(`ref ${ref.name} -> ${ref.commitId}`);
    }));
}

async function waitWithProgress(client: RosetClient, commit: Commit, timeoutMs: number): Promise<Commit> {
  const progress = new ProgressLine();
  progress.commit(commit);
  // Ctrl-C stops the wait, not the commit: say so, so nobody commits twice.
  const onSigint = () => {
    progress.clear();
    process.stderr.write(`roset: stopped waiting; commit ${commit.id} goes on (see "roset log")\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSigint);
  try {
    return await client.waitForCommit(commit.id, { timeoutMs, onPoll: (c) => progress.commit(c) });
  } catch (err) {
    throw withCommit(err, commit);
  } finally {
    progress.clear();
    process.off('SIGINT', onSigint);
  }
}

/** Adds the commit id to an error so the caller can follow up on the commit. */
function withCommit(err: unknown, commit: Commit, prefix?: string): unknown {
  if (!(err instanceof RosetError)) return err;
  const message = prefix ? `${prefix}: ${err.message}` : err.message;
  const details = { ...err.details, commitId: commit.id, path: commit.path };
  const code = err instanceof SdkError ? err.wireCode : err.rosetCode;
  return new SdkError(code, message, err instanceof SdkError ? err.status : 0, details, { cause: err });
}
