/**
 * Database URLs as they may be shown: in logs, in error messages.
 *
 * Owns: `redactDatabaseUrl`, the one way a metadata database URL is written out.
 * Invariant: what it returns never contains the password, whether the URL carries it
 * as `user:password@` or as a `password=` query parameter, and whether or not the
 * string parses as a URL.
 */

const SECRET_PARAM = /password/i;

/** `postgres://roset:***@db:5432/roset` for `postgres://roset:secret@db:5432/roset`. */
export function redactDatabaseUrl(url: string): string {
  let u: URL | null = null;
  try {
    // Only a URL with an authority (`scheme://`) has its password where URL finds it.
    if (url.includes('://')) u = new URL(url);
  } catch { /* not a URL */ }
  if (!u) {
    // Keep nothing that might be a secret: a `user:secret@host` shape loses everything
    // between the first ':' after the scheme and the last '@'.
    return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)?([^:@/]*):[^@]*@/i, (_m, scheme: string | undefined, user: string) => `${scheme ?? ''}${user}:***@`)
      .replace(/(password\s*=\s*)('[^']*'|\S+)/gi, '$1***');
  }
  if (u.password) u.password = '***';
  for (const key of [...u.searchParams.keys()]) {
    if (SECRET_PARAM.test(key)) u.searchParams.set(key, '***');
  }
  return u.toString();
}
