/**
 * The real `/v1` API in this process, without FUSE: a control plane on SQLite and a
 * local store, behind `ApiServer`, over HTTP or HTTPS, with one key ("default") as the
 * daemon makes. For tests of the API surface that need no mount (keys, TLS, the CLI).
 *
 * Invariant: `close()` stops the server and removes every file it made.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import type { TlsFiles } from '../../src/api/listen-policy.js';
import { ApiServer } from '../../src/api/server.js';
import { ControlPlane } from '../../src/control/service.js';
import { SqliteMetadataStore } from '../../src/meta/sqlite.js';
import { LocalStore } from '../../src/store/local.js';

export interface InProcessApi {
  url: string;
  /** The token of the "default" key. */
  apiKey: string;
  cp: ControlPlane;
  close: () => Promise<void>;
}

export async function startApi(opts: { tls?: TlsFiles; host?: string } = {}): Promise<InProcessApi> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-api-'));
  const log = pino({ level: 'silent' });
  const meta = new SqliteMetadataStore(path.join(dir, 'metadata.db'));
  const store = await LocalStore.open(path.join(dir, 'store'));
  const cp = new ControlPlane(meta, store, log, { sealTimeoutMs: 10_000 });
  await cp.ensureMount('default');
  const { token } = await cp.createApiKey('default');
  const server = new ApiServer(cp, log);
  const url = await server.listen(opts.host ?? '127.0.0.1', 0, { tls: opts.tls });
  return {
    url, apiKey: token, cp,
    close: async () => {
      await server.close();
      await meta.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
