/**
 * `roset-mount` across the network: plain HTTP on an address other than loopback is
 * refused before anything starts (the message says why and what to do) and allowed
 * with `--insecure-listen`; `--tls-cert/--tls-key` (or ROSET_TLS_CERT/ROSET_TLS_KEY)
 * serve HTTPS, which the SDK and the CLI trust with the CA; a revoked key in the state
 * dir is replaced at the next start, never revived.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RosetClient, SdkError } from '../../src/sdk/index.js';
import { fuseMountpoints } from '../../src/util/mounts.js';
import { REPO, removeRoot, requireFuse, runCli, startDaemon, stopAll, tempRoot } from '../support/daemon.js';
import { makeTestPki, type TestPki } from '../support/tls.js';

const MOUNT_BIN = path.join(REPO, 'bin', 'roset-mount.js');
const roots: string[] = [];
let pki: TestPki;

beforeAll(() => {
  requireFuse();
  pki = makeTestPki();
});
afterAll(async () => {
  await stopAll();
  for (const r of roots) removeRoot(r);
  pki?.remove();
});

/** roset-mount run to its exit (it must not start), with its output. */
function mountFails(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string; root: string }> {
  const root = tempRoot();
  roots.push(root);
  const proc = spawn(process.execPath, [MOUNT_BIN, path.join(root, 'mnt'), '--state-dir', path.join(root, 'state'), '--cache-dir', path.join(root, 'cache'), ...args], {
    env: { ...process.env, ROSET_TLS_CERT: '', ROSET_TLS_KEY: '', ROSET_INSECURE_LISTEN: '', ROSET_LISTEN: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const t = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  return new Promise((resolve) => proc.once('close', (code) => { clearTimeout(t); resolve({ code, out, root }); }));
}

describe('roset-mount --listen', () => {
  it('refuses plain HTTP on 0.0.0.0 before anything starts, saying why and what to do', async () => {
    for (const [args, env] of [[['--listen', '0.0.0.0:0'], {}], [[], { ROSET_LISTEN: '0.0.0.0:0' }]] as const) {
      const r = await mountFails([...args], env);
      expect(r.code, r.out).toBe(1);
      expect(r.out).toMatch(/^roset-mount: Refusing to serve the API without TLS on 0\.0\.0\.0: /);
      expect(r.out).toMatch(/API key and all metadata .* would cross the network in clear text/);
      expect(r.out).toMatch(/--tls-cert FILE --tls-key FILE/);
      expect(r.out).toMatch(/--insecure-listen/);
      // Nothing started: no mount, no state.
      expect(fuseMountpoints()).not.toContain(path.join(r.root, 'mnt'));
      expect(existsSync(path.join(r.root, 'state'))).toBe(false);
    }
  });

  it('wants --tls-cert and --tls-key together, and readable', async () => {
    const r = await mountFails(['--listen', '0.0.0.0:0', '--tls-cert', pki.certFile]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/--tls-cert and --tls-key go together/);
    const missing = await mountFails(['--listen', '0.0.0.0:0', '--tls-cert', pki.certFile, '--tls-key', path.join(pki.dir, 'nope.key')]);
    expect(missing.code, missing.out).toBe(1);
    expect(missing.out).toMatch(/^roset-mount: --tls-key .*nope\.key cannot be read \(ENOENT\)/);
    expect(existsSync(path.join(missing.root, 'state'))).toBe(false);
  });

  it('starts on 0.0.0.0 with --insecure-listen', async () => {
    const d = await startDaemon({ args: ['--listen', '0.0.0.0:0', '--insecure-listen'] });
    roots.push(d.root);
    expect(d.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await d.client.listMounts()).items).toHaveLength(1);
    await d.stop();
  });

  it('serves HTTPS with ROSET_TLS_CERT/ROSET_TLS_KEY, trusted with the CA; a revoked local key is replaced at restart', async () => {
    const env = { ROSET_TLS_CERT: pki.certFile, ROSET_TLS_KEY: pki.keyFile };
    const d = await startDaemon({ args: ['--listen', '0.0.0.0:0'], env });
    roots.push(d.root);
    expect(d.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const client = new RosetClient({ apiUrl: d.endpoint, apiKey: d.apiKey, caFile: pki.caFile, env: {} });
    expect((await client.listMounts()).items).toHaveLength(1);

    // The other CA: a clear, immediate TLS_ERROR.
    const distrust = new RosetClient({ apiUrl: d.endpoint, apiKey: d.apiKey, caFile: pki.otherCaFile, env: {}, maxRetries: 4, retryBaseMs: 5_000 });
    const started = Date.now();
    const err = await distrust.listMounts().then(() => undefined, (e: unknown) => e as SdkError);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(err?.rosetCode).toBe('TLS_ERROR');
    expect(err?.message).toContain(d.endpoint);
    expect(err?.message).toMatch(/unknown authority/);

    // The CLI finds the https:// endpoint in the state dir and trusts it through ROSET_CA_FILE.
    const status = runCli(d.stateDir, ['status', '--json'], { ROSET_CA_FILE: pki.caFile });
    expect(status.code, status.stderr).toBe(0);
    expect(status.json()).toMatchObject({ endpoint: d.endpoint, health: { status: 'ok' } });
    const untrusted = runCli(d.stateDir, ['key', 'list'], { ROSET_CA_FILE: '' });
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/^roset: TLS_ERROR: .*certificate signed by an unknown authority.*pass --ca-file or set ROSET_CA_FILE/);

    // Revoke the daemon's own key; it is refused at once, and a restart makes a new one.
    const keys = await client.listKeys();
    const own = keys.items.find((k) => k.name === 'default')!;
    const other = await client.createKey('ops');
    await client.revokeKey(own.id);
    const refused = await client.listMounts().then(() => undefined, (e: unknown) => e as SdkError);
    expect(refused?.rosetCode).toBe('UNAUTHORIZED');
    expect(refused?.message).toMatch(/revoked/);
    await d.stop();

    const again = await startDaemon({ root: d.root, args: ['--listen', '0.0.0.0:0'], env });
    expect(again.apiKey).not.toBe(d.apiKey);
    expect(readFileSync(path.join(again.stateDir, 'api-key'), 'utf8').trim()).toBe(again.apiKey);
    const fresh = new RosetClient({ apiUrl: again.endpoint, apiKey: again.apiKey, caFile: pki.caFile, env: {} });
    expect((await fresh.listMounts()).items).toHaveLength(1);
    const stale = new RosetClient({ apiUrl: again.endpoint, apiKey: d.apiKey, caFile: pki.caFile, env: {}, maxRetries: 0 });
    expect((await stale.listMounts().then(() => undefined, (e: unknown) => e as SdkError))?.rosetCode).toBe('UNAUTHORIZED');
    const ops = new RosetClient({ apiUrl: again.endpoint, apiKey: other.token, caFile: pki.caFile, env: {} });
    const listed = (await ops.listKeys()).items;
    expect(listed.find((k) => k.id === own.id)?.revokedAt).not.toBeNull();
    expect(listed.filter((k) => k.name === 'default' && !k.revokedAt)).toHaveLength(1);
    expect(again.logs()).toMatch(/the API key in the state dir was revoked: making a new one/);
    expect(again.logs()).not.toContain(again.apiKey);
    await again.stop();
  });
});
