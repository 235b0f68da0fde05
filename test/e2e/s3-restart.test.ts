/**
 * Restart on S3, in the right order: a daemon killed (SIGKILL) in the middle of a
 * multipart upload aborts its own abandoned upload first, then resumes the commit,
 * which uploads the file afresh and completes with the right bytes in the bucket;
 * another agent's multipart upload in progress on the same prefix, and an untagged
 * one, survive the restart whole.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ListPartsCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../src/store/s3.js';
import { listAll } from '../../src/store/types.js';
import { removeRoot, startDaemon, stopAll, tempRoot, waitCommit, type TestDaemon } from '../support/daemon.js';
import { sha256, writeRandom } from '../support/files.js';
import { s3TestConfig, s3TestUrl } from '../support/s3.js';
import { startRecordingProxy, type RecordedRequest, type RecordingProxy } from '../support/s3-proxy.js';

const MiB = 1024 * 1024;

/** Polls `probe` until it returns a value: each probe reads the state it waits for. */
async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('restart on S3 after a SIGKILL mid-upload', () => {
  let proxy: RecordingProxy;
  let store: string;
  let root: string | undefined;
  let raw: S3Store;
  let peer: S3Store;

  beforeAll(async () => {
    const s3 = s3TestConfig();
    proxy = await startRecordingProxy(s3.endpoint);
    store = s3TestUrl('restart');
    // Straight to the server, not through the proxy: what the bucket really holds.
    const direct = { s3Endpoint: s3.endpoint, s3ForcePathStyle: true, s3ConditionalWrites: true };
    raw = await S3Store.fromUrl(store, direct);
    peer = await S3Store.fromUrl(store, { ...direct, uploadOwner: 'agt_peer' });
  });

  afterAll(async () => {
    await stopAll();
    await proxy?.close();
    if (raw) {
      for await (const o of listAll(raw, '')) await raw.delete(o.key);
      for (const u of await raw.listMultipartUploads('')) await raw.abortMultipartUpload(u.key, u.uploadId).catch(() => undefined);
      await raw.close();
    }
    await peer?.close();
    if (root) removeRoot(root);
  });

  it('aborts its own upload before resuming, completes the commit with the right bytes, and leaves other uploads alone', async () => {
    const s3 = s3TestConfig();
    const env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
    // 5 MiB parts, one at a time, so the file below is five parts sent in order.
    const args = ['--s3-endpoint', proxy.endpoint, '--s3-force-path-style', '--upload-part-size', '5M', '--upload-concurrency', '1'];
    root = tempRoot();
    let d: TestDaemon = await startDaemon({ root, store, args, env: { ...env, ROSET_FAILPOINTS: 'commit.after-snapshot' } });
    const agent = readFileSync(path.join(d.stateDir, 'agent-id'), 'utf8').trim();

    // Another agent's upload in progress on the same prefix, and an untagged one.
    const peerKey = 'objects/ee/peer-in-progress';
    const peerId = await peer.createMultipartUpload(peerKey);
    const peerPart1 = Buffer.alloc(5 * MiB, 1);
    const p1 = await peer.uploadPart(peerKey, peerId, 1, peerPart1);
    const untaggedId = await raw.createMultipartUpload('objects/ff/untagged');
    await raw.uploadPart('objects/ff/untagged', untaggedId, 1, Buffer.alloc(1024));

    // Part 2 of the daemon's upload never gets through: the daemon dies holding it.
    await proxy.faults([{ method: 'PUT', queryIncludes: 'partNumber=2&', action: 'stall', seconds: 3600 }]);
    mkdirSync(d.p('ck', 'step-1'), { recursive: true });
    const sha = writeRandom(d.p('ck', 'step-1', 'model.bin'), 22 * MiB);
    const key = `objects/${sha.slice(0, 2)}/${sha}`;
    const pending = await d.client.commit((await d.client.resolvePath('/ck/step-1'))!.id);
    // The commit has its snapshot (it resumes from there), and the upload is under way:
    // part 2 is held at the proxy, so part 1, sent before it, is in the bucket.
    await until('the commit snapshot', async () => (d.logs().includes('"failpoint":"commit.after-snapshot"') ? true : undefined));
    const isPart2 = (q: RecordedRequest) => q.method === 'PUT' && q.url.includes(`/${key}?`) && q.url.includes('partNumber=2&');
    await until('part 2 of the upload', async () => ((await proxy.requests()).some(isPart2) ? true : undefined));
    const abandoned = (await raw.listMultipartUploads('objects/')).find((u) => u.key === key);
    expect(abandoned?.owner).toBe(agent);
    const parts = await raw.client.send(new ListPartsCommand({ Bucket: raw.bucket, Key: raw.prefix + key, UploadId: abandoned!.uploadId }));
    expect(parts.Parts?.map((p) => p.PartNumber)).toEqual([1]);

    await d.kill9();
    await proxy.clear();
    // The sweep's look-up of this agent's tags is held for 2 s: had the commit resumed
    // first, its new upload would be tagged by then, and aborted under it.
    await proxy.faults([{ method: 'GET', queryIncludes: `uploads%2F${agent}%2F`, times: 1, action: 'stall', seconds: 2 }]);
    d = await startDaemon({ root, store, args, env });

    const done = await waitCommit(d.client, pending.id);
    expect(done.status, JSON.stringify(done.error)).toBe('completed');
    expect((await d.client.getManifest(pending.id)).files.map((f) => [f.path, f.sha256])).toEqual([['model.bin', sha]]);
    // The bytes in the bucket are the file's.
    expect(sha256(await raw.get(key))).toBe(sha);

    // The abandoned upload was aborted before the resumed commit started its own.
    const reqs = await proxy.requests();
    expect(reqs.filter((q) => q.fault === 'stall')).toHaveLength(1);
    const aborted = reqs.findIndex((q) => q.method === 'DELETE' && q.url.includes(`/${key}?`) && q.url.includes(`uploadId=${encodeURIComponent(abandoned!.uploadId)}`));
    const created = reqs.findIndex((q) => q.method === 'POST' && q.url.includes(`/${key}?`) && /[?&]uploads(=|&|$)/.test(q.url));
    expect(aborted).toBeGreaterThanOrEqual(0);
    expect(created).toBeGreaterThan(aborted);

    // Only the other uploads are left, whole: the peer's still completes.
    expect((await raw.listMultipartUploads('')).map((u) => [u.key, u.uploadId, u.owner]))
      .toEqual([[peerKey, peerId, 'agt_peer'], ['objects/ff/untagged', untaggedId, null]]);
    const p2 = await peer.uploadPart(peerKey, peerId, 2, Buffer.from('tail'));
    await peer.completeMultipartUpload(peerKey, peerId, [p1, p2]);
    expect((await raw.get(peerKey)).equals(Buffer.concat([peerPart1, Buffer.from('tail')]))).toBe(true);
  });
});
