/**
 * Roset error classes: one per area, all carrying a stable code from `codes.ts`.
 *
 * Owns: the error hierarchy and `toRosetError`, which turns anything thrown into a
 * RosetError without losing the original (kept as `cause`).
 * Invariant: a RosetError's `code` is always in ERROR_CODES; `message` never contains
 * a credential.
 */
import { ERROR_CODES, isErrorCode, type ErrorCode } from './codes.js';
import { localErrorCode } from './local.js';

export { ERROR_CODES, httpStatusOf, errnoOf, isErrorCode, type ErrorCode, type Errno } from './codes.js';

export class RosetError extends Error {
  /** Wire code, e.g. `SEALED`. */
  readonly rosetCode: ErrorCode;
  /** Node-style code, e.g. `ROSET_E_SEALED`. */
  readonly code: string;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message?: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message ?? ERROR_CODES[code].description, options);
    this.rosetCode = code;
    this.code = `ROSET_E_${code}`;
    this.details = details;
    this.name = new.target.name;
  }
}

/** Request validation, auth and routing (the HTTP API). */
export class ApiError extends RosetError {}
/** Namespace, barrier and immutability (control-plane metadata and filesystem core). */
export class NamespaceError extends RosetError {}
/** Commit, ref and group lifecycle. */
export class CommitError extends RosetError {}
/** The object store. */
export class StoreError extends RosetError {}
/** The local cache and staging index. */
export class CacheError extends RosetError {}

export function toRosetError(err: unknown): RosetError {
  if (err instanceof RosetError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  const local = localErrorCode(e?.code ?? '');
  if (local === 'NO_SPACE') return new CacheError('NO_SPACE', 'The cache disk is full', {}, { cause: err });
  if (local === 'FILE_TOO_LARGE') return new CacheError('FILE_TOO_LARGE', 'The file would exceed the maximum file size', {}, { cause: err });
  const message = e && typeof e.message === 'string' ? e.message : String(err);
  return new RosetError('INTERNAL', message, {}, { cause: err });
}

export function codeOf(err: unknown): ErrorCode | undefined {
  if (err instanceof RosetError) return err.rosetCode;
  const c = (err as { rosetCode?: unknown } | undefined)?.rosetCode;
  return isErrorCode(c) ? c : undefined;
}

/** The wire shape of an error: what the API sends and what an agent reports. */
export interface WireError {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/**
 * The error another process reported, as a RosetError with the same code (so it maps
 * to the same errno and HTTP status here as there). An unknown code (a newer peer)
 * becomes INTERNAL, keeping the peer's code in the details.
 */
export function fromWire(e: WireError): RosetError {
  if (isErrorCode(e.code)) return new RosetError(e.code, e.message, e.details ?? {});
  return new RosetError('INTERNAL', e.message, { ...(e.details ?? {}), code: e.code });
}

export function toWire(err: RosetError): WireError {
  return { code: err.rosetCode, message: err.message, details: err.details };
}
