/**
 * `roset ref get|set|delete|list|log`: named pointers at completed commits.
 *
 * `ref set --expect` is the compare-and-swap of design §1 (`--expect none`: the ref must
 * not exist yet); a mismatch exits 1 with REF_CONFLICT and the current commit in the
 * details. `ref log` lists every move oldest first, rollbacks included.
 */
import type { Command } from 'commander';
import type { Ref, RefLogEntry } from '../../sdk/index.js';
import { RosetError } from '../../errors/index.js';
import { action, clientFor, parseExpect, printJson, println } from '../context.js';

interface JsonOpt {
  json?: boolean;
}

function describeRef(r: Ref): string {
  const msg = r.commit.message ? `  "${r.commit.message}"` : '';
  return `${r.name} -> ${r.commitId}  ${r.commit.path}  (${r.updatedAt} by ${r.updatedBy})${msg}`;
}

function describeMove(e: RefLogEntry): string {
  return `${e.updatedAt}  ${e.fromCommitId ?? '(none)'} -> ${e.toCommitId ?? '(deleted)'}  by ${e.updatedBy}`;
}

export function registerRef(program: Command): void {
  const ref = program.command('ref').description('Read and move refs (named pointers at completed commits)');

  ref
    .command('get')
    .description('Show the commit a ref points at')
    .argument('<name>', 'ref name')
    .option('--json', 'print the ref as JSON')
    .action(action(async (name: string, opts: JsonOpt, cmd: Command) => {
      const r = await clientFor(cmd).getRef(name);
      if (!r) throw new RosetError('REF_NOT_FOUND', `No ref ${name}`);
      if (opts.json) printJson(r);
      else println(describeRef(r));
    }));

  ref
    .command('set')
    .description('Point a ref at a completed commit')
    .argument('<name>', 'ref name')
    .argument('<commitId>', 'a completed commit')
    .option('--expect <commitId>', 'compare-and-swap: only move the ref if it points at this commit ("none": only if it does not exist)')
    .option('--json', 'print the ref as JSON')
    .action(action(async (name: string, commitId: string, opts: JsonOpt & { expect?: string }, cmd: Command) => {
      const r = await clientFor(cmd).updateRef(name, commitId, { expectedCommitId: parseExpect(opts.expect) });
      if (opts.json) printJson(r);
      else println(describeRef(r));
    }));

  ref
    .command('delete')
    .description('Delete a ref (its log is kept)')
    .argument('<name>', 'ref name')
    .option('--json', 'print {"name", "deleted": true} as JSON')
    .action(action(async (name: string, opts: JsonOpt, cmd: Command) => {
      await clientFor(cmd).deleteRef(name);
      if (opts.json) printJson({ name, deleted: true });
      else println(`deleted ref ${name}`);
    }));

  ref
    .command('list')
    .description('List refs')
    .option('--json', 'print an array of refs as JSON')
    .action(action(async (opts: JsonOpt, cmd: Command) => {
      const client = clientFor(cmd);
      const refs = await client.listAll((o) => client.listRefs(o));
      if (opts.json) printJson(refs);
      else for (const r of refs) println(describeRef(r));
    }));

  ref
    .command('log')
    .description('Every move of a ref, oldest first')
    .argument('<name>', 'ref name')
    .option('--json', 'print an array of log entries as JSON')
    .action(action(async (name: string, opts: JsonOpt, cmd: Command) => {
      const client = clientFor(cmd);
      const entries = await client.listAll((o) => client.getRefLog(name, o));
      if (opts.json) printJson(entries);
      else for (const e of entries) println(describeMove(e));
    }));
}
