/**
 * Object-store faults through the fault-injecting proxy in front of the real S3 test
 * server: commits ride out transient 5xx, SlowDown, resets, stalls and 409s within the
 * deadline; a persistent failure fails the commit cleanly (a code, the object named,
 * folder back in STAGING, `latest` unmoved) and a later commit succeeds once the fault
 * is gone; a truncated or corrupted GET gives EIO, never wrong bytes; a ranged GET of a
 * block-verified object that stalls past the request timeout, or is cut short, once is
 * sent again and the read gets the right bytes.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../../src/util/sleep.js';
import { removeRoot, startDaemon, stopAll, tempRoot, waitCommit, type TestDaemon } from '../support/daemon.js';
import { errnoOf, sha256, writeRandom } from '../support/files.js';
import { s3TestConfig, s3TestUrl } from '../support/s3.js';
import { startRecordingProxy, type RecordingProxy } from '../support/s3-proxy.js';

describe('storage faults (S3 through a fault-injecting proxy)', () => {
  let proxy: RecordingProxy;
  let root: string;
  let d: TestDaemon;
  let start: () => Promise<TestDaemon>;
  let n = 0;

  beforeAll(async () => {
    const s3 = s3TestConfig();
    proxy = await startRecordingProxy(s3.endpoint);
    root = tempRoot();
    const store = s3TestUrl('faults');
    start = () => startDaemon({
      root, store, args: ['--s3-endpoint', proxy.endpoint, '--s3-force-path-style', '--s3-request-timeout', '2', '--store-deadline', '8'],
      env: { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region },
    });
    d = await start();
    mkdirSync(d.p('ck'));
  });
  afterAll(async () => {
    await stopAll();
    await proxy?.close();
    if (root) removeRoot(root);
  });

  const checkpoint = async (): Promise<{ id: string; sha: string }> => {
    const dir = `step-${++n}`;
    mkdirSync(d.p('ck', dir));
    const sha = writeRandom(d.p('ck', dir, 'model.pt'), 6 << 20);
    return { id: (await d.client.resolvePath(`/ck/${dir}`))!.id, sha };
  };

  // Faults go in before the checkpoint is written: files upload in the background as
  // they close, so the object PUTs happen then, and again at the commit if they failed.
  it('completes commits despite transient 5xx, SlowDown, resets, stalls and 409s', async () => {
    await proxy.faults([
      { method: 'PUT', pathIncludes: '/objects/', times: 1, action: 'reset' },
      { method: 'PUT', pathIncludes: '/commits/', times: 1, action: 'stall', seconds: 3 },
      { method: 'PUT', pathIncludes: '/commits/', times: 2, action: 'status', status: 409, code: 'ConditionalRequestConflict' },
      { every: 3, action: 'status', status: 503, code: 'SlowDown' },
      { method: 'HEAD', times: 1, action: 'status', status: 500, code: 'InternalError' },
    ]);
    const { id, sha } = await checkpoint();
    const c = await waitCommit(d.client, (await d.client.commit(id)).id);
    await proxy.faults();
    expect(c.status, JSON.stringify(c.error)).toBe('completed');
    const faults = (await proxy.requests()).filter((r) => r.fault).map((r) => r.fault);
    expect(new Set(faults)).toEqual(new Set(['reset', 'stall', 'status']));
    const m = await d.client.getManifest(c.id);
    expect(m.files[0]!.sha256).toBe(sha);
    await d.client.updateRef('latest', c.id);
  });

  it('fails a commit cleanly on a persistent failure, and commits once the fault is gone', async () => {
    const before = (await d.client.getRef('latest'))!.commitId;
    await proxy.faults([{ method: 'PUT', pathIncludes: '/objects/', action: 'status', status: 500, code: 'InternalError' }]);
    const { id } = await checkpoint();
    const t0 = Date.now();
    const failed = await waitCommit(d.client, (await d.client.commit(id)).id);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('STORAGE_ERROR');
    expect(failed.error?.message).toMatch(/objects\/[0-9a-f]{2}\/[0-9a-f]{64}/);
    expect((await d.client.getNode(id)).state).toBe('staging');
    expect((await d.client.getRef('latest'))!.commitId).toBe(before);

    await proxy.faults();
    const ok = await waitCommit(d.client, (await d.client.commit(id)).id);
    expect(ok.status).toBe('completed');
  });

  it('fails a commit whose manifest write is refused (412), and leaves nothing visible', async () => {
    const before = (await d.client.getRef('latest'))!.commitId;
    const { id } = await checkpoint();
    await proxy.faults([{ method: 'PUT', pathIncludes: '/commits/', action: 'status', status: 412, code: 'PreconditionFailed' }]);
    const failed = await waitCommit(d.client, (await d.client.commit(id)).id);
    await proxy.faults();
    expect(failed.status).toBe('failed');
    expect((await d.client.getNode(id)).state).toBe('staging');
    expect((await d.client.getRef('latest'))!.commitId).toBe(before);
    expect((await waitCommit(d.client, (await d.client.commit(id)).id)).status).toBe('completed');
  });

  it('answers EIO to a truncated or corrupted GET, never wrong bytes', async () => {
    const { id, sha } = await checkpoint();
    const c = await waitCommit(d.client, (await d.client.commit(id)).id);
    expect(c.status).toBe('completed');
    const file = d.p('ck', `step-${n}`, 'model.pt');
    // Lose the local copies, so reads must come from the store.
    await d.stop();
    rmSync(d.cacheDir, { recursive: true, force: true });
    d = await start();

    await proxy.faults([{ method: 'GET', pathIncludes: '/objects/', action: 'corrupt' }]);
    expect(errnoOf(() => readFileSync(file))).toBe('EIO');
    for (let i = 0; i < 100 && !d.logs().includes('failed its integrity check'); i++) await sleep(20);
    expect(d.logs()).toContain('failed its integrity check');
    await proxy.faults([{ method: 'GET', pathIncludes: '/objects/', action: 'truncate' }]);
    expect(errnoOf(() => readFileSync(file))).toBe('EIO');
    await proxy.faults();
    expect(sha256(readFileSync(file))).toBe(sha);
  });

  it('sends again a ranged GET that stalls or is cut short once, and serves the right bytes', async () => {
    const dir = `step-${++n}`;
    mkdirSync(d.p('ck', dir));
    // Three 8 MiB blocks and a bit: read block by block, each its own ranged GET.
    const sha = writeRandom(d.p('ck', dir, 'model.pt'), 3 * (8 << 20) + 4097);
    const id = (await d.client.resolvePath(`/ck/${dir}`))!.id;
    const c = await waitCommit(d.client, (await d.client.commit(id)).id);
    expect(c.status).toBe('completed');
    const file = d.p('ck', dir, 'model.pt');
    for (const action of ['stall', 'truncate'] as const) {
      await d.stop();
      rmSync(d.cacheDir, { recursive: true, force: true });
      d = await start();
      // Longer than --s3-request-timeout (2 s): the request fails and the retry layer sends it again.
      await proxy.faults([{ method: 'GET', pathIncludes: '/objects/', times: 1, action, seconds: 5 }]);
      expect(sha256(readFileSync(file)), action).toBe(sha);
      // The failed GET was sent again, by the retry layer (a stall, a reset mid-body) or
      // by the block's own check (a body that ended short but whole).
      const metrics = await (await fetch(`${d.endpoint}/metrics`)).text();
      const retried = Number(/^roset_store_retries_total\{operation="get"\} (\d+)/m.exec(metrics)?.[1] ?? 0);
      const refetched = (d.logs().match(/fetching it again/g) ?? []).length;
      expect(retried + refetched, `${action}: requests sent again`).toBe(1);
      await proxy.faults();
    }
  });
});
