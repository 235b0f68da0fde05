/**
 * Errors → negative errno for FUSE replies, read from the one code table
 * (src/errors/codes.ts). Errors that are not RosetErrors are logged by the caller and
 * become EIO, never success.
 */
import { constants } from 'node:os';
import { errnoOf, RosetError, toRosetError } from '../errors/index.js';

/** Node's table lacks a few Linux errnos the code table uses: EREMOTE ("Object is remote") is 66 on Linux. */
const ERRNO: Record<string, number> = { EREMOTE: 66, ...(constants.errno as Record<string, number>) };

export function toErrno(err: unknown): number {
  if (err instanceof RosetError) return -(ERRNO[errnoOf(err.rosetCode)] ?? ERRNO.EIO!);
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && ERRNO[code] !== undefined) return -ERRNO[code]!;
  // Not an errno (a full staging index is SQLITE_FULL): the code table decides.
  return -(ERRNO[errnoOf(toRosetError(err).rosetCode)] ?? ERRNO.EIO!);
}

export const ENOTSUP = -ERRNO.ENOTSUP!;
