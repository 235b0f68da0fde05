/**
 * What every `roset` command shares: the global options, the client built from them,
 * output in text or JSON, and the error → exit-code contract.
 *
 * Exit codes: 0 success; 1 an operation failed (`roset: CODE: message` on stderr, or
 * the API's error JSON on stdout with --json); 2 usage error (bad arguments or
 * options; commander's own messages included).
 *
 * Invariant: stdout carries only the command's result (so `--json` output is always
 * one parseable JSON document); progress, warnings and errors without --json go to
 * stderr.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { RosetError, toRosetError } from '../errors/index.js';
import { RosetClient, SdkError } from '../sdk/index.js';

export interface GlobalOptions {
  apiUrl?: string;
  apiKey?: string;
  mountId?: string;
  stateDir?: string;
  caFile?: string;
}

/** A usage error found after commander parsed the line (conflicting options, …): exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function globalsOf(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals() as GlobalOptions;
  return { apiUrl: o.apiUrl, apiKey: o.apiKey, mountId: o.mountId, stateDir: o.stateDir, caFile: o.caFile };
}

const warned = new Set<string>();

/** The client for this invocation; state files it could not read are reported once. */
export function clientFor(cmd: Command): RosetClient {
  const client = new RosetClient(globalsOf(cmd));
  for (const w of client.config.warnings) {
    if (!warned.has(w)) {
      warned.add(w);
      process.stderr.write(`roset: warning: ${w}\n`);
    }
  }
  return client;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function println(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** The wire form of any error: SDK errors keep the server's code and details. */
export function errorBody(err: unknown): { error: { code: string; message: string; details: Record<string, unknown> } } {
  if (err instanceof SdkError) return { error: { code: err.wireCode, message: err.message, details: err.details } };
  const e: RosetError = toRosetError(err);
  return { error: { code: e.rosetCode, message: e.message, details: e.details } };
}

export function reportError(err: unknown, json: boolean): number {
  if (err instanceof UsageError) {
    process.stderr.write(`roset: ${err.message}\n`);
    return 2;
  }
  const body = errorBody(err);
  if (json) printJson(body);
  else process.stderr.write(`roset: ${body.error.code}: ${body.error.message}\n`);
  return 1;
}

/**
 * Wraps a command action: commander passes (...args, options, command); the wrapper
 * turns a thrown error into the exit-code contract, honouring the command's --json.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const cmd = args[args.length - 1] as Command;
    try {
      await fn(...args);
    } catch (err) {
      process.exitCode = reportError(err, Boolean((cmd.opts() as { json?: boolean }).json));
    }
  };
}

/** commander option parser: a number of seconds ≥ 0, returned in milliseconds. */
export function parseSeconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number of seconds >= 0');
  return n * 1000;
}

/** commander option parser: a positive integer. */
export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** `--expect none` asks that the ref does not exist yet (expectedCommitId: null). */
export function parseExpect(value: string | undefined): string | null | undefined {
  if (value === undefined) return undefined;
  return value === 'none' ? null : value;
}
