/**
 * Object keys as every backend accepts them: the one validator, and the reserved
 * work prefix.
 *
 * Owns: `WORK_DIR` (`.roset`), where a backend keeps its own objects and files
 * (temporary files, multipart parts, capability probes), and the rule for a caller's
 * key.
 *
 * Invariant: a valid key is a relative path of non-empty segments, none `.` or `..`,
 * without NUL, and outside `WORK_DIR`; so on a directory it never leaves the root, and
 * on a bucket it never escapes the prefix or touches the backend's own objects.
 */
import { StoreError } from '../errors/index.js';

export const WORK_DIR = '.roset';

/** Throws StoreError('BAD_REQUEST') unless `key` is a valid object key. */
export function assertValidKey(key: string): void {
  if (!key || key.startsWith('/') || key.split('/').some((p) => p === '' || p === '.' || p === '..') || key.includes('\0')
    || key === WORK_DIR || key.startsWith(`${WORK_DIR}/`)) {
    throw new StoreError('BAD_REQUEST', `Invalid object key: ${JSON.stringify(key)}`);
  }
}
