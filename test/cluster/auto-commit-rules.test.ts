/**
 * Auto-commit rules across nodes: `roset serve` on PostgreSQL and a `roset-mount`
 * agent (with a rule of its own). A rule set through serve's API reaches the running
 * agent without a restart (its waiting poll is answered with the new version, and it
 * reads the rules through its rpc); a folder written on the agent's mount with the
 * marker is then committed and the rule's ref moves. Removed through the API, the rule
 * commits nothing more on the agent, while the agent's own rule still does.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, type TestDaemon } from '../support/daemon.js';
import { s3EndpointArgs, s3ProcessEnv, s3TestUrl } from '../support/s3.js';
import { startAgent, startServe, stopCluster, type TestServe } from '../support/cluster.js';
import { clusterDatabase, type ClusterDatabase } from '../support/cluster-db.js';
import { until } from '../support/until.js';

/** The version of the mount's rules the agent applies, from its state file. */
function appliedVersion(agent: TestDaemon): number {
  try {
    return (JSON.parse(readFileSync(path.join(agent.stateDir, 'auto-commit.json'), 'utf8')) as { mountVersion: number }).mountVersion;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return -1;
    throw err;
  }
}

describe('auto-commit rules set through roset serve', () => {
  let db: ClusterDatabase;
  let serve: TestServe;
  let agent: TestDaemon;
  const roots: string[] = [];

  beforeAll(async () => {
    const env = s3ProcessEnv();
    db = await clusterDatabase();
    serve = await startServe({ database: db.url, store: s3TestUrl(`cluster-ac-${randomBytes(4).toString('hex')}`), env,
      args: s3EndpointArgs() });
    roots.push(serve.root);
    agent = await startAgent(serve, { env, args: ['--auto-commit', 'flagged/*:READY'] });
    roots.push(agent.root);
  });

  afterAll(async () => {
    await stopCluster();
    await db?.stop();
    for (const r of roots) removeRoot(r);
  });

  it('reaches the running agent: its marker commits the folder and moves the ref', async () => {
    const set = await serve.client.addAutoCommitRule('api/*:DONE:api-latest');
    await until('the agent applies the new rules', () => appliedVersion(agent) === set.version);
    mkdirSync(agent.p('api', 'one'), { recursive: true });
    writeFileSync(agent.p('api', 'one', 'shard.bin'), 'shard');
    writeFileSync(agent.p('api', 'one', 'DONE'), '');
    const ref = await until('api-latest', async () => (await serve.client.getRef('api-latest')) ?? null, 60_000);
    expect(ref.commit).toMatchObject({ path: '/api/one', status: 'completed', message: 'auto-commit (api/*:DONE:api-latest)' });
    expect((await serve.client.getManifest(ref.commitId)).files.map((f) => f.path).sort()).toEqual(['DONE', 'shard.bin']);
  });

  it('stops on the agent once removed, while the agent\'s own rule still commits', async () => {
    const before = (await serve.client.getRef('api-latest'))!.commitId;
    const removed = await serve.client.removeAutoCommitRule('api/*:DONE:api-latest');
    await until('the agent applies the removal', () => appliedVersion(agent) === removed.version);
    mkdirSync(agent.p('api', 'two'), { recursive: true });
    writeFileSync(agent.p('api', 'two', 'DONE'), '');
    // Written after that marker: once the agent's own rule has committed this folder,
    // the marker's check has run, so what it did (nothing) is settled.
    mkdirSync(agent.p('flagged', 'a'), { recursive: true });
    writeFileSync(agent.p('flagged', 'a', 'READY'), 'ok');
    await until('flagged/a committed', async () => ((await serve.client.resolvePath('/flagged/a'))?.state === 'committed' ? true : null), 60_000);
    const two = (await serve.client.resolvePath('/api/two'))!;
    expect(two.state).toBe('staging');
    expect((await serve.client.listCommits({ nodeId: two.id })).items).toHaveLength(0);
    expect((await serve.client.getRef('api-latest'))!.commitId).toBe(before);
  });
});
