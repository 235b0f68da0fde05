/**
 * Many nodes, one checkpoint (acceptance of the multi-node issue, part 1): `roset
 * serve` on PostgreSQL, three `roset-mount` agents (three nodes) each writing two
 * 64 MiB shards into one folder. Node 2 keeps a shard open and writes on while node 1
 * commits: the commit stays pending until node 2 closes, then completes with all six
 * files and their sha256; node 3 gets EROFS on a create once the barrier is up; a
 * fresh fourth node reads every file back byte for byte from the bucket. The same
 * scenario runs over plain HTTP on loopback and over HTTPS with a throwaway CA (the
 * agents trust it through --ca-file).
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, waitCommit, type TestDaemon } from '../support/daemon.js';
import { sha256, errnoOf } from '../support/files.js';
import { startHeldWriter } from '../support/held-writer.js';
import { s3EndpointArgs, s3ProcessEnv, s3TestUrl } from '../support/s3.js';
import { startAgent, startServe, stopCluster, type TestServe } from '../support/cluster.js';
import { clusterDatabase, type ClusterDatabase } from '../support/cluster-db.js';
import { makeTestPki, type TestPki } from '../support/tls.js';

const MiB = 1 << 20;
const SHARD = 64 * MiB;

describe.each(['http', 'https'] as const)('three nodes, one checkpoint, over %s', (scheme) => {
  let db: ClusterDatabase;
  let pki: TestPki | undefined;
  let serve: TestServe;
  const nodes: TestDaemon[] = [];
  let env: NodeJS.ProcessEnv;
  const roots: string[] = [];

  beforeAll(async () => {
    env = s3ProcessEnv();
    db = await clusterDatabase();
    pki = scheme === 'https' ? makeTestPki() : undefined;
    serve = await startServe({ database: db.url, store: s3TestUrl(`cluster-${randomBytes(4).toString('hex')}`), env,
      args: [...s3EndpointArgs(), '--agent-timeout', '10', ...(pki ? ['--tls-cert', pki.certFile, '--tls-key', pki.keyFile] : [])],
      caFile: pki?.caFile });
    expect(serve.endpoint.startsWith(`${scheme}://`)).toBe(true);
    roots.push(serve.root);
    for (let i = 0; i < 3; i++) {
      const n = await startAgent(serve, { env: agentEnv() });
      nodes.push(n);
      roots.push(n.root);
    }
  });

  // Agents trust the deployment's CA; the CLI on each node reads it from ROSET_CA_FILE.
  const agentEnv = (): NodeJS.ProcessEnv => ({ ...env, ...(pki ? { ROSET_CA_FILE: pki.caFile } : {}) });

  afterAll(async () => {
    await stopCluster();
    await db?.stop();
    pki?.remove();
    for (const r of roots) removeRoot(r);
  });

  it('seals the folder on every node, waits for node 2\'s open shard, and publishes all six files', async () => {
    const [n1, n2, n3] = nodes as [TestDaemon, TestDaemon, TestDaemon];
    mkdirSync(n1.p('ckpt'));
    const expected = new Map<string, string>();
    const write = (n: TestDaemon, name: string): void => {
      const buf = randomBytes(SHARD);
      writeFileSync(n.p('ckpt', name), buf);
      expected.set(name, sha256(buf));
    };
    write(n1, 'rank0-a.bin');
    write(n1, 'rank0-b.bin');
    write(n2, 'rank1-a.bin');
    write(n3, 'rank2-a.bin');
    write(n3, 'rank2-b.bin');
    // Node 2 is still writing its second shard.
    const held = startHeldWriter(n2.p('ckpt', 'rank1-b.bin'));
    await held.line('open');
    await held.write(SHARD / 2);

    // Every node lists every node's files.
    for (const n of nodes) expect(new Set(readdir(n))).toEqual(new Set([...expected.keys(), 'rank1-b.bin']));

    const r = n1.cli('commit', n1.p('ckpt'), '--no-wait', '--json', ...(pki ? ['--ca-file', pki.caFile] : []));
    expect(r.code, r.stderr).toBe(0);
    const commit = r.json<{ id: string; status: string }>();
    expect(commit.status).toBe('pending');

    // The barrier is up on every node from the commit's answer on.
    expect(errnoOf(() => writeFileSync(n3.p('ckpt', 'late.bin'), 'x'))).toBe('EROFS');
    expect(errnoOf(() => mkdirSync(n2.p('ckpt', 'late')))).toBe('EROFS');
    // A handle opened before the barrier may finish its work; the commit waits for it.
    await held.write(SHARD / 2);
    // Pending, and its progress says why: the seal waits for a writer.
    expect(await serve.client.getCommit(commit.id)).toMatchObject({ status: 'pending', progress: { phase: 'sealing', filesDone: 0 } });
    expected.set('rank1-b.bin', await held.close());

    // What the three agents report adds up on the commit, as far as it is seen.
    const seen: NonNullable<Awaited<ReturnType<typeof serve.client.getCommit>>['progress']>[] = [];
    for (let c = await serve.client.getCommit(commit.id); c.status === 'pending'; c = await serve.client.getCommit(commit.id)) {
      if (c.progress) seen.push(c.progress);
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const p of seen.filter((x) => x.phase !== 'sealing')) {
      expect(p.filesTotal).toBeLessThanOrEqual(6);
      expect(p.filesDone).toBeLessThanOrEqual(p.filesTotal);
      expect(p.bytesUploaded).toBeLessThanOrEqual(p.bytesTotal);
      if (p.phase === 'manifest') expect(p).toEqual({ phase: 'manifest', filesTotal: 6, filesDone: 6, bytesTotal: 6 * SHARD, bytesUploaded: 6 * SHARD });
    }
    const done = await waitCommit(serve.client, commit.id, 180_000);
    expect(done.error).toBeNull();
    expect(done.status).toBe('completed');
    expect(done.progress).toBeNull();
    const manifest = await serve.client.getManifest(commit.id);
    expect(Object.fromEntries(manifest.files.map((f) => [f.path, f.sha256]))).toEqual(Object.fromEntries(expected));
    expect(manifest.files.every((f) => f.size === SHARD)).toBe(true);
    expect(errnoOf(() => writeFileSync(n3.p('ckpt', 'late.bin'), 'x'))).toBe('EROFS');

    // A fresh node reads the whole checkpoint from the bucket.
    const n4 = await startAgent(serve, { env: agentEnv() });
    roots.push(n4.root);
    for (const [name, sha] of expected) expect(sha256(readFileSync(n4.p('ckpt', name))), name).toBe(sha);
  });
});

function readdir(n: TestDaemon): string[] {
  return readdirSync(n.p('ckpt'));
}
