/**
 * Where the API may listen without TLS.
 *
 * Every request carries an API key, and every reply metadata (paths, names, commits);
 * over plain HTTP both cross the network in clear text, where anyone on the path can
 * read the key and then act with it. So the API serves plain HTTP only on a loopback
 * address (127.0.0.0/8, ::1, `localhost`), unless TLS is configured or the operator
 * says explicitly that the network is trusted (`--insecure-listen`).
 *
 * Invariant: pure (no I/O, no DNS): a host name other than `localhost` counts as
 * non-loopback, whatever it would resolve to, and so does the empty host (every
 * address).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ApiError } from '../errors/index.js';

export interface TlsFiles {
  /** PEM certificate chain of the server, leaf first. */
  certFile: string;
  /** PEM private key of the certificate. */
  keyFile: string;
}

export interface ListenPolicyInput {
  host: string;
  tls?: TlsFiles | null;
  insecureListen?: boolean;
}

/** True for 127.0.0.0/8, ::1 (and its IPv4-mapped form of 127/8), and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIPv4(h)) return h.startsWith('127.');
  if (isIPv6(h)) {
    // The URL parser writes an IPv6 address in its one canonical form (`0:0::1` → `::1`,
    // `::ffff:127.0.0.1` → `::ffff:7f00:1`).
    let canon: string;
    try {
      canon = new URL(`http://[${h}]/`).hostname.slice(1, -1);
    } catch {
      return false; // a zone id (fe80::1%eth0): link-local, not loopback
    }
    return canon === '::1' || /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(canon);
  }
  return false;
}

/** Throws INSECURE_LISTEN, saying why and what to do, for plain HTTP on a non-loopback address. */
export function checkListenPolicy({ host, tls, insecureListen }: ListenPolicyInput): void {
  if (tls || insecureListen || isLoopbackHost(host)) return;
  const where = host === '' ? 'every address' : host;
  throw new ApiError(
    'INSECURE_LISTEN',
    `Refusing to serve the API without TLS on ${where}: every request's API key and all metadata (paths, names, commits) would cross the network in clear text. ` +
      'Give a certificate with --tls-cert FILE --tls-key FILE (or ROSET_TLS_CERT/ROSET_TLS_KEY), ' +
      'listen on a loopback address (127.0.0.1), or pass --insecure-listen if the network is trusted.',
    { host },
  );
}
