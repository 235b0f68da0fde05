/**
 * `roset recover` rebuilds a multi-node deployment's metadata from the bucket alone,
 * into an empty PostgreSQL database: a `roset serve` started on it has the commit with
 * every node's files, the ref, and serves the bytes to a fresh node. It refuses a
 * database that already holds metadata.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, runCli, tempRoot, waitCommit } from '../support/daemon.js';
import { sha256 } from '../support/files.js';
import { s3EndpointArgs, s3ProcessEnv, s3TestUrl } from '../support/s3.js';
import { startAgent, startServe, stopCluster } from '../support/cluster.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';

describe('recover into PostgreSQL', () => {
  let pg: PostgresServer;
  const roots: string[] = [];

  beforeAll(async () => { pg = await startPostgres(); });
  afterAll(async () => {
    await stopCluster();
    await pg?.stop();
    for (const r of roots) removeRoot(r);
  });

  it('rebuilds commits and refs from the bucket into an empty database, and refuses one in use', async () => {
    const env = s3ProcessEnv();
    const s3args = s3EndpointArgs();
    const store = s3TestUrl(`recover-${randomBytes(4).toString('hex')}`);
    const first = await startServe({ database: await pg.createDatabase(), store, env, args: s3args });
    const n1 = await startAgent(first, { env });
    const n2 = await startAgent(first, { env });
    roots.push(first.root, n1.root, n2.root);
    mkdirSync(n1.p('ck'));
    const a = randomBytes(1 << 20);
    const b = randomBytes(1 << 20);
    writeFileSync(n1.p('ck', 'a.bin'), a);
    writeFileSync(n2.p('ck', 'b.bin'), b);
    const c = await waitCommit(first.client, (await first.client.commit((await first.client.resolvePath('/ck'))!.id)).id);
    await first.client.updateRef('latest', c.id);
    await stopCluster();

    const fresh = await pg.createDatabase();
    const stateDir = tempRoot('roset-recover-');
    roots.push(stateDir);
    const r = runCli(stateDir, ['recover', '--database', fresh, '--store', store, ...s3args, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ commits: 1, files: 2, refs: [{ name: 'latest', commitId: c.id }] });
    const again = runCli(stateDir, ['recover', '--database', fresh, '--store', store, ...s3args], env);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('already holds metadata');

    const second = await startServe({ database: fresh, store, env, args: s3args });
    const n3 = await startAgent(second, { env });
    roots.push(second.root, n3.root);
    expect((await second.client.getRef('latest')).commitId).toBe(c.id);
    expect(sha256(readFileSync(n3.p('ck', 'a.bin')))).toBe(sha256(a));
    expect(sha256(readFileSync(n3.p('ck', 'b.bin')))).toBe(sha256(b));
  });
});
