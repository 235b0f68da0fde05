/**
 * `GET /metrics` of a real `roset-mount`: served with no key, in the Prometheus text
 * format, and counting what happened: a commit (its phases, its bytes, its store
 * requests, the FUSE requests that wrote it), a cold read of a committed file after the
 * cache was deleted (a miss, the bytes downloaded, the other file of its folder
 * prefetched, then hits), a commit failed by a
 * file held open past the seal timeout (OPEN_HANDLES), and an EROFS. No path, name, id
 * or key ever appears in the output. `roset serve` serves the same route, counting the
 * commits it drives for its agents.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { startAgent, startServe, stopCluster } from '../support/cluster.js';
import { removeRoot, startDaemon, stopAll, tempRoot, waitCommit, type TestDaemon } from '../support/daemon.js';
import { errnoOf } from '../support/files.js';

interface Scrape {
  status: number;
  contentType: string;
  text: string;
  /** The value of a sample: `name` with exactly these labels (none: no labels); 0 when absent. */
  value: (name: string, labels?: Record<string, string>) => number;
}

async function scrape(d: { endpoint: string }): Promise<Scrape> {
  const res = await fetch(`${d.endpoint}/metrics`); // no Authorization header
  const text = await res.text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels = [...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => `${l[1]}=${l[2]}`).sort().join(',');
    samples.set(`${m[1]}{${labels}}`, Number(m[3]));
  }
  return {
    status: res.status,
    contentType: res.headers.get('content-type') ?? '',
    text,
    value: (name, labels = {}) => samples.get(`${name}{${Object.entries(labels).map(([k, v]) => `${k}=${v}`).sort().join(',')}}`) ?? 0,
  };
}

async function until(what: string, fn: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('GET /metrics on a real daemon', () => {
  let d: TestDaemon;
  const big = randomBytes(1 << 20);
  const small = Buffer.from('tiny');
  const secrets: string[] = [];

  afterAll(async () => {
    await stopAll();
    if (d) removeRoot(d.root);
  });

  it('serves the Prometheus text format with no key, before anything happened', async () => {
    d = await startDaemon({ sealTimeout: 2 });
    const s = await scrape(d);
    expect(s.status).toBe(200);
    expect(s.contentType).toMatch(/^text\/plain/);
    expect(s.text).toContain('# TYPE roset_commits_total counter');
    expect(s.text).toContain('# TYPE roset_commit_phase_seconds histogram');
    expect(s.value('roset_commits_total', { status: 'completed', code: 'none' })).toBe(0);
    expect(s.value('roset_upload_queue_files')).toBe(0);
    expect(s.value('roset_upload_queue_lag_seconds')).toBe(0);
  });

  it('counts a completed commit: its phases, bytes, store requests and FUSE requests', async () => {
    mkdirSync(d.p('ck', 'a'), { recursive: true });
    writeFileSync(d.p('ck', 'a', 'model.bin'), big);
    writeFileSync(d.p('ck', 'a', 'meta.txt'), small);
    const folder = (await d.client.resolvePath('/ck/a'))!;
    const c = await waitCommit(d.client, (await d.client.commit(folder.id)).id);
    expect(c.status).toBe('completed');
    secrets.push(c.id, folder.id, d.apiKey, d.root, d.mnt, '/ck/a', 'model.bin', 'meta.txt');

    const s = await scrape(d);
    expect(s.value('roset_commits_total', { status: 'completed', code: 'none' })).toBe(1);
    for (const phase of ['seal', 'upload', 'manifest']) expect(s.value('roset_commit_phase_seconds_count', { phase }), phase).toBe(1);
    // Both files are new bytes: all uploaded, none deduplicated.
    expect(s.value('roset_uploaded_bytes_total')).toBe(big.length + small.length);
    expect(s.value('roset_deduplicated_bytes_total')).toBe(0);
    expect(s.value('roset_staged_bytes_total')).toBeGreaterThanOrEqual(big.length + small.length);
    expect(s.value('roset_fuse_requests_total', { operation: 'create' })).toBe(2);
    expect(s.value('roset_fuse_requests_total', { operation: 'mkdir' })).toBe(2);
    expect(s.value('roset_fuse_requests_total', { operation: 'write' })).toBeGreaterThanOrEqual(2);
    expect(s.value('roset_fuse_requests_total', { operation: 'release' })).toBeGreaterThanOrEqual(2);
    // The manifest is the one create-only write of a commit outside a group.
    expect(s.value('roset_store_requests_total', { operation: 'put-if-absent', outcome: 'ok' })).toBe(1);
    // Each file (both of at most 1 MiB) is one create-only request, with no look-up first.
    expect(s.value('roset_store_requests_total', { operation: 'upload', outcome: 'ok' })).toBeGreaterThanOrEqual(2);
    expect(s.value('roset_store_requests_total', { operation: 'head', outcome: 'ok' })).toBe(0);
    expect(s.value('roset_store_retries_total', { operation: 'head' })).toBe(0);
    expect(s.value('roset_upload_queue_files')).toBe(0);
  });

  it('counts a cold read (the cache deleted): a miss, the bytes downloaded and its sibling prefetched, then a hit', async () => {
    const root = d.root;
    await d.stop();
    rmSync(d.cacheDir, { recursive: true, force: true });
    d = await startDaemon({ root, sealTimeout: 2 });

    const before = await scrape(d);
    expect(before.value('roset_cache_misses_total')).toBe(0);
    expect(before.value('roset_cache_bytes')).toBe(0);
    expect(before.value('roset_prefetch_objects_total')).toBe(0);
    expect(readFileSync(d.p('ck', 'a', 'model.bin')).equals(big)).toBe(true);
    // The cold read prefetches meta.txt, the other file of its folder, in the background.
    await until('meta.txt to be prefetched', async () => (await scrape(d)).value('roset_prefetch_objects_total') === 1);
    const s = await scrape(d);
    expect(s.value('roset_cache_misses_total')).toBe(1);
    expect(s.value('roset_cache_hits_total')).toBe(0);
    expect(s.value('roset_prefetch_bytes_total')).toBe(small.length);
    expect(s.value('roset_cache_downloaded_bytes_total')).toBe(big.length + small.length);
    expect(s.value('roset_store_requests_total', { operation: 'get', outcome: 'ok' })).toBe(2);
    expect(s.value('roset_fuse_requests_total', { operation: 'read' })).toBeGreaterThanOrEqual(1);
    // Recorded once its bytes are on disk, off the reader's path.
    await until('the cached objects to be recorded', async () => (await scrape(d)).value('roset_cache_bytes') === big.length + small.length);

    expect(readFileSync(d.p('ck', 'a', 'model.bin')).equals(big)).toBe(true);
    expect(readFileSync(d.p('ck', 'a', 'meta.txt')).equals(small)).toBe(true);
    const again = await scrape(d);
    expect(again.value('roset_cache_misses_total')).toBe(1);
    expect(again.value('roset_cache_hits_total')).toBe(2);
    expect(again.value('roset_cache_downloaded_bytes_total')).toBe(big.length + small.length);
    expect(again.value('roset_prefetch_objects_total')).toBe(1);
  });

  it('counts a failed commit by its code, and FUSE errors by errno', async () => {
    mkdirSync(d.p('ck', 'b'), { recursive: true });
    const fd = openSync(d.p('ck', 'b', 'held.bin'), 'w');
    try {
      writeSync(fd, 'partial');
      const folder = (await d.client.resolvePath('/ck/b'))!;
      const c = await waitCommit(d.client, (await d.client.commit(folder.id)).id, 30_000);
      expect(c.status).toBe('failed');
      expect(c.error?.code).toBe('OPEN_HANDLES');
      secrets.push(c.id, folder.id, 'held.bin');
    } finally {
      closeSync(fd);
    }
    expect(errnoOf(() => writeFileSync(d.p('ck', 'a', 'new.bin'), 'x'))).toBe('EROFS');

    const s = await scrape(d);
    expect(s.value('roset_commits_total', { status: 'failed', code: 'OPEN_HANDLES' })).toBe(1);
    expect(s.value('roset_commits_total', { status: 'completed', code: 'none' })).toBe(0);
    // The seal never finished: no seal duration recorded.
    expect(s.value('roset_commit_phase_seconds_count', { phase: 'seal' })).toBe(0);
    expect(s.value('roset_fuse_errors_total', { code: 'EROFS' })).toBeGreaterThanOrEqual(1);
  });

  it('names no path, file, id or key', async () => {
    const s = await scrape(d);
    secrets.push(d.apiKey, d.root, d.mnt, d.stateDir, d.cacheDir);
    for (const secret of secrets) expect(s.text.includes(secret), secret).toBe(false);
    expect(s.text).not.toMatch(/rsk_/);
  });
});

describe('GET /metrics on roset serve', () => {
  const root = tempRoot('roset-metrics-serve-');

  afterAll(async () => {
    await stopCluster();
    removeRoot(root);
  });

  it('counts the commits it drives for an agent, with no key and naming nothing', async () => {
    const serve = await startServe({ store: path.join(root, 'bucket') });
    const agent = await startAgent(serve, { store: path.join(root, 'bucket'), args: ['--listen', '127.0.0.1:0'] });
    mkdirSync(agent.p('run', 'step-1'), { recursive: true });
    writeFileSync(agent.p('run', 'step-1', 'shard.bin'), randomBytes(64 << 10));
    const folder = (await serve.client.resolvePath('/run/step-1'))!;
    const c = await waitCommit(serve.client, (await serve.client.commit(folder.id)).id);
    expect(c.status).toBe('completed');

    const s = await scrape(serve);
    expect(s.status).toBe(200);
    expect(s.contentType).toMatch(/^text\/plain/);
    expect(s.value('roset_commits_total', { status: 'completed', code: 'none' })).toBe(1);
    for (const phase of ['seal', 'upload', 'manifest']) expect(s.value('roset_commit_phase_seconds_count', { phase }), phase).toBe(1);
    // serve writes the manifest; the agent uploads the bytes (and serves no metrics).
    expect(s.value('roset_store_requests_total', { operation: 'put-if-absent', outcome: 'ok' })).toBe(1);
    expect(s.value('roset_uploaded_bytes_total')).toBe(0);
    for (const secret of [serve.apiKey, root, c.id, folder.id, 'step-1', 'shard.bin']) expect(s.text.includes(secret), secret).toBe(false);

    // The agent has no API; its --listen answers /health and /metrics, with no key.
    const url = /"url":"(http:\/\/127\.0\.0\.1:\d+)".*serving \/health and \/metrics/.exec(agent.logs())?.[1];
    expect(url, agent.logs().slice(-2000)).toBeDefined();
    const a = await scrape({ endpoint: url! });
    expect(a.status).toBe(200);
    expect(a.value('roset_uploaded_bytes_total')).toBe(64 << 10);
    // Commits are counted where they are driven: roset serve.
    expect(a.value('roset_commits_total', { status: 'completed', code: 'none' }) ?? 0).toBe(0);
    for (const secret of [serve.apiKey, root, c.id, folder.id, 'step-1', 'shard.bin']) expect(a.text.includes(secret), secret).toBe(false);
    expect((await fetch(`${url!}/v1/mounts`)).status).toBe(404);
  });
});
