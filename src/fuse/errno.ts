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

const NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(ERRNO)) if (!NAMES.has(n)) NAMES.set(n, name);
NAMES.set(ERRNO.ENOTSUP!, 'ENOTSUP'); // EOPNOTSUPP on Linux: the name the code table uses

/** The name of an errno, either sign (`-30` → `EROFS`). */
export function errnoName(errno: number): string {
  return NAMES.get(Math.abs(errno)) ?? 'other';
}

export const ENOTSUP = -ERRNO.ENOTSUP!;
