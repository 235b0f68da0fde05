/**
 * Entry point of the `roset` CLI (`bin/roset.js` imports this file).
 *
 * Owns the process exit code: commander's parse errors become 2, help and version 0;
 * command failures are mapped by context.ts's `action` wrapper.
 */
import { CommanderError } from 'commander';
import { buildProgram } from './program.js';
import { reportError } from './context.js';

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has printed its message (or the help) already.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    process.exitCode = reportError(err, false);
  }
}

await main(process.argv);
