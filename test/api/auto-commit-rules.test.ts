/**
 * A mount's auto-commit rules through the API, without FUSE: the control plane checks
 * every rule with the parser `roset-mount` uses (400 INVALID_AUTO_COMMIT_RULE, nothing
 * changed), keeps the list per mount with a version and compare-and-swap (409
 * AUTO_COMMIT_CONFLICT), tells listeners in its process of each change, and answers a
 * waiting agent poll at once with the new version, which the agent's rpc then reads.
 * The SDK and `roset auto-commit list|set|add|remove` (built `bin/roset.js`) are driven
 * against the same server.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiServer } from '../../src/api/server.js';
import type { AutoCommitRules } from '../../src/api/types.js';
import { ControlPlane } from '../../src/control/service.js';
import { SqliteMetadataStore } from '../../src/meta/sqlite.js';
import { RosetClient } from '../../src/sdk/client.js';
import { LocalStore } from '../../src/store/local.js';
import { REPO } from '../support/daemon.js';

let dir: string;
let meta: SqliteMetadataStore;
let cp: ControlPlane;
let server: ApiServer;
let url: string;
let token: string;
let mountId: string;
let client: RosetClient;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'roset-acr-'));
  const log = pino({ level: 'silent' });
  meta = new SqliteMetadataStore(path.join(dir, 'metadata.db'));
  const store = await LocalStore.open(path.join(dir, 'store'));
  cp = new ControlPlane(meta, store, log, { sealTimeoutMs: 10_000, holder: 'test', agentStore: { url: `file://${dir}/store` } });
  mountId = await cp.ensureMount('default');
  token = (await cp.createApiKey('default')).token;
  server = new ApiServer(cp, log);
  url = await server.listen('127.0.0.1', 0, {});
  client = new RosetClient({ apiUrl: url, apiKey: token, env: {}, stateDir: path.join(dir, 'state'), retryBaseMs: 5 });
});

afterAll(async () => {
  await server?.close();
  await meta?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function call(method: string, route: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${route}`, {
    method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

describe('the API of a mount\'s auto-commit rules', () => {
  it('lists none at version 0, replaces the list, and refuses a bad rule with what is wrong, changing nothing', async () => {
    const empty = await call('GET', `/v1/mounts/${mountId}/auto-commit`);
    expect(empty).toEqual({ status: 200, body: { mountId, rules: [], version: 0, updatedAt: null, updatedBy: null } });
    const set = await call('PUT', `/v1/mounts/${mountId}/auto-commit`, { rules: ['checkpoints/*:@dcp:latest', 'runs/**/step-*:DONE'] });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({
      mountId, version: 1, updatedBy: 'key:default',
      rules: [
        { rule: 'checkpoints/*:@dcp:latest', folders: 'checkpoints/*', marker: '.metadata', ref: 'latest' },
        { rule: 'runs/**/step-*:DONE', folders: 'runs/**/step-*', marker: 'DONE', ref: null },
      ],
    });
    for (const [rules, what] of [
      [['checkpoints/*'], 'expected FOLDERS:MARKER[:REF]'],
      [[':@dcp'], 'FOLDERS is empty'],
      [['a/*:@nope'], 'unknown preset @nope'],
      [['a/*:x/y'], 'MARKER is a file name'],
      [['a/*:M:.bad'], 'is not a ref name'],
      [['a:M', 'a:M'], 'listed twice'],
    ] as const) {
      const r = await call('PUT', `/v1/mounts/${mountId}/auto-commit`, { rules });
      expect({ status: r.status, code: r.body.error.code }, JSON.stringify(rules)).toEqual({ status: 400, code: 'INVALID_AUTO_COMMIT_RULE' });
      expect(r.body.error.message).toContain(what);
    }
    for (const body of [{}, { rules: 'a:M' }, { rules: [1] }, { rules: ['a:M'], expectedVersion: -1 }, { rules: ['a:M'], expectedVersion: 1.5 }]) {
      const r = await call('PUT', `/v1/mounts/${mountId}/auto-commit`, body);
      expect({ status: r.status, code: r.body.error.code }, JSON.stringify(body)).toEqual({ status: 400, code: 'BAD_REQUEST' });
    }
    expect((await call('GET', `/v1/mounts/${mountId}/auto-commit`)).body).toEqual(set.body);
    expect((await call('GET', '/v1/mounts/mnt_nope/auto-commit')).body.error.code).toBe('MOUNT_NOT_FOUND');
    expect((await call('PUT', '/v1/mounts/mnt_nope/auto-commit', { rules: [] })).status).toBe(404);
  });

  it('sets by compare-and-swap: a stale expectedVersion is 409 AUTO_COMMIT_CONFLICT naming the current version', async () => {
    const cur = (await call('GET', `/v1/mounts/${mountId}/auto-commit`)).body as AutoCommitRules;
    const stale = await call('PUT', `/v1/mounts/${mountId}/auto-commit`, { rules: [], expectedVersion: cur.version - 1 });
    expect(stale.status).toBe(409);
    expect(stale.body.error).toMatchObject({ code: 'AUTO_COMMIT_CONFLICT', details: { version: cur.version } });
    const ok = await call('PUT', `/v1/mounts/${mountId}/auto-commit`, { rules: ['x/*:M'], expectedVersion: cur.version });
    expect(ok.body).toMatchObject({ version: cur.version + 1, rules: [{ rule: 'x/*:M' }] });
  });

  it('tells listeners in its process of every change, with the mount and version', async () => {
    const seen: AutoCommitRules[] = [];
    const off = cp.onAutoCommitRules((r) => seen.push(r));
    try {
      const r = await client.setAutoCommitRules(['a/*:M:latest']);
      expect(seen).toEqual([r]);
    } finally {
      off();
    }
    await client.setAutoCommitRules([]);
    expect(seen).toHaveLength(1);
  });

  it('answers a waiting agent poll at once when the rules move past the version it holds, and serves them by rpc', async () => {
    await call('POST', '/v1/agents', { agentId: 'agt_acr', hostname: 'n1' });
    const held = (await call('GET', `/v1/mounts/${mountId}/auto-commit`)).body.version as number;
    // A poll naming the current version waits (its 5 s wait is far past this test's deadline for the answer)...
    const started = Date.now();
    const poll = call('POST', '/v1/agents/agt_acr/poll', { waitMs: 5000, autoCommitVersion: held });
    // ...until the set, which answers it with the new version.
    await client.setAutoCommitRules(['ckpt/*:@dcp:latest']);
    const answer = await poll;
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ tasks: [], autoCommitVersion: held + 1 });
    expect(Date.now() - started).toBeLessThan(4000);
    const rpc = await call('POST', '/v1/agents/agt_acr/rpc', { method: 'autoCommitRules', args: [mountId] });
    expect(rpc.body.value).toMatchObject({ mountId, version: held + 1, rules: [{ rule: 'ckpt/*:@dcp:latest', marker: '.metadata', ref: 'latest' }] });
    expect((await call('POST', '/v1/agents/agt_acr/rpc', { method: 'autoCommitRules', args: ['mnt_other'] })).status).toBe(400);
    // A poll naming an older version answers at once.
    expect((await call('POST', '/v1/agents/agt_acr/poll', { waitMs: 5000, autoCommitVersion: held })).body.autoCommitVersion).toBe(held + 1);
  });
});

describe('the SDK', () => {
  it('adds and removes one rule by compare-and-swap, on the default mount when none is named', async () => {
    await client.setAutoCommitRules([]);
    const a = await client.addAutoCommitRule('a/*:M');
    const b = await client.addAutoCommitRule('b/*:@dcp:latest');
    expect(b.rules.map((r) => r.rule)).toEqual(['a/*:M', 'b/*:@dcp:latest']);
    expect(b.version).toBe(a.version + 1);
    expect((await client.addAutoCommitRule('a/*:M')).version).toBe(b.version);
    // Racing adds: both land.
    await Promise.all(['c:M', 'd:M', 'e:M'].map((r) => client.addAutoCommitRule(r)));
    expect((await client.getAutoCommitRules()).rules.map((r) => r.rule).sort()).toEqual(['a/*:M', 'b/*:@dcp:latest', 'c:M', 'd:M', 'e:M']);
    const removed = await client.removeAutoCommitRule('a/*:M');
    expect(removed.rules.map((r) => r.rule)).not.toContain('a/*:M');
    expect((await client.removeAutoCommitRule('a/*:M')).version).toBe(removed.version);
    await expect(client.addAutoCommitRule('nope')).rejects.toMatchObject({ wireCode: 'INVALID_AUTO_COMMIT_RULE', status: 400 });
    expect((await client.getAutoCommitRules({ mountId })).mountId).toBe(mountId);
  });
});

describe('roset auto-commit', () => {
  const roset = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => new Promise((done) => {
    execFile(process.execPath, [path.join(REPO, 'bin', 'roset.js'), '--api-url', url, '--api-key', token, ...args],
      { cwd: REPO, env: { PATH: process.env.PATH ?? '', HOME: dir, ROSET_STATE_DIR: path.join(dir, 'cli-state') }, timeout: 30_000 },
      (err, stdout, stderr) => done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });

  it('lists, sets, adds and removes rules, with --json, and exits 1 with the code on a bad rule', async () => {
    if (!existsSync(path.join(REPO, 'dist', 'cli', 'roset.js'))) throw new Error('dist/cli/roset.js is missing: run `npm run build` first');
    const set = await roset('auto-commit', 'set', 'ckpt/*:@dcp:latest', 'runs/**:DONE', '--json');
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout).rules.map((r: { rule: string }) => r.rule)).toEqual(['ckpt/*:@dcp:latest', 'runs/**:DONE']);
    const add = await roset('auto-commit', 'add', 'more/*:M');
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toContain('more/*:M    folders more/*, marker M');
    const rm = await roset('auto-commit', 'remove', 'runs/**:DONE', '--json');
    expect(JSON.parse(rm.stdout).rules.map((r: { rule: string }) => r.rule)).toEqual(['ckpt/*:@dcp:latest', 'more/*:M']);
    const list = await roset('auto-commit', 'list');
    expect(list.stdout).toContain('ckpt/*:@dcp:latest    folders ckpt/*, marker .metadata, ref latest');
    const bad = await roset('auto-commit', 'add', 'x:@nope', '--json');
    expect(bad.code).toBe(1);
    expect(bad.stderr + bad.stdout).toContain('INVALID_AUTO_COMMIT_RULE');
    const cleared = await roset('auto-commit', 'set', '--json');
    expect(JSON.parse(cleared.stdout).rules).toEqual([]);
    const help = await roset('auto-commit', '--help');
    expect(help.stdout).toMatch(/list[\s\S]*set[\s\S]*add[\s\S]*remove/);
  });
});
