/**
 * Credentials (issue 5, acceptance 5; design §8 "Bad input"): API keys are stored only
 * as sha256 hashes and compared in constant time against every stored key; neither API
 * keys (right or wrong) nor S3 secrets (right or wrong) ever reach the daemon's log, an
 * API error message or the CLI's output.
 *
 * The S3 cases run against the real S3 test server (`s3TestConfig()`), through a small
 * proxy of this file's own that can break request signatures, so that the real server
 * answers 403 to a daemon that is already running; a deliberately wrong secret shows
 * the same at start-up and in `roset recover`.
 *
 * Invariants: every daemon is started at `--log-level trace`, the most talkative, and
 * stopped before its log is read, so nothing still buffered escapes the check; all
 * daemons and mounts are taken down in afterAll.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hashToken, matchKeyHash } from '../../src/control/service.js';
import { fuseMountpoints } from '../../src/util/mounts.js';
import { REPO, removeRoot, startDaemon, stopAll, tempRoot, waitCommit, type TestDaemon } from '../support/daemon.js';
import { s3TestConfig, s3TestUrl } from '../support/s3.js';

const MOUNT_BIN = path.join(REPO, 'bin', 'roset-mount.js');
const CLI_BIN = path.join(REPO, 'bin', 'roset.js');
const roots: string[] = [];

afterAll(async () => {
  await stopAll();
  for (const r of roots) removeRoot(r);
});

interface Output { code: number | null; stdout: string; stderr: string }

/**
 * The CLI, without blocking the event loop: spawnSync would stall this file's proxy
 * while the daemon needs it to finish the very commit the CLI waits for.
 */
function cli(args: string[], env: NodeJS.ProcessEnv): Promise<Output> {
  const proc = spawn(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ROSET_API_URL: '', ROSET_API_KEY: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return collect(proc, 120_000);
}

function collect(proc: ChildProcess, ms: number): Promise<Output> {
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const t = setTimeout(() => proc.kill('SIGKILL'), ms);
  return new Promise((resolve) => proc.once('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); }));
}

/** Every file under `dir` (but `except`), concatenated: what a disk scan would find. */
function bytesUnder(dir: string, except: string[] = []): Buffer {
  const parts: Buffer[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (except.includes(p)) continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) parts.push(readFileSync(p));
    }
  };
  walk(dir);
  return Buffer.concat(parts);
}

describe('API key comparison', () => {
  const hashes = Array.from({ length: 7 }, () => Buffer.from(hashToken(`rsk_${randomBytes(24).toString('base64url')}`), 'hex'));

  it('compares against every stored key, whatever the position of the match, and finds the right one', () => {
    for (let pos = -1; pos < hashes.length; pos++) {
      const candidate = pos < 0 ? Buffer.from(hashToken('rsk_not-a-key'), 'hex') : Buffer.from(hashes[pos]!);
      let calls = 0;
      const seen: Buffer[] = [];
      const counting = (a: Buffer, b: Buffer): boolean => { calls++; seen.push(b); return timingSafeEqual(a, b); };
      expect(matchKeyHash(candidate, hashes, counting)).toBe(pos);
      // No early exit: a match in first place costs what a miss costs.
      expect(calls).toBe(hashes.length);
      expect(seen).toEqual(hashes);
    }
  });

  it('returns the first of duplicate keys, and treats a malformed stored hash as a miss without throwing', () => {
    const short = Buffer.from('abcd', 'hex');
    let calls = 0;
    const counting = (a: Buffer, b: Buffer): boolean => { calls++; return timingSafeEqual(a, b); };
    expect(matchKeyHash(hashes[3]!, [short, hashes[3]!, hashes[3]!, short], counting)).toBe(1);
    expect(calls).toBe(4);
    expect(matchKeyHash(hashes[0]!, [short])).toBe(-1);
    expect(matchKeyHash(hashes[0]!, [])).toBe(-1);
  });

  it('uses timingSafeEqual by default, and hashes tokens with sha256', () => {
    expect(matchKeyHash(hashes[2]!, hashes)).toBe(2);
    expect(hashToken('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('API keys on a real daemon', () => {
  let d: TestDaemon;
  const wrongKeys: string[] = [];
  const bodies: string[] = [];

  it('answers right and wrong keys without logging or echoing any of them, even at trace level', async () => {
    d = await startDaemon({ args: ['--log-level', 'trace'] });
    roots.push(d.root);
    const key = d.apiKey;
    const flipped = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
    wrongKeys.push(`rsk_${randomBytes(24).toString('base64url')}`, flipped, `${key}x`, key.slice(0, -4), key.toUpperCase());
    const call = async (url: string, headers: Record<string, string>, init: RequestInit = {}): Promise<number> => {
      const res = await fetch(`${d.endpoint}${url}`, { ...init, headers: { 'content-type': 'application/json', ...headers } });
      bodies.push(await res.text());
      return res.status;
    };
    // Right key, on routes that succeed and on routes that fail.
    expect(await call('/v1/refs', { authorization: `Bearer ${key}` })).toBe(200);
    expect(await call('/v1/nodes', { authorization: `Bearer ${key}` }, { method: 'POST', body: JSON.stringify({ parentPath: '/', name: 'k', type: 'folder' }) })).toBe(201);
    expect(await call('/v1/nodes/node_nope', { authorization: `Bearer ${key}` })).toBe(404);
    expect(await call('/v1/nodes', { authorization: `Bearer ${key}` }, { method: 'POST', body: '{"broken' })).toBe(400);
    // Wrong keys, in every place a client might put one.
    for (const w of wrongKeys) {
      expect(await call('/v1/refs', { authorization: `Bearer ${w}` })).toBe(401);
      expect(await call('/v1/nodes', { authorization: `bearer ${w}` }, { method: 'POST', body: '{}' })).toBe(401);
      expect(await call('/v1/refs', { authorization: `Basic ${Buffer.from(`user:${w}`).toString('base64')}` })).toBe(401);
      expect(await call('/v1/refs', { authorization: w })).toBe(401);
      expect(await call(`/v1/refs?api_key=${encodeURIComponent(w)}`, { 'x-api-key': w })).toBe(401);
    }
    // The right key anywhere but the Authorization header is no key at all.
    expect(await call(`/v1/refs?api_key=${encodeURIComponent(key)}`, { 'x-api-key': key })).toBe(401);
    expect(await call('/v1/refs', {})).toBe(401);
    // The CLI, with the right key and with a wrong one.
    const ok = await cli(['--state-dir', d.stateDir, 'status', '--json'], {});
    expect(ok.code, ok.stderr).toBe(0);
    const bad = await cli(['--api-url', d.endpoint, '--api-key', wrongKeys[0]!, 'ref', 'list'], {});
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('UNAUTHORIZED');
    const badJson = await cli(['--api-url', d.endpoint, 'ref', 'list', '--json'], { ROSET_API_KEY: wrongKeys[1]! });
    expect(badJson.code).toBe(1);
    expect(JSON.parse(badJson.stdout).error.code).toBe('UNAUTHORIZED');

    await d.stop();
    const logs = d.logs();
    // The requests were logged, just not their keys.
    expect(logs).toMatch(/"msg":"api"/);
    expect(logs).toMatch(/"status":401/);
    for (const secret of [key, ...wrongKeys]) {
      expect(logs.includes(secret), 'a key in the daemon log').toBe(false);
      for (const b of bodies) expect(b.includes(secret), `a key in a response: ${b}`).toBe(false);
      for (const o of [ok, bad, badJson]) expect(o.stdout.includes(secret) || o.stderr.includes(secret), 'a key in CLI output').toBe(false);
    }
  });

  it('stores only the sha256 of the key: no file of the state or cache directory holds the token', () => {
    const key = d.apiKey;
    const keyFile = path.join(d.stateDir, 'api-key');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const state = bytesUnder(d.stateDir, [keyFile]);
    expect(state.includes(Buffer.from(key))).toBe(false);
    expect(bytesUnder(d.cacheDir).includes(Buffer.from(key))).toBe(false);
    const db = Buffer.concat(readdirSync(d.stateDir).filter((f) => f.startsWith('metadata.db')).map((f) => readFileSync(path.join(d.stateDir, f))));
    expect(db.includes(Buffer.from(key))).toBe(false);
    expect(db.includes(Buffer.from(hashToken(key)))).toBe(true);
  });
});

/** Forwards to the S3 server; with `broken` set, zeroes SigV4 signatures so it answers 403. */
async function startSignatureBreaker(target: string): Promise<{ endpoint: string; set: (broken: boolean) => void; close: () => Promise<void> }> {
  const t = new URL(target);
  let broken = false;
  const server: Server = createServer((req, res) => {
    const headers = { ...req.headers };
    if (broken && typeof headers.authorization === 'string') {
      headers.authorization = headers.authorization.replace(/Signature=[0-9a-f]+/, `Signature=${'0'.repeat(64)}`);
    }
    const up = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    set: (b) => { broken = b; },
    close: () => new Promise((r) => { server.close(() => r()); server.closeAllConnections(); }),
  };
}

describe('S3 credentials', () => {
  it('never show in logs, API errors or CLI output, while requests succeed and while the server answers 403', async () => {
    const s3 = s3TestConfig();
    const proxy = await startSignatureBreaker(s3.endpoint);
    try {
      const store = s3TestUrl('creds');
      const env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
      const d = await startDaemon({
        store, env,
        args: ['--s3-endpoint', proxy.endpoint, '--s3-force-path-style', '--store-retries', '2', '--store-deadline', '10', '--log-level', 'trace'],
      });
      roots.push(d.root);
      const outputs: string[] = [];
      const api = async (method: string, url: string, body?: object): Promise<{ status: number; json: any }> => {
        const res = await fetch(`${d.endpoint}${url}`, {
          method, headers: { authorization: `Bearer ${d.apiKey}`, 'content-type': 'application/json' }, body: body && JSON.stringify(body),
        });
        const text = await res.text();
        outputs.push(text);
        return { status: res.status, json: text ? JSON.parse(text) : null };
      };

      // Working credentials: a commit lands, through the CLI.
      mkdirSync(d.p('good'));
      writeFileSync(d.p('good', 'model.bin'), randomBytes(64 << 10));
      const good = await cli(['--state-dir', d.stateDir, 'commit', d.p('good'), '--ref', 'latest', '--json'], {});
      outputs.push(good.stdout, good.stderr);
      expect(good.code, good.stderr).toBe(0);
      const goodCommit = JSON.parse(good.stdout);
      expect(goodCommit.status).toBe('completed');

      // The server refuses every request from now on (403 SignatureDoesNotMatch).
      proxy.set(true);
      const manifest = await api('GET', `/v1/commits/${goodCommit.id}/manifest`);
      expect(manifest.status).toBe(502);
      expect(manifest.json.error.code).toBe('STORAGE_ERROR');
      expect(manifest.json.error.message).toMatch(/403/);

      mkdirSync(d.p('bad'));
      writeFileSync(d.p('bad', 'model.bin'), randomBytes(64 << 10));
      const bad = await cli(['--state-dir', d.stateDir, 'commit', d.p('bad'), '--json'], {});
      outputs.push(bad.stdout, bad.stderr);
      expect(bad.code).toBe(1);
      const failed = (await api('GET', '/v1/commits?status=failed')).json.items;
      expect(failed.length).toBe(1);
      expect(failed[0].error.code).toBe('STORAGE_ERROR');
      expect(failed[0].error.message).toMatch(/403/);
      const badText = await cli(['--state-dir', d.stateDir, 'commit', d.p('bad')], {});
      outputs.push(badText.stdout, badText.stderr);
      expect(badText.code).toBe(1);
      // A ref move succeeds (the metadata store is the authority); its bucket mirror fails and is logged.
      expect((await api('PUT', '/v1/refs/other', { commitId: goodCommit.id })).status).toBe(200);
      const log = await cli(['--state-dir', d.stateDir, 'log', '--json'], {});
      outputs.push(log.stdout, log.stderr);

      proxy.set(false);
      await d.stop();
      const logs = d.logs();
      expect(logs).toMatch(/SignatureDoesNotMatch|403/);
      // The access key id is less secret than the secret, but a credential all the same.
      for (const c of [s3.secretAccessKey, s3.accessKeyId]) {
        expect(logs.includes(c), 'an S3 credential in the daemon log').toBe(false);
        for (const o of outputs) expect(o.includes(c), `an S3 credential in: ${o}`).toBe(false);
        expect(bytesUnder(d.stateDir).includes(Buffer.from(c)), 'an S3 credential in the state dir').toBe(false);
      }
    } finally {
      await proxy.close();
    }
  });

  it('never show when the secret is wrong: roset-mount fails to start with a 403, roset recover fails with a 403', async () => {
    const s3 = s3TestConfig();
    const wrong = `wrong-${randomBytes(20).toString('hex')}`;
    const store = s3TestUrl('creds-wrong');
    const env = { ...process.env, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: wrong, AWS_REGION: s3.region };
    const storeArgs = ['--store', store, '--s3-endpoint', s3.endpoint, '--s3-force-path-style', '--store-retries', '2', '--store-deadline', '10'];

    const root = tempRoot();
    roots.push(root);
    const mnt = path.join(root, 'mnt');
    const proc = spawn(process.execPath, [MOUNT_BIN, mnt, '--state-dir', path.join(root, 'state'), '--cache-dir', path.join(root, 'cache'),
      '--listen', '127.0.0.1:0', '--log-level', 'trace', ...storeArgs], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const mount = await collect(proc, 90_000);
    expect(mount.code, mount.stdout + mount.stderr).not.toBe(0);
    expect(fuseMountpoints()).not.toContain(mnt);
    const mountOut = mount.stdout + mount.stderr;
    expect(mountOut).toMatch(/could not start/);
    expect(mountOut).toMatch(/403/);

    const recoverDir = path.join(root, 'recovered');
    const recover = await cli(['--state-dir', recoverDir, 'recover', ...storeArgs], env);
    const recoverJson = await cli(['--state-dir', recoverDir, 'recover', '--json', ...storeArgs], env);
    for (const r of [recover, recoverJson]) expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(recover.stderr).toMatch(/403/);
    expect(JSON.parse(recoverJson.stdout).error.message).toMatch(/403/);

    for (const o of [mountOut, recover.stdout, recover.stderr, recoverJson.stdout, recoverJson.stderr]) {
      for (const c of [wrong, s3.secretAccessKey, s3.accessKeyId]) expect(o.includes(c), `an S3 credential in: ${o}`).toBe(false);
    }
  });
});
