/**
 * The seal across nodes against the two races that could put a byte from the wrong
 * handle into a commit, each window widened with a delay point (ROSET_DELAYS) on node 2:
 * - between an agent's barrier check and its open of the staged file: a handle that
 *   passed the check before the barrier rose is waited for by the seal, and its bytes,
 *   written after the barrier and closed before the snapshot, are the ones committed;
 * - between the barrier and the agent receiving the seal: the barrier already refuses
 *   new write-opens and creates on that node (EROFS), while a handle opened before it
 *   finishes and is committed whole.
 * The first fails if the seal did not wait for a handle registered before its check
 * (shown by removing the wait); the second fails if a node enforced the barrier only
 * once the seal reached it, instead of each change checking it in the database.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, waitCommit, type TestDaemon } from '../support/daemon.js';
import { errnoOf, sha256 } from '../support/files.js';
import { startHeldWriter } from '../support/held-writer.js';
import { s3EndpointArgs, s3ProcessEnv, s3TestUrl } from '../support/s3.js';
import { startAgent, startServe, stopCluster, type TestServe } from '../support/cluster.js';
import { clusterDatabase, type ClusterDatabase } from '../support/cluster-db.js';
import { sleep } from '../../src/util/sleep.js';

const MiB = 1 << 20;

async function logged(n: TestDaemon, text: string, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!n.logs().includes(text)) {
    if (Date.now() > until) throw new Error(`node never logged ${text}:\n${n.logs().slice(-3000)}`);
    await sleep(10);
  }
}

describe('the barrier across nodes, with its race windows widened', () => {
  let db: ClusterDatabase;
  let env: NodeJS.ProcessEnv;
  let s3args: string[];
  const roots: string[] = [];

  beforeAll(() => {
    env = s3ProcessEnv();
    s3args = s3EndpointArgs();
  });

  afterEach(async () => {
    await stopCluster();
    await db?.stop();
    for (const r of roots.splice(0)) removeRoot(r);
  });

  const cluster = async (delay: string): Promise<{ serve: TestServe; n1: TestDaemon; n2: TestDaemon }> => {
    db = await clusterDatabase();
    const serve = await startServe({ database: db.url, store: s3TestUrl(`race-${randomBytes(4).toString('hex')}`), env, args: s3args });
    const n1 = await startAgent(serve, { env });
    const n2 = await startAgent(serve, { env: { ...env, ROSET_DELAYS: delay } });
    roots.push(serve.root, n1.root, n2.root);
    return { serve, n1, n2 };
  };

  it('waits for a handle that passed the barrier check just before the barrier rose', async () => {
    const { serve, n1, n2 } = await cluster('open.after-check=2000');
    mkdirSync(n1.p('ck'));
    writeFileSync(n1.p('ck', 'a.bin'), randomBytes(MiB));
    writeFileSync(n2.p('ck', 'w.bin'), 'the old bytes');
    // Node 2 opens w.bin for writing: the check passes, then the open waits 2 s.
    const w = startHeldWriter(n2.p('ck', 'w.bin'));
    await logged(n2, '"delay":"open.after-check"');
    const commit = await serve.client.commit((await serve.client.resolvePath('/ck'))!.id);
    // The barrier is up: a new open for writing is refused on node 2 at once.
    expect(errnoOf(() => writeFileSync(n2.p('ck', 'late.bin'), 'x'))).toBe('EROFS');
    await w.line('open');
    await w.write(MiB);
    expect((await serve.client.getCommit(commit.id)).status).toBe('pending');
    const sha = await w.close();
    const done = await waitCommit(serve.client, commit.id);
    expect(done.error).toBeNull();
    const files = Object.fromEntries((await serve.client.getManifest(commit.id)).files.map((f) => [f.path, f.sha256]));
    expect(files['w.bin']).toBe(sha);
    expect(Object.keys(files).sort()).toEqual(['a.bin', 'w.bin']);
  });

  it('refuses new writes on a node the seal has not reached yet, and commits the handle opened before', async () => {
    const { serve, n1, n2 } = await cluster('agent.before-seal=2000');
    mkdirSync(n1.p('ck'));
    writeFileSync(n2.p('ck', 'kept.bin'), 'committed as it was');
    const w = startHeldWriter(n2.p('ck', 'open.bin'));
    await w.line('open');
    await w.write(MiB);
    const commit = await serve.client.commit((await serve.client.resolvePath('/ck'))!.id);
    // Node 2 has the seal request but has not started it: the barrier is in the database.
    await logged(n2, '"delay":"agent.before-seal"');
    expect(errnoOf(() => writeFileSync(n2.p('ck', 'kept.bin'), 'changed'))).toBe('EROFS');
    expect(errnoOf(() => writeFileSync(n2.p('ck', 'new.bin'), 'x'))).toBe('EROFS');
    expect(errnoOf(() => mkdirSync(n2.p('ck', 'sub')))).toBe('EROFS');
    await w.write(MiB);
    const sha = await w.close();
    const done = await waitCommit(serve.client, commit.id);
    expect(done.error).toBeNull();
    const files = Object.fromEntries((await serve.client.getManifest(commit.id)).files.map((f) => [f.path, f.sha256]));
    expect(files).toEqual({ 'kept.bin': sha256(Buffer.from('committed as it was')), 'open.bin': sha });
    expect(readFileSync(n1.p('ck', 'open.bin')).length).toBe(2 * MiB);
  });
});
