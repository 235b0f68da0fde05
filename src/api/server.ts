/**
 * The `/v1` HTTP server on node:http, or node:https with a certificate: routing,
 * authentication, mount selection and error replies. Embedded in `roset-mount` by
 * default.
 *
 * Invariants:
 * - Every route but `GET /health` and `GET /metrics` requires `Authorization: Bearer <key>`; the key is
 *   hashed and compared in constant time by the control plane, and never logged. A
 *   revoked key is refused from the first request after its revocation.
 * - Plain HTTP is served only where `checkListenPolicy` allows it (loopback, or an
 *   explicit `insecureListen`).
 * - Every failure is a JSON error with a code from the code table; an unexpected
 *   exception is logged and answered 500 INTERNAL without its internals.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { ApiError, RosetError } from '../errors/index.js';
import type { ControlPlane } from '../control/service.js';
import { readJson, sendError, sendJson, sendText } from './http.js';
import { checkListenPolicy, type TlsFiles } from './listen-policy.js';
import { ROUTES, type Route } from './routes.js';

interface CompiledRoute {
  route: Route;
  regex: RegExp;
  names: string[];
}

function compile(route: Route): CompiledRoute {
  const names: string[] = [];
  const src = route.path.replace(/\{(\w+)\}/g, (_, n: string) => {
    names.push(n);
    return '([^/]+)';
  });
  return { route, regex: new RegExp(`^${src}$`), names };
}

const COMPILED = ROUTES.map(compile);

export interface ListenOptions {
  /** Serve HTTPS with this certificate and key (PEM files, read once here). */
  tls?: TlsFiles | null;
  /** Allow plain HTTP on a non-loopback address (a trusted network). */
  insecureListen?: boolean;
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ApiError('BAD_REQUEST', `Cannot read the TLS ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function bearer(req: IncomingMessage): string | null {
  const h = req.headers.authorization;
  if (!h) return null;
  const m = /^Bearer\s+(\S+)$/i.exec(h);
  return m ? m[1]! : null;
}

export class ApiServer {
  private server: Server | null = null;

  constructor(private readonly cp: ControlPlane, private readonly log: Logger) {}

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    let status = 500;
    try {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://localhost');
      } catch {
        throw new ApiError('BAD_REQUEST', 'Malformed request URL');
      }
      const candidates = COMPILED.filter((c) => c.regex.test(url.pathname));
      if (candidates.length === 0) throw new ApiError('ROUTE_NOT_FOUND', `No route ${url.pathname}`);
      const match = candidates.find((c) => c.route.method === req.method);
      if (!match) {
        res.setHeader('allow', candidates.map((c) => c.route.method).join(', '));
        throw new ApiError('METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${url.pathname}`);
      }
      const params: Record<string, string> = {};
      const m = match.regex.exec(url.pathname)!;
      for (let i = 0; i < match.names.length; i++) {
        let v: string;
        try {
          v = decodeURIComponent(m[i + 1]!);
        } catch {
          throw new ApiError('BAD_REQUEST', 'Malformed percent-encoding in the path');
        }
        if (v.includes('\0') || v.length > 256) throw new ApiError('BAD_REQUEST', `Invalid ${match.names[i]}`);
        params[match.names[i]!] = v;
      }
      let actor = 'anonymous';
      if (match.route.auth) {
        const token = bearer(req);
        const key = token ? await this.cp.lookupApiKey(token) : null;
        if (!key) throw new ApiError('UNAUTHORIZED', token ? 'Invalid API key' : 'Missing API key: send Authorization: Bearer <key>');
        if (key.revokedAt) throw new ApiError('UNAUTHORIZED', `API key ${key.id} was revoked at ${key.revokedAt}: ask for a new key`);
        actor = `key:${key.name}`;
      }
      const header = req.headers['x-roset-mount-id'];
      const mountId = match.route.auth ? await this.cp.mountIdFor(typeof header === 'string' && header ? header : undefined) : '';
      const reply = await match.route.handler(this.cp, { req, params, query: url.searchParams, mountId, actor, body: (maxBytes?: number) => readJson(req, maxBytes) });
      status = reply.status;
      if (reply.text) sendText(res, reply.status, reply.text.contentType, reply.text.body);
      else sendJson(res, reply.status, reply.body);
    } catch (err) {
      const e = err instanceof RosetError ? err : new RosetError('INTERNAL', 'Internal error');
      if (!(err instanceof RosetError)) this.log.error({ err: (err as Error)?.stack ?? String(err), method: req.method, url: req.url }, 'unhandled API error');
      // A body we stopped reading (too large) leaves the socket unusable for the next request.
      if (!req.complete) res.setHeader('connection', 'close');
      sendError(res, e);
      status = res.statusCode;
    } finally {
      this.log.debug({ method: req.method, url: req.url?.split('?')[0], status, ms: Date.now() - started }, 'api');
    }
  }

  /**
   * Listens on `host:port` (port 0 picks a free one) and returns the URL: `https://`
   * with `opts.tls`; on every address (0.0.0.0, ::), the loopback URL. Plain HTTP on a non-loopback address is refused unless
   * `opts.insecureListen` (INSECURE_LISTEN).
   */
  async listen(host: string, port: number, opts: ListenOptions = {}): Promise<string> {
    checkListenPolicy({ host, tls: opts.tls, insecureListen: opts.insecureListen });
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      this.handle(req, res).catch((err: unknown) => {
        this.log.error({ err: String(err) }, 'API response failed');
        res.destroy();
      });
    };
    let server: Server;
    if (opts.tls) {
      const cert = readPem(opts.tls.certFile, 'certificate');
      const key = readPem(opts.tls.keyFile, 'key');
      try {
        server = createHttpsServer({ cert, key }, onRequest);
      } catch (err) {
        throw new ApiError('BAD_REQUEST', `Cannot use the TLS certificate ${opts.tls.certFile} with the key ${opts.tls.keyFile}: ${(err as Error).message}`);
      }
      // A client that fails the handshake (an untrusted certificate) is its own problem, not an API error.
      server.on('tlsClientError', (err) => this.log.debug({ err: err.message }, 'TLS handshake failed'));
    } else {
      server = createServer(onRequest);
    }
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const addr = server.address() as AddressInfo;
    // Bound to every address: the URL local clients use (the endpoint file) is loopback's,
    // a name a certificate can hold.
    const address = addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address === '::' ? '::1' : addr.address;
    const h = address.includes(':') ? `[${address}]` : address;
    return `${opts.tls ? 'https' : 'http'}://${h}:${addr.port}`;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = null;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }
}
