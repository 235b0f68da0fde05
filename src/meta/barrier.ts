/**
 * The one way a refusal by the write barrier is told: the error of a change refused
 * because a folder at or above it is sealing (SEALED) or committed (COMMITTED).
 *
 * Owns: the code and the message of that error, wherever the barrier is read (inside a
 * metadata transaction, or by the core for an open for writing).
 */
import { NamespaceError } from '../errors/index.js';
import type { Barrier } from './types.js';

/** `at`: the path of the folder that refuses (its id when it has no path). */
export function barrierError(b: Barrier, at: string, what?: string): NamespaceError {
  const refused = what ? `: ${what} refused` : '';
  return b.code === 'SEALED'
    ? new NamespaceError('SEALED', `${at} is sealing for a commit${refused}`, { path: at })
    : new NamespaceError('COMMITTED', `${at} is committed and immutable${refused}`, { path: at });
}
