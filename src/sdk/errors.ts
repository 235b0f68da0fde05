/**
 * Errors thrown by the TypeScript SDK.
 *
 * Owns: the SdkError hierarchy and the mapping from an HTTP error response to a class.
 * Every SdkError is a RosetError, so `rosetCode` is the wire code and code that already
 * matches on RosetError codes (the CLI, the daemon) needs nothing SDK-specific.
 *
 *   SdkError                      status: HTTP status, 0 when no response was received
 *   ├─ SdkApiError                the server answered with an error body
 *   │  ├─ SdkNotFoundError        404
 *   │  └─ SdkConflictError        409 (REF_CONFLICT from a failed compare-and-swap, …)
 *   ├─ SdkNetworkError            no response: refused, reset, DNS, …  (NETWORK_ERROR)
 *   ├─ SdkTlsError                the TLS handshake failed: untrusted, mismatched or expired
 *   │                             certificate, no TLS on the server     (TLS_ERROR; never retried)
 *   ├─ SdkTimeoutError            a request or a wait ran out of time  (TIMEOUT)
 *   ├─ SdkCommitFailedError       a waited-for commit ended `failed`; code = commit's code
 *   └─ SdkGroupFailedError        a waited-for commit group ended `failed` (GROUP_FAILED)
 *
 * Invariants: `wireCode` is the code exactly as the server sent it, even one this client
 * does not know (then `rosetCode` is INTERNAL, so it always stays in ERROR_CODES); no
 * message or detail ever contains the API key.
 */
import { ERROR_CODES, RosetError, isErrorCode, type ErrorCode } from '../errors/index.js';
import type { Commit, CommitGroup } from '../api/types.js';

export class SdkError extends RosetError {
  /** HTTP status of the response; 0 when there was none (network error, wait timeout). */
  readonly status: number;
  /** The code as sent by the server (or chosen by the SDK); may be unknown to ERROR_CODES. */
  readonly wireCode: string;

  constructor(
    code: string,
    message: string | undefined,
    status: number,
    details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    const known: ErrorCode = isErrorCode(code) ? code : 'INTERNAL';
    super(known, message ?? (isErrorCode(code) ? ERROR_CODES[code].description : code), details, options);
    this.status = status;
    this.wireCode = code;
  }
}

export class SdkApiError extends SdkError {}
export class SdkNotFoundError extends SdkApiError {}
export class SdkConflictError extends SdkApiError {}

export class SdkNetworkError extends SdkError {
  constructor(message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super('NETWORK_ERROR', message, 0, details, options);
  }
}

export class SdkTlsError extends SdkError {
  constructor(message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super('TLS_ERROR', message, 0, details, options);
  }
}

export class SdkTimeoutError extends SdkError {
  constructor(message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super('TIMEOUT', message, 0, details, options);
  }
}

export class SdkCommitFailedError extends SdkError {
  readonly commit: Commit;
  constructor(commit: Commit) {
    const code = commit.error?.code ?? 'INTERNAL';
    const message = commit.error?.message ?? 'The commit failed without an error message';
    super(code, message, isErrorCode(code) ? ERROR_CODES[code].status : 0, { commitId: commit.id, path: commit.path });
    this.commit = commit;
  }
}

export class SdkGroupFailedError extends SdkError {
  readonly group: CommitGroup;
  /** The first failed member commit, when one could be found. */
  readonly failedCommit: Commit | undefined;
  constructor(group: CommitGroup, failedCommit?: Commit) {
    const why = failedCommit?.error
      ? `: commit ${failedCommit.id} (${failedCommit.path}) failed with ${failedCommit.error.code}: ${failedCommit.error.message}`
      : '';
    super('GROUP_FAILED', `Commit group ${group.id} failed${why}`, ERROR_CODES.GROUP_FAILED.status, {
      groupId: group.id,
      ...(failedCommit ? { commitId: failedCommit.id, commitError: failedCommit.error } : {}),
    });
    this.group = group;
    this.failedCommit = failedCommit;
  }
}

/** Code to use when an error response has no usable `{"error": {...}}` body (a proxy's page). */
function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400: return 'BAD_REQUEST';
    case 401: return 'UNAUTHORIZED';
    case 404: return 'ROUTE_NOT_FOUND';
    case 405: return 'METHOD_NOT_ALLOWED';
    case 413: return 'PAYLOAD_TOO_LARGE';
    case 502: case 503: case 504: return 'NETWORK_ERROR';
    default: return 'INTERNAL';
  }
}

/** Builds the error for a non-2xx response from its status and (possibly unparsable) body. */
export function errorFromResponse(status: number, body: unknown, statusText = ''): SdkApiError {
  const e = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
  const code = typeof e?.code === 'string' && e.code !== '' ? e.code : codeForStatus(status);
  const message = typeof e?.message === 'string' ? e.message : `HTTP ${status}${statusText ? ` ${statusText}` : ''}`;
  const details = e?.details && typeof e.details === 'object' && !Array.isArray(e.details)
    ? (e.details as Record<string, unknown>)
    : {};
  const Cls = status === 404 ? SdkNotFoundError : status === 409 ? SdkConflictError : SdkApiError;
  return new Cls(code, message, status, details);
}
