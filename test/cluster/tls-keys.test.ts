/**
 * Security across the network (acceptance of the multi-node issue, part 5): an agent
 * that trusts another CA than the one that signed `roset serve`'s certificate refuses
 * to start, with an error that says so; an agent whose key is revoked is refused from
 * its next request on, and the bytes it staged stay intact: with a new key the node
 * reads them and commits them.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, waitCommit } from '../support/daemon.js';
import { errnoOf, sha256 } from '../support/files.js';
import { s3EndpointArgs, s3ProcessEnv, s3TestUrl } from '../support/s3.js';
import { startAgent, startServe, stopCluster, type TestServe } from '../support/cluster.js';
import { clusterDatabase, type ClusterDatabase } from '../support/cluster-db.js';
import { makeTestPki, type TestPki } from '../support/tls.js';

describe('TLS and keys across nodes', () => {
  let db: ClusterDatabase;
  let pki: TestPki;
  let serve: TestServe;
  let env: NodeJS.ProcessEnv;
  const roots: string[] = [];

  beforeAll(async () => {
    env = s3ProcessEnv();
    db = await clusterDatabase();
    pki = makeTestPki();
    serve = await startServe({ database: db.url, store: s3TestUrl(`tls-${randomBytes(4).toString('hex')}`), env, caFile: pki.caFile,
      args: [...s3EndpointArgs(), '--tls-cert', pki.certFile, '--tls-key', pki.keyFile] });
    roots.push(serve.root);
  });

  afterAll(async () => {
    await stopCluster();
    await db?.stop();
    pki?.remove();
    for (const r of roots) removeRoot(r);
  });

  it('an agent that trusts another CA refuses to start, and says why', async () => {
    const err = await startAgent(serve, { env: { ...env, ROSET_CA_FILE: pki.otherCaFile } }).then(() => null, (e: Error) => e);
    expect(err).not.toBeNull();
    expect(err!.message).toMatch(/unknown authority/);
    expect(err!.message).toContain(serve.endpoint);
  });

  it('refuses an agent whose key was revoked from its next request on; its staged bytes stay, and a new key brings them back', async () => {
    const created = serve.cli('key', 'create', '--name', 'node-7', '--json', '--ca-file', pki.caFile);
    expect(created.code, created.stderr).toBe(0);
    const key = created.json<{ id: string; token: string }>();
    const node = await startAgent({ endpoint: serve.endpoint, apiKey: key.token }, { env: { ...env, ROSET_CA_FILE: pki.caFile } });
    roots.push(node.root);
    mkdirSync(node.p('ck'));
    const bytes = randomBytes(1 << 20);
    writeFileSync(node.p('ck', 'shard.bin'), bytes);

    const revoked = serve.cli('key', 'revoke', key.id, '--json', '--ca-file', pki.caFile);
    expect(revoked.code, revoked.stderr).toBe(0);
    // The next namespace call of the node is refused.
    expect(errnoOf(() => writeFileSync(node.p('ck', 'more.bin'), 'x'))).toBe('EACCES');
    await node.stop();

    // The same node, its state and cache directories kept, with a new key.
    const fresh = serve.cli('key', 'create', '--name', 'node-7b', '--json', '--ca-file', pki.caFile).json<{ token: string }>();
    const again = await startAgent({ endpoint: serve.endpoint, apiKey: fresh.token }, { root: node.root, env: { ...env, ROSET_CA_FILE: pki.caFile } });
    expect(sha256(readFileSync(again.p('ck', 'shard.bin')))).toBe(sha256(bytes));
    const commit = await serve.client.commit((await serve.client.resolvePath('/ck'))!.id);
    const done = await waitCommit(serve.client, commit.id);
    expect(done.error).toBeNull();
    expect((await serve.client.getManifest(commit.id)).files.map((f) => [f.path, f.sha256])).toEqual([['shard.bin', sha256(bytes)]]);
  });
});
