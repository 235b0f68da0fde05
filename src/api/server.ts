/**
 * The `/v1` HTTP server on node:http: routing, authentication, mount selection and
 * error replies. Embedded in `roset-mount` by default.
 *
 * Invariants:
 * - Every route but `GET /health` requires `Authorization: Bearer <key>`; the key is
 *   hashed and compared in constant time by the control plane, and never logged.
 * - Every failure is a JSON error with a code from the code table; an unexpected
 *   exception is logged and answered 500 INTERNAL without its internals.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { ApiError, RosetError } from '../errors/index.js';
import type { ControlPlane } from '../control/service.js';
import { readJson, sendError, sendJson } from './http.js';
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
        const key = token ? await this.cp.verifyApiKey(token) : null;
        if (!key) throw new ApiError('UNAUTHORIZED', token ? 'Invalid API key' : 'Missing API key: send Authorization: Bearer <key>');
        actor = `key:${key.name}`;
      }
      const header = req.headers['x-roset-mount-id'];
      const mountId = match.route.auth ? await this.cp.mountIdFor(typeof header === 'string' && header ? header : undefined) : '';
      const reply = await match.route.handler(this.cp, { req, params, query: url.searchParams, mountId, actor, body: (maxBytes?: number) => readJson(req, maxBytes) });
      status = reply.status;
      sendJson(res, reply.status, reply.body);
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

  /** Listens on `host:port` (port 0 picks a free one) and returns the URL. */
  async listen(host: string, port: number): Promise<string> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.log.error({ err: String(err) }, 'API response failed');
        res.destroy();
      });
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const addr = server.address() as AddressInfo;
    const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return `http://${h}:${addr.port}`;
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
