/**
 * HTTPS to a Roset API whose certificate a private CA signed, for every HTTP client of
 * the API (the SDK, the CLI through it, a remote agent).
 *
 * Owns: `fetchTrusting(caFile)`, a fetch that trusts exactly the CA certificates of
 * one PEM file (the system's CAs are not added: a private deployment names its own),
 * and `tlsFailure`, which tells a TLS failure (unknown authority, a certificate that
 * does not name the host, an expired one, a server without TLS) from other network
 * errors and says what to do about it.
 *
 * Node 20's global fetch takes no CA: the fetch here is undici's, with an `Agent`
 * whose `connect` options carry the CA. One agent per CA file and content, shared by
 * every client that names it, so connections are pooled across clients.
 *
 * Invariant: a TLS failure is an answer, not an accident: callers raise it at once
 * (`SdkTlsError`, code TLS_ERROR) and never retry it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, fetch as undiciFetch } from 'undici';
import { SdkTlsError } from './errors.js';

const trusting = new Map<string, typeof globalThis.fetch>();

/**
 * A fetch that trusts the CA certificates in `caFile` (PEM), or the global fetch when
 * no file is named. Throws SdkTlsError when the file cannot be read or holds no
 * certificate.
 */
export function fetchTrusting(caFile?: string): typeof globalThis.fetch {
  if (!caFile) return globalThis.fetch;
  let ca: Buffer;
  try {
    ca = readFileSync(caFile);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new SdkTlsError(`Cannot read the CA file ${caFile} (${code}): check --ca-file or ROSET_CA_FILE`, { caFile });
  }
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
    throw new SdkTlsError(`The CA file ${caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, { caFile });
  }
  const key = `${caFile}\0${createHash('sha256').update(ca).digest('hex')}`;
  let f = trusting.get(key);
  if (!f) {
    const dispatcher = new Agent({ connect: { ca } });
    const trustingFetch = (input: unknown, init?: Record<string, unknown>): Promise<unknown> =>
      undiciFetch(input as Parameters<typeof undiciFetch>[0], { ...init, dispatcher } as Parameters<typeof undiciFetch>[1]);
    f = trustingFetch as unknown as typeof globalThis.fetch;
    trusting.set(key, f);
  }
  return f;
}

/** OpenSSL's codes for a chain that leads to no trusted CA. */
const UNKNOWN_AUTHORITY = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE',
]);
const OUT_OF_DATE = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
const NOT_TLS = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_SSL_HTTP_REQUEST']);
const OTHER_CERT = new Set([
  'CERT_REVOKED', 'CERT_REJECTED', 'INVALID_CA', 'INVALID_PURPOSE', 'PATH_LENGTH_EXCEEDED', 'CERT_CHAIN_TOO_LONG',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'ERR_TLS_CERT_ALTNAME_FORMAT',
]);

interface Found {
  code: string;
  err: { code?: unknown; reason?: unknown; host?: unknown; message?: unknown };
}

/** The first error with a string code along `cause` (and AggregateError members). */
function findCode(err: unknown): Found | undefined {
  const queue: unknown[] = [err];
  for (let seen = 0; queue.length > 0 && seen < 12; seen++) {
    const e = queue.shift() as Found['err'] & { cause?: unknown; errors?: unknown[] } | null | undefined;
    if (!e || typeof e !== 'object') continue;
    if (typeof e.code === 'string' && e.code !== '' && !e.code.startsWith('UND_ERR')) return { code: e.code, err: e };
    if (e.cause !== undefined) queue.push(e.cause);
    if (Array.isArray(e.errors)) queue.push(...e.errors);
  }
  return undefined;
}

/**
 * What went wrong, when `err` (thrown by a fetch of `url`) is a TLS failure: a sentence
 * that names the URL, the cause and the remedy, with the OpenSSL or Node code; else
 * undefined.
 */
export function tlsFailure(err: unknown, url: string, caFile?: string): { code: string; message: string } | undefined {
  const found = findCode(err);
  if (!found) return undefined;
  const { code } = found;
  const host = (() => {
    try {
      return new URL(url).hostname;
    } catch {
      return url;
    }
  })();
  if (UNKNOWN_AUTHORITY.has(code)) {
    const trusted = caFile ? `the CA in ${caFile} did not sign it` : 'pass --ca-file or set ROSET_CA_FILE to the CA that signed it';
    return { code, message: `Cannot trust ${url}: certificate signed by an unknown authority (${code}): ${trusted}` };
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const reason = typeof found.err.reason === 'string' ? `: ${found.err.reason}` : '';
    return { code, message: `Cannot trust ${url}: its certificate does not name ${host} (${code}${reason}): use a host name or address the certificate holds` };
  }
  if (OUT_OF_DATE.has(code)) {
    return { code, message: `Cannot trust ${url}: its certificate ${code === 'CERT_HAS_EXPIRED' ? 'has expired' : 'is not valid yet'} (${code}): renew it, or check the clocks` };
  }
  if (NOT_TLS.has(code)) {
    return { code, message: `Cannot speak TLS to ${url} (${code}): the server answers without TLS; use an http:// URL, or serve the API with --tls-cert/--tls-key` };
  }
  if (OTHER_CERT.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_')) {
    const detail = typeof found.err.message === 'string' && found.err.message !== '' ? `: ${found.err.message}` : '';
    return { code, message: `TLS with ${url} failed (${code})${detail}` };
  }
  return undefined;
}
