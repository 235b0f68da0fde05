/**
 * The listener of an agent (`roset-mount --api-url`): an agent has no API of its own
 * (its control plane is `roset serve`), but Prometheus scrapes every node, so with
 * `--listen` it answers `GET /health` and `GET /metrics`, and nothing else.
 *
 * Invariants: no route takes a key or reads a body; nothing answered names a path, a
 * node or a key (the metrics are the process's registry, src/metrics/); anything but
 * those two routes is 404.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { registry } from '../metrics/index.js';

export class MetricsListener {
  private server: Server | null = null;

  constructor(private readonly log: Logger) {}

  /** Listens on `host:port` (port 0 picks a free one) and returns the URL. */
  async listen(host: string, port: number): Promise<string> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const reply = (status: number, type: string, body: string): void => {
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) }).end(body);
      };
      if (req.method !== 'GET') return reply(405, 'application/json', JSON.stringify({ error: { code: 'METHOD_NOT_ALLOWED', message: 'Only GET', details: {} } }));
      if (path === '/health') return reply(200, 'application/json', JSON.stringify({ status: 'ok', role: 'agent' }));
      if (path !== '/metrics') return reply(404, 'application/json', JSON.stringify({ error: { code: 'ROUTE_NOT_FOUND', message: 'An agent serves /health and /metrics only', details: {} } }));
      registry.metrics().then((text) => reply(200, registry.contentType, text), (err: unknown) => {
        this.log.error({ err: (err as Error).message }, 'could not render the metrics');
        reply(500, 'application/json', JSON.stringify({ error: { code: 'INTERNAL', message: 'Internal error', details: {} } }));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const a = server.address() as AddressInfo;
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((resolve) => { s.close(() => resolve()); s.closeAllConnections(); });
  }
}
