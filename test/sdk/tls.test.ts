/**
 * The TypeScript SDK over HTTPS to the real API server (in process), with a throwaway
 * CA: `caFile` (or ROSET_CA_FILE) makes it trust the server; an unrelated CA, a
 * certificate that does not name the host, or a server without TLS fail at once with
 * TLS_ERROR, a message that names the URL, the cause and the remedy, and no retry.
 */
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchTrusting, RosetClient, SdkError, SdkTlsError } from '../../src/sdk/index.js';
import { startApi, type InProcessApi } from '../support/api-server.js';
import { makeTestPki, type TestPki } from '../support/tls.js';

let pki: TestPki;
let api: InProcessApi;
let plain: InProcessApi;

beforeAll(async () => {
  pki = makeTestPki();
  // On every address, so that 127.0.0.2 (not in the certificate) reaches it too.
  api = await startApi({ tls: { certFile: pki.certFile, keyFile: pki.keyFile }, host: '0.0.0.0' });
  plain = await startApi();
});
afterAll(async () => {
  await api?.close();
  await plain?.close();
  pki?.remove();
});

const port = (): string => new URL(api.url).port;

/** The rejection of `p`, which must be an SdkError. */
async function failure(p: Promise<unknown>): Promise<SdkError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SdkError);
    return err as SdkError;
  }
  throw new Error('expected a failure');
}

describe('SDK over HTTPS', () => {
  it('serves https:// and trusts the server with caFile', async () => {
    expect(api.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const client = new RosetClient({ apiUrl: `https://127.0.0.1:${port()}`, apiKey: api.apiKey, caFile: pki.caFile, env: {} });
    expect((await client.getHealth()).status).toBe('ok');
    expect((await client.listMounts()).items.map((m) => m.name)).toEqual(['default']);
    // By name too: the certificate holds localhost.
    const byName = new RosetClient({ apiUrl: `https://localhost:${port()}`, apiKey: api.apiKey, caFile: pki.caFile, env: {} });
    expect((await byName.listKeys()).items[0]!.name).toBe('default');
  });

  it('takes the CA from ROSET_CA_FILE, and an explicit caFile beats it', async () => {
    const url = `https://127.0.0.1:${port()}`;
    const fromEnv = new RosetClient({ apiUrl: url, apiKey: api.apiKey, env: { ROSET_CA_FILE: pki.caFile } });
    expect(fromEnv.config).toMatchObject({ caFile: pki.caFile, sources: { caFile: 'env' } });
    expect((await fromEnv.getHealth()).status).toBe('ok');

    const overridden = new RosetClient({ apiUrl: url, apiKey: api.apiKey, caFile: pki.otherCaFile, env: { ROSET_CA_FILE: pki.caFile }, maxRetries: 0 });
    expect(overridden.config.sources.caFile).toBe('option');
    expect((await failure(overridden.getHealth())).rosetCode).toBe('TLS_ERROR');

    const better = new RosetClient({ apiUrl: url, apiKey: api.apiKey, caFile: pki.caFile, env: { ROSET_CA_FILE: pki.otherCaFile } });
    expect((await better.getHealth()).status).toBe('ok');
    // withMountId keeps the CA.
    expect((await better.withMountId(undefined).listMounts()).items).toHaveLength(1);
  });

  it('fails fast on an unknown authority, with a clear error and no retry', async () => {
    const url = `https://127.0.0.1:${port()}`;
    for (const caFile of [pki.otherCaFile, undefined]) {
      const client = new RosetClient({ apiUrl: url, apiKey: api.apiKey, caFile, env: {}, maxRetries: 5, retryBaseMs: 5_000 });
      const started = Date.now();
      const err = await failure(client.listMounts());
      expect(Date.now() - started).toBeLessThan(2_000); // a retry would wait 2.5 s at least
      expect(err).toBeInstanceOf(SdkTlsError);
      expect(err.rosetCode).toBe('TLS_ERROR');
      expect(err.status).toBe(0);
      expect(err.message).toContain(url);
      expect(err.message).toMatch(/certificate signed by an unknown authority/);
      expect(err.message).not.toMatch(/fetch failed/);
      if (caFile) expect(err.message).toContain(`the CA in ${caFile} did not sign it`);
      else expect(err.message).toMatch(/pass --ca-file or set ROSET_CA_FILE/);
      expect(err.message).not.toContain(api.apiKey);
    }
  });

  it('connects once only when the certificate is refused', async () => {
    // A bare HTTPS server with the same certificate, counting connections.
    let connections = 0;
    const server: HttpsServer = createHttpsServer({ cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) }, (_req, res) => res.end('{}'));
    server.on('connection', () => { connections++; });
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const client = new RosetClient({ apiUrl: url, apiKey: 'rsk_x', caFile: pki.otherCaFile, env: {}, maxRetries: 5, retryBaseMs: 1 });
      // A GET is resendable: only the TLS rule keeps it from being retried.
      expect((await failure(client.listRefs())).rosetCode).toBe('TLS_ERROR');
      expect(connections).toBe(1);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('names a host the certificate does not hold', async () => {
    const url = `https://127.0.0.2:${port()}`;
    const client = new RosetClient({ apiUrl: url, apiKey: api.apiKey, caFile: pki.caFile, env: {}, maxRetries: 3, retryBaseMs: 5_000 });
    const started = Date.now();
    const err = await failure(client.getHealth());
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(err.rosetCode).toBe('TLS_ERROR');
    expect(err.message).toContain(url);
    expect(err.message).toMatch(/certificate does not name 127\.0\.0\.2/);
    expect(err.details).toMatchObject({ url, tlsCode: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  });

  it('says so when an https:// URL reaches a server without TLS', async () => {
    const url = plain.url.replace(/^http:/, 'https:');
    const client = new RosetClient({ apiUrl: url, apiKey: plain.apiKey, caFile: pki.caFile, env: {}, maxRetries: 3, retryBaseMs: 5_000 });
    const err = await failure(client.getHealth());
    expect(err.rosetCode).toBe('TLS_ERROR');
    expect(err.message).toContain(url);
    expect(err.message).toMatch(/without TLS/);
  });

  it('reports an unreadable or empty CA file by name', () => {
    expect(() => fetchTrusting(path.join(pki.dir, 'missing.crt'))).toThrow(/Cannot read the CA file .*missing\.crt \(ENOENT\)/);
    const notPem = path.join(pki.dir, 'not-pem.crt');
    writeFileSync(notPem, 'hello\n');
    expect(() => new RosetClient({ apiUrl: api.url, caFile: notPem, env: {} })).toThrow(/holds no PEM certificate/);
    try {
      fetchTrusting(notPem);
    } catch (err) {
      expect((err as SdkError).rosetCode).toBe('TLS_ERROR');
    }
    expect(fetchTrusting(undefined)).toBe(globalThis.fetch);
    expect(fetchTrusting(pki.caFile)).toBe(fetchTrusting(pki.caFile));
  });
});
