/**
 * S3Store against a real S3 server: the conformance suite, then what only S3 has
 * (URL parsing, the capability probe, the credential chain, error hygiene, 409 retries,
 * one attempt per request in the client with retries part by part in the retry layer,
 * owner tags of multipart uploads, and an upload whose file changed sent only once).
 *
 * The server is Ceph RGW from scripts/s3-test-server (started on first use by
 * s3TestConfig), or whatever ROSET_TEST_S3_ENDPOINT names. These tests never skip.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CacheError, StoreError } from '../../src/errors/index.js';
import { openStore } from '../../src/store/index.js';
import { parseS3Url, S3Store } from '../../src/store/s3.js';
import { RetryingStore } from '../../src/store/retry.js';
import { listAll } from '../../src/store/types.js';
import { s3TestConfig, s3TestStoreOptions, s3TestUrl, type S3TestConfig } from '../support/s3.js';
import { startRecordingProxy, type RecordedRequest, type RecordingProxy } from '../support/s3-proxy.js';
import { storeConformance } from './conformance.js';
import { until } from '../support/until.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let cfg: S3TestConfig;
// Without a server every test fails with the reason (a throwing beforeAll would
// report them as skipped).
let setupError: unknown;
beforeAll(() => {
  try {
    cfg = s3TestConfig();
  } catch (err) {
    setupError = err;
  }
});
beforeEach(() => {
  if (setupError) throw setupError;
});

storeConformance('S3Store (Ceph RGW)', async () => {
  const url = s3TestUrl('conformance');
  return {
    // Through fromUrl, so the capabilities asserted are the probed ones.
    store: await S3Store.fromUrl(url, s3TestStoreOptions()),
    withOwner: (owner) => S3Store.fromUrl(url, s3TestStoreOptions({ s3ConditionalWrites: true, uploadOwner: owner })),
  };
});

describe('S3Store specifics', () => {
  const opened: S3Store[] = [];
  const open = async (url = s3TestUrl('s3store'), extra = {}) => {
    const s = await S3Store.fromUrl(url, s3TestStoreOptions(extra));
    opened.push(s);
    return s;
  };

  afterAll(async () => {
    for (const s of opened) {
      for await (const o of listAll(s, '')) await s.delete(o.key);
      await s.close();
    }
  });

  it('sends the parts of a file while it is written, and the owner\'s start-up sweep removes what a crash left of such uploads', async () => {
    const url = s3TestUrl('early');
    const mine = await open(url, { s3ConditionalWrites: true, uploadOwner: 'agt_early' });
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'roset-early-'));
    try {
      const file = path.join(dir, 'growing.bin');
      const data = randomBytes(70 * MiB);
      await fs.writeFile(file, data.subarray(0, 64 * MiB));
      // 64 MiB final: the first two 32 MiB parts go before anything is published.
      const up = mine.startFileUpload(file);
      up.grow(64 * MiB);
      await until('two parts sent', () => (up.sentBytes >= 64 * MiB ? true : null));
      expect((await mine.listMultipartUploads('')).map((u) => [u.key.startsWith('.roset/partial/agt_early/'), u.owner])).toEqual([[true, 'agt_early']]);
      expect(await mine.list('')).toEqual({ objects: [] });
      await fs.appendFile(file, data.subarray(64 * MiB));
      await up.publish('objects/early', data.length);
      expect(sha(await mine.get('objects/early'))).toBe(sha(data));

      // A crash while parts were going, and one between the completion and the copy:
      // an unfinished upload and a temporary object, both this owner's.
      const cut = mine.startFileUpload(file);
      cut.grow(data.length);
      await until('a part sent', () => (cut.sentBytes > 0 ? true : null));
      const s3 = parseS3Url(url);
      const root = await open(`s3://${cfg.bucket}`, { s3ConditionalWrites: true });
      await root.put(`${s3.prefix}.roset/partial/agt_early/left-by-a-crash`, 'completed, not copied');
      await root.put(`${s3.prefix}.roset/partial/agt_peer/still-uploading`, 'another agent\'s');
      // At the next start (a new store of the same owner), its sweep clears both.
      const restarted = await open(url, { s3ConditionalWrites: true, uploadOwner: 'agt_early' });
      const partial = async (owner: string): Promise<string[]> => (await root.list(`${s3.prefix}.roset/partial/${owner}/`)).objects.map((o) => o.key);
      expect((await restarted.abortOwnUploads()).map((u) => u.key.startsWith('.roset/partial/agt_early/'))).toEqual([true]);
      // The "dead" process's object, made inert: its requests now fail, and leave nothing.
      await cut.abort();
      expect((await mine.listMultipartUploads('')).filter((u) => u.owner === 'agt_early')).toEqual([]);
      expect(await partial('agt_early')).toEqual([]);
      expect(await partial('agt_peer')).toHaveLength(1);
      await root.delete(`${s3.prefix}.roset/partial/agt_peer/still-uploading`);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('parses s3:// URLs into a bucket and a normalised prefix', () => {
    expect(parseS3Url('s3://bkt')).toEqual({ bucket: 'bkt', prefix: '' });
    expect(parseS3Url('s3://bkt/')).toEqual({ bucket: 'bkt', prefix: '' });
    expect(parseS3Url('s3://bkt/a/b')).toEqual({ bucket: 'bkt', prefix: 'a/b/' });
    expect(parseS3Url('s3://my.bkt-1//a//b/')).toEqual({ bucket: 'my.bkt-1', prefix: 'a/b/' });
    for (const bad of ['s3:/bkt', 'http://bkt/x', 's3://', 's3://bkt/../x', 's3://b/./x']) {
      expect(() => parseS3Url(bad), bad).toThrow(StoreError);
    }
  });

  it('is what openStore returns for s3:// and keeps keys under the prefix', async () => {
    const url = s3TestUrl('openstore');
    const store = await openStore(url, s3TestStoreOptions());
    // The S3 store, inside the one retry layer every store gets.
    expect(store).toBeInstanceOf(RetryingStore);
    expect((store as RetryingStore).inner).toBeInstanceOf(S3Store);
    opened.push((store as RetryingStore).inner as S3Store);
    await store.put('x/y.json', '{}');
    // The bucket-level view: the key sits under the prefix.
    const root = await open(`s3://${cfg.bucket}`, { s3ConditionalWrites: true });
    const prefix = url.slice(`s3://${cfg.bucket}/`.length);
    const listed = await root.list(`${prefix}/`);
    expect(listed.objects.map((o) => o.key)).toEqual([`${prefix}/x/y.json`]);
    expect((await store.list('')).objects.map((o) => o.key)).toEqual(['x/y.json']);
  });

  it('sends a known sha256 in place of hashing only where the probe saw a wrong one refused', async () => {
    const store = await open(undefined, { s3ConditionalWrites: false });
    expect(store.sendsKnownSha256).toBe(false);
    await store.probeCapabilities();
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'roset-s3-sha-'));
    try {
      const f = path.join(tmp, 'f.bin');
      await fs.writeFile(f, 'the bytes');
      const wrong = createHash('sha256').update('other bytes').digest('hex');
      if (store.sendsKnownSha256) {
        // The server checks it: bytes that do not match their name are refused.
        await expect(store.putFile('objects/wrong', f, { sha256: wrong })).rejects.toMatchObject({ rosetCode: 'STORAGE_ERROR', details: { status: 400 } });
        expect(await store.head('objects/wrong')).toBeNull();
      } else {
        // Not checked by the server (Ceph RGW 16): never sent, the body is hashed instead.
        await store.putFile('objects/wrong', f, { sha256: wrong });
        expect((await store.get('objects/wrong')).toString()).toBe('the bytes');
      }
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  });

  it('hashes with MD5 only on a CPU without SHA instructions, and only once the probe saw Content-MD5 verified', async () => {
    const { bucket, prefix } = parseS3Url(s3TestUrl('s3md5'));
    const make = (shaInstructions: boolean) => {
      const s = new S3Store({
        bucket, prefix, endpoint: cfg.endpoint, region: cfg.region, shaInstructions,
        credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey },
      });
      opened.push(s);
      return s;
    };
    const slow = make(false);
    expect(slow.payloadChecksum).toBe('sha256');
    await slow.probeCapabilities();
    // Ceph RGW verifies Content-MD5 (400 BadDigest on a wrong one).
    expect(slow.payloadChecksum).toBe('md5');
    const fast = make(true);
    await fast.probeCapabilities();
    expect(fast.payloadChecksum).toBe('sha256');
  });

  it('measures conditional writes with a probe and leaves no probe key behind', async () => {
    const store = await open(undefined, { s3ConditionalWrites: false });
    expect(store.capabilities.conditionalWrites).toBe(false);
    expect(await store.probeCapabilities()).toEqual({ conditionalWrites: true, multipart: true });
    expect(store.capabilities.conditionalWrites).toBe(true);
    // The probe's work area is invisible to list, and empty afterwards.
    expect((await store.list('')).objects).toEqual([]);
    const root = await open(`s3://${cfg.bucket}`, { s3ConditionalWrites: true });
    const prefix = store.prefix;
    expect((await root.list(prefix)).objects).toEqual([]);
  });

  it('returns multipart ETags unquoted, with the part count', async () => {
    const store = await open();
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'roset-s3-'));
    try {
      await fs.writeFile(path.join(tmp, 'f'), randomBytes(12 * 1024 * 1024));
      const r = await store.putFile('f', path.join(tmp, 'f'), { partSize: 5 * 1024 * 1024 });
      expect(r.etag).toMatch(/^[0-9a-f]{32}-3$/);
      expect((await store.head('f'))?.etag).toBe(r.etag);
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  });

  it('reads credentials from a shared credentials file profile', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'roset-aws-'));
    const saved = { ...process.env };
    try {
      await fs.writeFile(path.join(dir, 'credentials'),
        `[roset-test]\naws_access_key_id = ${cfg.accessKeyId}\naws_secret_access_key = ${cfg.secretAccessKey}\n`, { mode: 0o600 });
      await fs.writeFile(path.join(dir, 'config'), '[profile roset-test]\nregion = us-east-1\n');
      delete process.env.AWS_ACCESS_KEY_ID;
      delete process.env.AWS_SECRET_ACCESS_KEY;
      delete process.env.AWS_REGION;
      process.env.AWS_SHARED_CREDENTIALS_FILE = path.join(dir, 'credentials');
      process.env.AWS_CONFIG_FILE = path.join(dir, 'config');
      const store = await S3Store.fromUrl(s3TestUrl('profile'), { s3Endpoint: cfg.endpoint, s3Profile: 'roset-test' });
      opened.push(store);
      expect(store.capabilities.conditionalWrites).toBe(true);
      await store.put('p', 'via profile');
      expect((await store.get('p')).toString()).toBe('via profile');
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('never puts credentials in errors or descriptions', async () => {
    const url = s3TestUrl('badcreds');
    const bad = new S3Store({
      ...parseS3Url(url),
      endpoint: cfg.endpoint,
      region: cfg.region,
      credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: 'wrong-secret-Zq8xT1' },
      capabilities: { conditionalWrites: true, multipart: true },
    });
    try {
      const err = await bad.put('k', 'v').then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StoreError);
      expect((err as StoreError).rosetCode).toBe('STORAGE_ERROR');
      expect((err as StoreError).message).toContain('k');
      const everything = JSON.stringify({
        message: (err as StoreError).message,
        details: (err as StoreError).details,
        cause: String((err as StoreError).cause),
        stack: (err as StoreError).stack,
      });
      expect(everything).not.toContain('wrong-secret-Zq8xT1');
      expect(everything).not.toContain(cfg.secretAccessKey);
      expect(bad.description).not.toContain(cfg.accessKeyId);
      // fromUrl's probe fails the same way, at open rather than at the first commit.
      const saved = process.env.AWS_SECRET_ACCESS_KEY;
      process.env.AWS_SECRET_ACCESS_KEY = 'wrong-secret-Zq8xT1';
      try {
        const openErr = await S3Store.fromUrl(url, s3TestStoreOptions()).then(() => undefined, (e: unknown) => e);
        expect((openErr as StoreError).rosetCode).toBe('STORAGE_ERROR');
        expect(String((openErr as StoreError).message)).not.toContain('wrong-secret-Zq8xT1');
      } finally {
        process.env.AWS_SECRET_ACCESS_KEY = saved;
      }
    } finally {
      await bad.close();
    }
  });

  it('maps an unreachable endpoint to STORAGE_ERROR naming the key', async () => {
    const store = new S3Store({
      bucket: cfg.bucket, prefix: 'p/', endpoint: 'http://127.0.0.1:9', region: 'us-east-1',
      credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, capabilities: { conditionalWrites: true, multipart: true },
    });
    try {
      const err = await store.get('some/key').then(() => undefined, (e: unknown) => e);
      expect((err as StoreError).rosetCode).toBe('STORAGE_ERROR');
      expect((err as StoreError).message).toContain('some/key');
    } finally {
      await store.close();
    }
  });

  /** The store as the daemon opens it: the S3 store inside the retry layer. */
  const openRetrying = async (url = s3TestUrl('s3retry'), extra = {}, into = opened): Promise<{ store: RetryingStore; s3: S3Store }> => {
    const store = await openStore(url, s3TestStoreOptions({ retry: { baseDelayMs: 1, maxDelayMs: 10 }, ...extra })) as RetryingStore;
    const s3 = store.inner as S3Store;
    into.push(s3);
    return { store, s3 };
  };

  it('retries a conditional write answered 409 ConditionalRequestConflict', async () => {
    const { store, s3 } = await openRetrying();
    let conflicts = 0;
    // Answer the first two conditional PUTs with the 409 that AWS and RGW send under
    // contention, before they reach the server.
    s3.client.middlewareStack.add((next) => async (args) => {
      const headers = (args.request as { headers?: Record<string, string> }).headers ?? {};
      if ((headers['if-none-match'] || headers['if-match']) && conflicts < 2) {
        conflicts++;
        throw Object.assign(new Error('The conditional request cannot succeed due to a conflicting operation'), {
          name: 'ConditionalRequestConflict', $metadata: { httpStatusCode: 409 },
        });
      }
      return next(args);
    }, { step: 'finalizeRequest', name: 'fake409' });
    const r = await store.putIfAbsent('c', 'v');
    expect(conflicts).toBe(2);
    expect((await store.head('c'))?.etag).toBe(r.etag);
    await expect(store.putIfAbsent('c', 'v2')).rejects.toMatchObject({ rosetCode: 'PRECONDITION_FAILED' });
  });

  it('does not report a create-only write as lost when only its answer was lost', async () => {
    const { store, s3 } = await openRetrying();
    let lost = 0;
    // The first answer to a conditional PUT is replaced by a 503 after the write
    // landed, as a reset or a proxy would do; the retry layer sends it again and gets 412.
    s3.client.middlewareStack.add((next) => async (args) => {
      const headers = (args.request as { headers?: Record<string, string> }).headers ?? {};
      const result = await next(args);
      if ((headers['if-none-match'] || headers['if-match']) && lost < 1) {
        lost++;
        throw Object.assign(new Error('Service Unavailable'), {
          name: 'ServiceUnavailable', $fault: 'server', $metadata: { httpStatusCode: 503 },
        });
      }
      return result;
    }, { step: 'deserialize', name: 'lostAnswer' });
    const r = await store.putIfAbsent('m.json', '{"id":"c1"}');
    expect(lost).toBe(1);
    expect((await store.head('m.json'))?.etag).toBe(r.etag);
    // Someone else's bytes are still a loss, retried or not.
    lost = 0;
    await expect(store.putIfAbsent('m.json', '{"id":"other"}')).rejects.toMatchObject({ rosetCode: 'PRECONDITION_FAILED' });
    // The same for put-if-match: the retry loses against our own new ETag.
    lost = 0;
    const r2 = await store.putIfMatch('m.json', '{"id":"c2"}', r.etag);
    expect(lost).toBe(1);
    expect((await store.get('m.json')).toString()).toBe('{"id":"c2"}');
    expect((await store.head('m.json'))?.etag).toBe(r2.etag);
  });

  describe('requests on the wire (through a recording proxy)', () => {
    let proxy: RecordingProxy;
    let tmp: string;
    // Emptied and closed before the proxy they talk through goes away.
    const wire: S3Store[] = [];
    beforeAll(async () => {
      if (setupError) return;
      proxy = await startRecordingProxy(cfg.endpoint);
      tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'roset-s3-wire-'));
    });
    afterAll(async () => {
      for (const s of wire) {
        for await (const o of listAll(s, '')) await s.delete(o.key);
        await s.close();
      }
      await proxy?.close();
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    });
    beforeEach(async () => {
      await proxy.faults();
      await proxy.clear();
    });

    const viaProxy = (extra = {}) => openRetrying(undefined, {
      s3Endpoint: proxy.endpoint, s3ConditionalWrites: true, partSize: 5 * MiB, uploadConcurrency: 2, uploadOwner: 'agt_wire', ...extra,
    }, wire);
    const query = (q: RecordedRequest): string => q.url.split('?')[1] ?? '';
    const onKey = (reqs: RecordedRequest[], key: string) => reqs.filter((q) => q.url.split('?')[0]!.endsWith(`/${key}`));
    const partSends = (reqs: RecordedRequest[], key: string): Record<number, number> => {
      const out: Record<number, number> = {};
      for (const q of onKey(reqs, key)) {
        const m = /(?:^|&)partNumber=(\d+)/.exec(query(q));
        if (q.method === 'PUT' && m) out[Number(m[1])] = (out[Number(m[1])] ?? 0) + 1;
      }
      return out;
    };
    const file = async (name: string, size: number): Promise<{ file: string; sha: string }> => {
      const bytes = randomBytes(size);
      const f = path.join(tmp, name);
      await fs.writeFile(f, bytes);
      return { file: f, sha: createHash('sha256').update(bytes).digest('hex') };
    };

    it('makes one attempt per request in the client: the retry layer is the only one', async () => {
      const { s3 } = await viaProxy();
      await proxy.faults([{ method: 'GET', action: 'status', status: 503, code: 'SlowDown' }]);
      await expect(s3.get('anything')).rejects.toMatchObject({ rosetCode: 'STORAGE_ERROR', details: { status: 503 } });
      expect((await proxy.requests()).filter((q) => q.method === 'GET')).toHaveLength(1);
    });

    it('sends a failed part again, and only that part', async () => {
      const { store } = await viaProxy();
      const { file: f, sha } = await file('four-parts.bin', 17 * MiB);
      // Part 2 answered 503 once, part 3 cut off mid-body once.
      await proxy.faults([
        { method: 'PUT', queryIncludes: 'partNumber=2&', times: 1, action: 'status', status: 503, code: 'SlowDown' },
        { method: 'PUT', queryIncludes: 'partNumber=3&', times: 1, action: 'reset' },
      ]);
      await store.putFile('objects/4p', f, { ifAbsent: true });
      const reqs = await proxy.requests();
      expect(partSends(reqs, 'objects/4p')).toEqual({ 1: 1, 2: 2, 3: 2, 4: 1 });
      const posts = onKey(reqs, 'objects/4p').filter((q) => q.method === 'POST');
      expect(posts.filter((q) => /(^|&)uploads(=|&|$)/.test(query(q)))).toHaveLength(1);
      expect(posts.filter((q) => query(q).includes('uploadId='))).toHaveLength(1);
      expect(createHash('sha256').update(await store.get('objects/4p')).digest('hex')).toBe(sha);
    });

    for (const mode of ['md5', 'sha256'] as const) {
      it(`refuses a body corrupted on the way (${mode}), publishes nothing, and sends the request again`, async () => {
        const { store, s3 } = await viaProxy({ s3PayloadChecksum: mode, retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 } });
        expect(s3.payloadChecksum).toBe(mode);
        const small = await file(`corrupt-small-${mode}.bin`, 64 * 1024);
        const big = await file(`corrupt-big-${mode}.bin`, 11 * MiB);
        // Every try corrupted: each is refused, and the key never appears.
        await proxy.faults([{ method: 'PUT', pathIncludes: '/objects/', action: 'corrupt-request' }]);
        await expect(store.putFile(`objects/small-${mode}`, small.file, { ifAbsent: true, sha256: small.sha }))
          .rejects.toMatchObject({ rosetCode: 'STORAGE_ERROR', details: { status: 400, retryable: true } });
        await expect(store.putFile(`objects/big-${mode}`, big.file, { ifAbsent: true, sha256: big.sha }))
          .rejects.toMatchObject({ rosetCode: 'STORAGE_ERROR' });
        let reqs = await proxy.requests();
        const smallPuts = onKey(reqs, `objects/small-${mode}`).filter((q) => q.method === 'PUT');
        expect(smallPuts.map((q) => q.status)).toEqual([400, 400, 400]);
        expect(onKey(reqs, `objects/big-${mode}`).filter((q) => q.method === 'PUT' && query(q).includes('partNumber=')).every((q) => q.status === 400)).toBe(true);
        await proxy.faults();
        expect(await store.head(`objects/small-${mode}`)).toBeNull();
        expect(await store.head(`objects/big-${mode}`)).toBeNull();
        expect((await store.listMultipartUploads('objects/')).filter((u) => u.key === `objects/big-${mode}`)).toEqual([]);
        // Corrupted once: sent again, and what is published is the file's bytes.
        await proxy.clear();
        await proxy.faults([
          { method: 'PUT', pathIncludes: `/objects/small-${mode}`, times: 1, action: 'corrupt-request' },
          { method: 'PUT', queryIncludes: 'partNumber=2&', times: 1, action: 'corrupt-request' },
        ]);
        await store.putFile(`objects/small-${mode}`, small.file, { ifAbsent: true, sha256: small.sha });
        await store.putFile(`objects/big-${mode}`, big.file, { ifAbsent: true, sha256: big.sha });
        reqs = await proxy.requests();
        expect(onKey(reqs, `objects/small-${mode}`).filter((q) => q.method === 'PUT').map((q) => q.status)).toEqual([400, 200]);
        expect(partSends(reqs, `objects/big-${mode}`)).toEqual({ 1: 1, 2: 2, 3: 1 });
        expect(createHash('sha256').update(await store.get(`objects/small-${mode}`)).digest('hex')).toBe(small.sha);
        expect(createHash('sha256').update(await store.get(`objects/big-${mode}`)).digest('hex')).toBe(big.sha);
      });
    }

    it('tags a multipart upload before its first part and removes the tag when it completes or aborts', async () => {
      const { store, s3 } = await viaProxy();
      const { file: f } = await file('tagged.bin', 11 * MiB);
      await store.putFile('objects/tagged', f);
      const reqs = await proxy.requests();
      const tagPut = reqs.findIndex((q) => q.method === 'PUT' && q.url.includes('/.roset/uploads/agt_wire/'));
      const firstPart = reqs.findIndex((q) => q.method === 'PUT' && query(q).includes('partNumber='));
      expect(tagPut).toBeGreaterThanOrEqual(0);
      expect(tagPut).toBeLessThan(firstPart);
      expect(reqs.filter((q) => q.method === 'DELETE' && q.url.includes('/.roset/uploads/agt_wire/'))).toHaveLength(1);
      // An abort removes it too; the bucket holds no tag afterwards.
      const id = await store.createMultipartUpload('objects/dropped');
      expect((await store.listMultipartUploads('objects/')).map((u) => [u.uploadId, u.owner])).toEqual([[id, 'agt_wire']]);
      await store.abortMultipartUpload('objects/dropped', id);
      const root = await open(`s3://${cfg.bucket}`, { s3ConditionalWrites: true });
      expect((await root.list(`${s3.prefix}.roset/uploads/`)).objects).toEqual([]);
    });

    it('sends each part of an upload whose file changed once, never completes it, and aborts it', async () => {
      const { store } = await viaProxy();
      const { file: f } = await file('changed.bin', 12 * MiB);
      const changed = new CacheError('FILE_CHANGED', 'the file changed while it was being uploaded');
      // Caught after every part was sent.
      let checks = 0;
      const err = await store.putFile('objects/changed', f, { ifAbsent: true, beforeComplete: () => { checks++; throw changed; } })
        .then(() => undefined, (e: unknown) => e);
      expect(err).toBe(changed);
      expect(checks).toBe(1);
      let reqs = onKey(await proxy.requests(), 'objects/changed');
      expect(partSends(reqs, 'objects/changed')).toEqual({ 1: 1, 2: 1, 3: 1 });
      expect(reqs.filter((q) => q.method === 'POST' && query(q).includes('uploadId='))).toEqual([]);
      expect(reqs.filter((q) => q.method === 'DELETE' && query(q).includes('uploadId='))).toHaveLength(1);
      expect(await store.head('objects/changed')).toBeNull();
      // Caught before the second part: the first is not sent again, the rest never.
      await proxy.clear();
      let parts = 0;
      const err2 = await store.putFile('objects/changed', f, { concurrency: 1, beforePart: () => { if (++parts === 2) throw changed; } })
        .then(() => undefined, (e: unknown) => e);
      expect(err2).toBe(changed);
      reqs = onKey(await proxy.requests(), 'objects/changed');
      expect(partSends(reqs, 'objects/changed')).toEqual({ 1: 1 });
      // A small file: caught before its one PUT, which is never sent.
      await proxy.clear();
      const { file: small } = await file('changed-small.bin', 1024);
      await expect(store.putFile('objects/changed-small', small, { ifAbsent: true, beforeComplete: () => { throw changed; } })).rejects.toBe(changed);
      expect(onKey(await proxy.requests(), 'objects/changed-small').filter((q) => q.method === 'PUT')).toEqual([]);
      expect(await store.listMultipartUploads('objects/')).toEqual([]);
    });
  });
});
