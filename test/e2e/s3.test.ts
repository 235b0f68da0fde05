/**
 * The end-to-end scenario on a real S3 server (Ceph RGW, through a recording proxy):
 * write, commit, move `latest`, check the bucket holds exactly the layout of design §3,
 * dedup a shared file without uploading any of its bytes, resume after losing the
 * cache, and rebuild everything with `roset recover` after losing the state directory;
 * at start-up, abort this agent's abandoned multipart uploads and no other agent's.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../src/store/s3.js';
import { listAll } from '../../src/store/types.js';
import { removeRoot, runCli, startDaemon, stopAll, tempRoot, type TestDaemon } from '../support/daemon.js';
import { sha256Of, writeRandom } from '../support/files.js';
import { s3TestConfig, s3TestUrl } from '../support/s3.js';
import { startRecordingProxy, type RecordingProxy } from '../support/s3-proxy.js';

describe('end to end on S3', () => {
  let proxy: RecordingProxy;
  let store: string;
  let root: string;
  let d: TestDaemon;
  let env: NodeJS.ProcessEnv;
  let args: string[];
  const shas = new Map<string, string>();
  const agentId = 'agt_e2e00000000000001';
  let peerUpload: string;

  beforeAll(async () => {
    const s3 = s3TestConfig();
    proxy = await startRecordingProxy(s3.endpoint);
    store = s3TestUrl('e2e');
    env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
    args = ['--s3-endpoint', proxy.endpoint, '--s3-force-path-style'];
    root = tempRoot();
    // This node's agent id, as an earlier run of it left it in the state directory.
    mkdirSync(path.join(root, 'state'), { recursive: true, mode: 0o700 });
    writeFileSync(path.join(root, 'state', 'agent-id'), `${agentId}\n`);
    // A multipart upload that earlier run abandoned, and one another agent on the same
    // prefix has in progress.
    for (const [owner, key] of [[agentId, 'objects/ab/abandoned'], ['agt_peer', 'objects/cd/peer']] as const) {
      const s = await S3Store.fromUrl(store, { s3Endpoint: s3.endpoint, s3ForcePathStyle: true, s3ConditionalWrites: true, uploadOwner: owner });
      const uploadId = await s.createMultipartUpload(key);
      await s.uploadPart(key, uploadId, 1, Buffer.alloc(1024));
      if (owner === 'agt_peer') peerUpload = uploadId;
      await s.close();
    }
    d = await startDaemon({ root, store, args, env });
  });

  it('aborts its own multipart uploads left behind at start-up, and leaves another agent\'s alone', async () => {
    const s = await S3Store.fromUrl(store, { s3Endpoint: s3TestConfig().endpoint, s3ForcePathStyle: true, s3ConditionalWrites: true, uploadOwner: 'agt_peer' });
    expect((await s.listMultipartUploads('')).map((u) => [u.key, u.uploadId, u.owner])).toEqual([['objects/cd/peer', peerUpload, 'agt_peer']]);
    expect(d.logs()).toContain('aborted an abandoned multipart upload of this agent');
    expect(d.logs()).toContain('objects/ab/abandoned');
    // The peer's own sweep, to leave the bucket clean.
    expect((await s.abortOwnUploads()).map((u) => u.uploadId)).toEqual([peerUpload]);
    await s.close();
  });
  afterAll(async () => {
    await stopAll();
    await proxy?.close();
    if (root) removeRoot(root);
  });

  const keysInBucket = async (): Promise<string[]> => {
    const s = await S3Store.fromUrl(store, { s3Endpoint: s3TestConfig().endpoint, s3ForcePathStyle: true, s3ConditionalWrites: true });
    const keys: string[] = [];
    for await (const o of listAll(s, '')) keys.push(o.key);
    await s.close();
    return keys.sort();
  };

  it('commits a checkpoint into the bucket with exactly the layout of design §3', async () => {
    mkdirSync(d.p('checkpoints', 'step-1'), { recursive: true });
    shas.set('model.pt', writeRandom(d.p('checkpoints', 'step-1', 'model.pt'), 64 << 20));
    writeFileSync(d.p('checkpoints', 'step-1', 'meta.json'), '{"step": 1}');
    const r = d.cli('commit', d.p('checkpoints', 'step-1'), '-m', 'step 1', '--ref', 'latest', '--json');
    expect(r.code, r.stderr).toBe(0);
    const c = r.json();
    expect(c.status).toBe('completed');
    const manifest = await d.client.getManifest(c.id);
    const expected = [
      `commits/${c.id}.json`,
      ...manifest.files.map((f) => f.key),
      'refs/latest.json',
    ].sort();
    expect(await keysInBucket()).toEqual(expected);
    for (const f of manifest.files) expect(f.key).toBe(`objects/${f.sha256.slice(0, 2)}/${f.sha256}`);
  });

  it('uploads none of the bytes of a file shared with the previous checkpoint', async () => {
    // Files upload in the background as they close: count from the first write.
    await proxy.clear();
    mkdirSync(d.p('checkpoints', 'step-2'));
    writeFileSync(d.p('checkpoints', 'step-2', 'model.pt'), readFileSync(d.p('checkpoints', 'step-1', 'model.pt')));
    writeFileSync(d.p('checkpoints', 'step-2', 'meta.json'), '{"step": 2}');
    const r = d.cli('commit', d.p('checkpoints', 'step-2'), '-m', 'step 2', '--ref', 'latest', '--json');
    expect(r.code, r.stderr).toBe(0);
    const c = r.json();
    expect(c.stats.dedupedBytes).toBe(64 << 20);
    const puts = (await proxy.requests()).filter((q) => q.method === 'PUT' || (q.method === 'POST' && q.url.includes('uploadId')));
    const modelKey = `objects/${shas.get('model.pt')!.slice(0, 2)}/${shas.get('model.pt')}`;
    expect(puts.filter((q) => q.url.includes(modelKey))).toEqual([]);
    // Only the new meta.json, the manifest and the ref mirror were written.
    expect(puts.length).toBe(3);
    expect(puts.reduce((s, q) => s + q.bytes, 0)).toBeLessThan(64 * 1024);
  });

  it('resumes byte-identical after the cache is deleted', async () => {
    await d.stop();
    rmSync(d.cacheDir, { recursive: true, force: true });
    d = await startDaemon({ root, store, args, env });
    expect(await sha256Of(d.p('checkpoints', 'step-2', 'model.pt'))).toBe(shas.get('model.pt'));
    const ref = d.cli('ref', 'get', 'latest', '--json');
    expect(ref.json().commit.path).toBe('/checkpoints/step-2');
  });

  it('rebuilds refs and history from the bucket alone with `roset recover`', async () => {
    const logBefore = d.cli('log', '--json').json();
    const latestBefore = d.cli('ref', 'get', 'latest', '--json').json();
    const manifests = await Promise.all((logBefore.items ?? logBefore).map((c: { id: string }) => d.client.getManifest(c.id)));
    await d.stop();
    rmSync(d.stateDir, { recursive: true, force: true });
    rmSync(d.cacheDir, { recursive: true, force: true });

    const rec = runCli(d.stateDir, ['recover', '--store', store, ...args, '--json'], env);
    expect(rec.code, rec.stderr + rec.stdout).toBe(0);
    const report = rec.json();
    expect(report.commits).toBe(2);
    expect(report.refs).toEqual([{ name: 'latest', commitId: latestBefore.commitId }]);

    d = await startDaemon({ root, store, args, env });
    const latest = d.cli('ref', 'get', 'latest', '--json').json();
    expect(latest.commitId).toBe(latestBefore.commitId);
    const pick = (l: any) => (l.items ?? l).map((c: any) => ({ id: c.id, path: c.path, message: c.message, status: c.status, stats: c.stats }));
    expect(pick(d.cli('log', '--json').json())).toEqual(pick(logBefore));
    for (const m of manifests) {
      for (const f of m.files) expect(await sha256Of(path.join(d.mnt, m.path, f.path))).toBe(f.sha256);
    }
  });
});
