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

/**
 * The refusal of a soft delete that would take a ref's folder out of the namespace:
 * `ref` points at the commit of `path`, which is `name` or a folder inside it.
 */
export function refHeld(name: string, ref: string, path: string): NamespaceError {
  return new NamespaceError('REFERENCED_BY_REF', `${name} cannot be deleted: ref ${ref} points at the commit of ${path}`, { ref, path });
}

/** The refusal of a ref move onto the commit of a folder that was soft-deleted. */
export function folderDeleted(commitId: string, path: string): NamespaceError {
  return new NamespaceError('COMMIT_FOLDER_DELETED', `${path} was deleted: a ref cannot point at its commit ${commitId}`, { commitId, path });
}
