/**
 * `roset key create|list|revoke`: API keys, one per node or per person, each revocable
 * on its own.
 *
 * `key create` prints the token once: the server keeps only its hash, so it cannot be
 * shown again (the warning goes to stderr, the token alone to stdout, so that
 * `TOKEN=$(roset key create --name n)` works). `key list` never shows a token. A
 * revoked key is refused from the next request on; revoking it again changes nothing.
 */
import type { Command } from 'commander';
import type { ApiKey } from '../../sdk/index.js';
import { action, clientFor, printJson, println } from '../context.js';

interface JsonOpt {
  json?: boolean;
}

function describeKey(k: ApiKey): string {
  const state = k.revokedAt ? `revoked ${k.revokedAt}` : 'live';
  return `${k.id}  ${JSON.stringify(k.name)}  created ${k.createdAt}  ${state}`;
}

export function registerKey(program: Command): void {
  const key = program.command('key').description('Create, list and revoke API keys (one per node or person)');

  key
    .command('create')
    .description('Create an API key and print its token, once: it is not stored and cannot be shown again')
    .requiredOption('--name <name>', 'who or what holds the key, e.g. a node or a person (1-128 characters)')
    .option('--json', 'print {"id", "name", "createdAt", "revokedAt", "token"} as JSON')
    .action(action(async (opts: JsonOpt & { name: string }, cmd: Command) => {
      const k = await clientFor(cmd).createKey(opts.name);
      process.stderr.write(`roset: created key ${k.id} (${JSON.stringify(k.name)}). Store its token now: it will not be shown again.\n`);
      if (opts.json) printJson(k);
      else println(k.token);
    }));

  key
    .command('list')
    .description('List API keys, revoked ones included (never their tokens)')
    .option('--json', 'print an array of keys as JSON')
    .action(action(async (opts: JsonOpt, cmd: Command) => {
      const client = clientFor(cmd);
      const keys = await client.listAll((o) => client.listKeys(o));
      if (opts.json) printJson(keys);
      else for (const k of keys) println(describeKey(k));
    }));

  key
    .command('revoke')
    .description('Revoke an API key: it is refused from the next request on')
    .argument('<id>', 'key id, as `roset key list` shows it')
    .option('--json', 'print the revoked key as JSON')
    .action(action(async (id: string, opts: JsonOpt, cmd: Command) => {
      const k = await clientFor(cmd).revokeKey(id);
      if (opts.json) printJson(k);
      else println(`revoked ${describeKey(k)}`);
    }));
}
