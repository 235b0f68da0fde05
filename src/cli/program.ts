/**
 * The `roset` command tree (design §5). Each command lives in `commands/` and is
 * registered here; a new command is one module and one `register…` line.
 *
 * Invariant: global options are defined once, on the root, and commands read them with
 * `globalsOf(cmd)`; they may be given before or after the subcommand.
 */
import { Command, Option } from 'commander';
import { SDK_VERSION } from '../sdk/index.js';
import { registerAutoCommit } from './commands/auto-commit.js';
import { registerCommit } from './commands/commit.js';
import { registerKey } from './commands/key.js';
import { registerGc } from './commands/gc.js';
import { registerPrefetch } from './commands/prefetch.js';
import { registerRecover } from './commands/recover.js';
import { registerRef } from './commands/ref.js';
import { registerServe } from './commands/serve.js';
import { registerLog, registerStatus } from './commands/status.js';
import { registerUnmount } from './commands/unmount.js';

export function buildProgram(): Command {
  const program = new Command('roset')
    .description('Atomic ML checkpoints on object storage: commit folders, move refs, inspect the mount')
    .version(SDK_VERSION, '-V, --version')
    // Usage errors exit 2 (see context.ts); exitOverride lets main() choose the code.
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .addOption(new Option('--api-url <url>', 'API URL (default: $ROSET_API_URL, the state directory\'s endpoint file, http://127.0.0.1:7070)'))
    .addOption(new Option('--api-key <key>', 'API key (default: $ROSET_API_KEY, the state directory\'s api-key file)'))
    .addOption(new Option('--mount-id <id>', 'mount to address (default: $ROSET_MOUNT_ID, else the server\'s default mount)'))
    .addOption(new Option('--state-dir <dir>', 'state directory (default: $ROSET_STATE_DIR, /var/lib/roset for root, ~/.local/state/roset)'))
    .addOption(new Option('--ca-file <file>', 'PEM file of the CA that signed an https:// API\'s certificate, trusted instead of the system\'s CAs (default: $ROSET_CA_FILE)'));

  registerCommit(program);
  registerRef(program);
  registerAutoCommit(program);
  registerStatus(program);
  registerLog(program);
  registerUnmount(program);
  registerKey(program);
  registerGc(program);
  registerPrefetch(program);
  registerRecover(program);
  registerServe(program);
  return program;
}
