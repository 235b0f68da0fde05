/**
 * The HTTP link from an agent (a `roset-mount` on a GPU node) to its control plane.
 *
 * Owns: the key, the mount header, JSON, turning error replies back into RosetErrors
 * with the server's code (so a refusal maps to the same errno here as there), and the
 * retry policy of the agent's calls.
 *
 * Retry policy. The control plane may be restarting, failing over to another
 * `roset serve`, or waiting for its database; a training job should see a slow call,
 * not an error. A call is retried with backoff, up to `retryForMs`, when the server
 * cannot have acted on it: the connection was refused or never made, or the reply is
 * 503 METADATA_UNAVAILABLE or METADATA_CONTENDED (its transaction rolled back). A call that is safe to repeat
 * (`idempotent`) is also retried after a reset or timeout. Any other reply is final.
 *
 * Invariant: the API key goes only into the Authorization header, never into a log or
 * an error message.
 */
import { fromWire, RosetError, type WireError } from '../errors/index.js';
import { sleep } from '../util/sleep.js';
import { fetchTrusting, tlsFailure } from '../sdk/tls.js';

export interface ControlLinkOptions {
  apiUrl: string;
  apiKey: string;
  /** Sent as X-Roset-Mount-Id once known. */
  mountId?: string;
  /** A PEM file of the CA that signed the control plane's certificate (a private CA). */
  caFile?: string;
  /** How long a call keeps retrying while the control plane is away. Default 120 s. */
  retryForMs?: number;
  /** Limit of one attempt. Default 60 s. */
  timeoutMs?: number;
  onRetry?: (info: { path: string; attempt: number; error: string }) => void;
}

export interface CallOptions {
  idempotent: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Overrides the link's retry window (0: one attempt). */
  retryForMs?: number;
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

function causeCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause ?? (e as { errors?: unknown[] }).errors?.[0];
  }
  return undefined;
}

export class ControlLink {
  readonly apiUrl: string;
  mountId: string | undefined;
  private readonly fetch: typeof globalThis.fetch;

  constructor(private readonly options: ControlLinkOptions) {
    this.apiUrl = options.apiUrl.replace(/\/+$/, '');
    this.mountId = options.mountId;
    this.fetch = fetchTrusting(options.caFile);
  }

  async call<T>(method: 'GET' | 'POST' | 'PUT', path: string, body: unknown, o: CallOptions): Promise<T> {
    const retryFor = o.retryForMs ?? this.options.retryForMs ?? 120_000;
    const deadline = Date.now() + retryFor;
    for (let attempt = 1; ; attempt++) {
      let retryable: boolean;
      let failure: RosetError;
      try {
        return await this.once<T>(method, path, body, o);
      } catch (err) {
        if (o.signal?.aborted) throw err;
        if (err instanceof RosetError) {
          failure = err;
          retryable = err.rosetCode === 'METADATA_UNAVAILABLE' || err.rosetCode === 'METADATA_CONTENDED' || (err.details.transport === 'connect') || (o.idempotent && err.details.transport === 'reset');
        } else {
          throw err;
        }
      }
      if (!retryable || Date.now() >= deadline) throw failure;
      this.options.onRetry?.({ path, attempt, error: failure.message });
      await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2));
    }
  }

  private async once<T>(method: string, path: string, body: unknown, o: CallOptions): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.options.apiKey}`, accept: 'application/json' };
    if (this.mountId) headers['x-roset-mount-id'] = this.mountId;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const timeout = AbortSignal.timeout(o.timeoutMs ?? this.options.timeoutMs ?? 60_000);
    const signal = o.signal ? AbortSignal.any([o.signal, timeout]) : timeout;
    let res: Response;
    let text: string;
    try {
      res = await this.fetch(`${this.apiUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
      text = await res.text();
    } catch (err) {
      // A certificate this node does not trust is a configuration error: said clearly, never retried.
      const tls = tlsFailure(err, this.apiUrl, this.options.caFile);
      if (tls) throw new RosetError('TLS_ERROR', tls.message, { transport: 'final' }, { cause: err });
      const code = causeCode(err);
      const connect = code !== undefined && CONNECT_CODES.has(code);
      throw new RosetError('CONTROL_PLANE_UNREACHABLE', `Cannot reach the control plane at ${this.apiUrl} (${code ?? (err as Error).message})`,
        { transport: connect ? 'connect' : 'reset' }, { cause: err });
    }
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      throw new RosetError('CONTROL_PLANE_UNREACHABLE', `The control plane at ${this.apiUrl} answered ${res.status} with a body that is not JSON`, { transport: 'reset' });
    }
    if (!res.ok) {
      const e = (parsed as { error?: WireError } | null)?.error;
      if (e && typeof e.code === 'string') throw fromWire({ code: e.code, message: String(e.message), details: e.details });
      // No Roset error body: a proxy or load balancer answered; the server did not act.
      throw new RosetError('CONTROL_PLANE_UNREACHABLE', `The control plane at ${this.apiUrl} answered ${res.status}`, { transport: res.status >= 500 ? 'connect' : 'final' });
    }
    return parsed as T;
  }
}
