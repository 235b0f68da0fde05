/**
 * `roset key create|list|revoke` and the global `--ca-file`, run as `node bin/roset.js`
 * (built by `npm run build`) against the real API server in this process, over HTTP
 * and over HTTPS with a throwaway CA.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type InProcessApi } from '../support/api-server.js';
import { makeTestPki, type TestPki } from '../support/tls.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'roset.js');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let api: InProcessApi;
let secure: InProcessApi;
let pki: TestPki;
let work: string;

/** Runs the CLI asynchronously: the API lives in this process and must keep serving. */
function roset(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: work, ROSET_STATE_DIR: join(work, 'state'), ...env }, timeout: 30_000 },
      (err, stdout, stderr) => done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

const cli = (...args: string[]): Promise<Result> => roset(['--api-url', api.url, '--api-key', api.apiKey, ...args]);

function json(r: Result): any {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`stdout is not JSON (exit ${r.code}):\n${r.stdout}\nstderr:\n${r.stderr}`);
  }
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'roset.js'))) throw new Error('dist/cli/roset.js is missing: run `npm run build` first');
  work = mkdtempSync(join(tmpdir(), 'roset-cli-keys-'));
  pki = makeTestPki();
  api = await startApi();
  secure = await startApi({ tls: { certFile: pki.certFile, keyFile: pki.keyFile } });
});

afterAll(async () => {
  await api?.close();
  await secure?.close();
  pki?.remove();
  rmSync(work, { recursive: true, force: true });
});

describe('roset key', () => {
  it('every key command has --help and exits 0', async () => {
    for (const args of [['key'], ['key', 'create'], ['key', 'list'], ['key', 'revoke']]) {
      const r = await roset([...args, '--help']);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toContain('Usage: roset key');
    }
    expect((await roset(['--help'])).stdout).toMatch(/--ca-file <file>/);
    expect((await roset(['--help'])).stdout).toMatch(/^\s+key\b/m);
  });

  it('creates a key and prints its token once, with a warning that it will not be shown again', async () => {
    const r = await cli('key', 'create', '--name', 'node-3');
    expect(r.code, r.stderr).toBe(0);
    const token = r.stdout.trim();
    expect(token).toMatch(/^rsk_\S+$/);
    expect(r.stdout).toBe(`${token}\n`);
    expect(r.stderr).toMatch(/^roset: created key key_\S+ \("node-3"\)\. Store its token now: it will not be shown again\.\n$/);

    // The token works, and no listing shows it.
    const list = await roset(['--api-url', api.url, '--api-key', token, 'key', 'list', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const keys = json(list);
    expect(keys.map((k: { name: string }) => k.name)).toEqual(['default', 'node-3']);
    for (const k of keys) expect(Object.keys(k).sort()).toEqual(['createdAt', 'id', 'name', 'revokedAt']);
    expect(list.stdout).not.toContain(token);
    const text = await cli('key', 'list');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^key_\S+ {2}"node-3" {2}created \S+ {2}live$/m);
    expect(text.stdout).not.toContain(token);
  });

  it('--json gives the token in the JSON, and the warning on stderr', async () => {
    const r = await cli('key', 'create', '--name', 'alice', '--json');
    expect(r.code, r.stderr).toBe(0);
    const k = json(r);
    expect(k).toMatchObject({ name: 'alice', revokedAt: null, token: expect.stringMatching(/^rsk_/) });
    expect(r.stderr).toMatch(/will not be shown again/);
  });

  it('revokes a key: its next request is refused, the others still work', async () => {
    const k = json(await cli('key', 'create', '--name', 'to-revoke', '--json'));
    const r = await cli('key', 'revoke', k.id, '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ id: k.id, name: 'to-revoke', revokedAt: expect.any(String) });
    expect(r.stdout).not.toContain(k.token);

    const refused = await roset(['--api-url', api.url, '--api-key', k.token, 'key', 'list']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^roset: UNAUTHORIZED: API key key_\S+ was revoked at \S+: ask for a new key\n$/);
    expect((await cli('key', 'list')).code).toBe(0);

    const text = await cli('key', 'revoke', k.id);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^revoked ${k.id} {2}"to-revoke" {2}created \\S+ {2}revoked \\S+\\n$`));
    const listed = await cli('key', 'list');
    expect(listed.stdout).toMatch(new RegExp(`^${k.id} .* revoked `, 'm'));
  });

  it('reports errors with their codes', async () => {
    const missing = await cli('key', 'revoke', 'key_nope');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('roset: KEY_NOT_FOUND: No API key key_nope\n');
    const missingJson = await cli('key', 'revoke', 'key_nope', '--json');
    expect(json(missingJson).error.code).toBe('KEY_NOT_FOUND');
    const bad = await cli('key', 'create', '--name', 'a\tb');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^roset: INVALID_KEY_NAME: /);
    const usage = await cli('key', 'create');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--name/);
  });
});

describe('roset --ca-file', () => {
  it('trusts an HTTPS API with --ca-file or ROSET_CA_FILE', async () => {
    expect(secure.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const flag = await roset(['--api-url', secure.url, '--api-key', secure.apiKey, '--ca-file', pki.caFile, 'key', 'list', '--json']);
    expect(flag.code, flag.stderr).toBe(0);
    expect(json(flag)[0].name).toBe('default');
    const env = await roset(['--api-url', secure.url, '--api-key', secure.apiKey, 'key', 'list', '--json'], { ROSET_CA_FILE: pki.caFile });
    expect(env.code, env.stderr).toBe(0);
    // The flag beats the variable.
    const beaten = await roset(['--api-url', secure.url, '--api-key', secure.apiKey, '--ca-file', pki.otherCaFile, 'key', 'list'], { ROSET_CA_FILE: pki.caFile });
    expect(beaten.code).toBe(1);
    expect(beaten.stderr).toMatch(/^roset: TLS_ERROR: /);
  });

  it('refuses an API whose certificate another CA signed, clearly and at once', async () => {
    const started = Date.now();
    const r = await roset(['--api-url', secure.url, '--api-key', secure.apiKey, '--ca-file', pki.otherCaFile, 'key', 'list']);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`roset: TLS_ERROR: GET /v1/keys: Cannot trust ${secure.url}: certificate signed by an unknown authority (UNABLE_TO_VERIFY_LEAF_SIGNATURE): the CA in ${pki.otherCaFile} did not sign it\n`);
    const none = await roset(['--api-url', secure.url, '--api-key', secure.apiKey, 'key', 'list', '--json']);
    expect(none.code).toBe(1);
    const body = json(none);
    expect(body.error.code).toBe('TLS_ERROR');
    expect(body.error.message).toMatch(/pass --ca-file or set ROSET_CA_FILE/);
    expect(none.stdout + none.stderr).not.toContain(secure.apiKey);
    const missing = await roset(['--api-url', secure.url, '--ca-file', join(work, 'nope.crt'), 'key', 'list']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^roset: TLS_ERROR: Cannot read the CA file .*nope\.crt \(ENOENT\)/);
  });
});
