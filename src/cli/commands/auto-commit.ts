/**
 * `roset auto-commit list|set|add|remove`: the auto-commit rules a mount keeps through
 * the API (`/v1/mounts/{mountId}/auto-commit`). Every `roset-mount` serving the mount
 * applies them together with its own `--auto-commit` rules, without a restart.
 *
 * The mount is `--mount-id` (or ROSET_MOUNT_ID), else the server's default mount. `add`
 * and `remove` change one rule by compare-and-swap on the list's version, so two of
 * them at once never lose either change; `set` replaces the whole list (no rules:
 * clears it). The server checks each rule; a bad one exits 1 with
 * INVALID_AUTO_COMMIT_RULE and changes nothing.
 */
import type { Command } from 'commander';
import type { AutoCommitRules } from '../../sdk/index.js';
import { action, clientFor, printJson, println } from '../context.js';

interface JsonOpt {
  json?: boolean;
}

function show(r: AutoCommitRules): void {
  if (r.rules.length === 0) println(`(no auto-commit rules on mount ${r.mountId})`);
  for (const x of r.rules) println(`${x.rule}    folders ${x.folders}, marker ${x.marker}${x.ref ? `, ref ${x.ref}` : ''}`);
}

export function registerAutoCommit(program: Command): void {
  const ac = program
    .command('auto-commit')
    .description("The mount's auto-commit rules (FOLDERS:MARKER[:REF], e.g. 'checkpoints/*:@dcp:latest'), applied by every roset-mount serving it beside its own --auto-commit rules");

  ac
    .command('list')
    .description("List the mount's auto-commit rules")
    .option('--json', 'print {mountId, rules: [{rule, folders, marker, ref}], version, updatedAt, updatedBy} as JSON')
    .action(action(async (opts: JsonOpt, cmd: Command) => {
      const r = await clientFor(cmd).getAutoCommitRules();
      if (opts.json) printJson(r);
      else show(r);
    }));

  ac
    .command('set')
    .description("Replace the mount's auto-commit rules with these (none: remove them all)")
    .argument('[rules...]', 'rules, each FOLDERS:MARKER[:REF]')
    .option('--json', 'print the rules after the change as JSON')
    .action(action(async (rules: string[], opts: JsonOpt, cmd: Command) => {
      const r = await clientFor(cmd).setAutoCommitRules(rules);
      if (opts.json) printJson(r);
      else show(r);
    }));

  ac
    .command('add')
    .description('Add a rule to the mount (nothing if it is there already)')
    .argument('<rule>', 'FOLDERS:MARKER[:REF]')
    .option('--json', 'print the rules after the change as JSON')
    .action(action(async (rule: string, opts: JsonOpt, cmd: Command) => {
      const r = await clientFor(cmd).addAutoCommitRule(rule);
      if (opts.json) printJson(r);
      else show(r);
    }));

  ac
    .command('remove')
    .description('Remove a rule from the mount (nothing if it is not there)')
    .argument('<rule>', 'the rule exactly as listed')
    .option('--json', 'print the rules after the change as JSON')
    .action(action(async (rule: string, opts: JsonOpt, cmd: Command) => {
      const r = await clientFor(cmd).removeAutoCommitRule(rule);
      if (opts.json) printJson(r);
      else show(r);
    }));
}
