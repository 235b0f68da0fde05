/**
 * Faults across nodes (acceptance of the multi-node issue, part 2), each on a real
 * `roset serve` with real agents, killed with SIGKILL:
 * - an agent that dies holding a file open during a seal fails the commit with
 *   AGENT_UNAVAILABLE within --agent-timeout; the other node's bytes stay; the dead node
 *   restarted serves its staged files again and a new commit succeeds;
 * - `roset serve` killed while the agents upload, then restarted, completes the commit;
 * - PostgreSQL restarted while a commit waits for a writer: the commit completes, and
 *   no agent is restarted;
 * - two `serve` processes on one database: the one driving a commit is killed, and the
 *   other takes the commit over (its lease ran out) and completes it.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, waitCommit, type TestDaemon } from '../support/daemon.js';
import { errnoOf, sha256 } from '../support/files.js';
import { startHeldWriter } from '../support/held-writer.js';
import { s3EndpointArgs, s3ProcessEnv, s3TestUrl } from '../support/s3.js';
import { startAgent, startServe, stopCluster, type TestServe } from '../support/cluster.js';
import { clusterDatabase, type ClusterDatabase } from '../support/cluster-db.js';

const MiB = 1 << 20;

describe('faults across nodes', () => {
  let db: ClusterDatabase;
  let env: NodeJS.ProcessEnv;
  let s3args: string[];
  const roots: string[] = [];

  beforeAll(async () => {
    env = s3ProcessEnv();
    s3args = s3EndpointArgs();
  });

  afterEach(async () => {
    await stopCluster();
    await db?.stop();
    for (const r of roots.splice(0)) removeRoot(r);
  });

  afterAll(stopCluster);

  const serveOn = async (extra: { args?: string[]; env?: NodeJS.ProcessEnv; root?: string; listen?: string; store?: string } = {}): Promise<TestServe> => {
    const s = await startServe({
      database: db.url, store: extra.store ?? s3TestUrl(`faults-${randomBytes(4).toString('hex')}`), env: { ...env, ...extra.env }, root: extra.root, listen: extra.listen,
      args: [...s3args, ...(extra.args ?? [])],
    });
    if (!roots.includes(s.root)) roots.push(s.root);
    return s;
  };
  const agentOf = async (s: { endpoint: string; apiKey: string }, root?: string): Promise<TestDaemon> => {
    const n = await startAgent(s, { env, root });
    if (!roots.includes(n.root)) roots.push(n.root);
    return n;
  };
  const shard = (n: TestDaemon, rel: string, size = 4 * MiB): string => {
    const buf = randomBytes(size);
    writeFileSync(n.p(rel), buf);
    return sha256(buf);
  };

  it('an agent killed while it holds a file open fails the seal with AGENT_UNAVAILABLE; its node comes back and commits', async () => {
    db = await clusterDatabase();
    const serve = await serveOn({ args: ['--agent-timeout', '3'] });
    const n1 = await agentOf(serve);
    const n2 = await agentOf(serve);
    mkdirSync(n1.p('ck'));
    const a = shard(n1, 'ck/a.bin');
    const b = shard(n2, 'ck/b.bin');
    const held = startHeldWriter(n2.p('ck', 'c.bin'));
    await held.line('open');
    await held.write(MiB);
    const commit = await serve.client.commit((await serve.client.resolvePath('/ck'))!.id);
    // The seal waits for node 2's writer; node 2 dies.
    await n2.kill9();
    held.proc.kill('SIGKILL');
    const killedAt = Date.now();
    const failed = await waitCommit(serve.client, commit.id, 60_000);
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('AGENT_UNAVAILABLE');
    // Within the agent timeout (3 s), plus the poll interval and the test's own polling.
    expect(Date.now() - killedAt).toBeLessThan(3000 + 2000);
    // The other node's bytes are intact, and the folder is STAGING again.
    expect(sha256(readFileSync(n1.p('ck', 'a.bin')))).toBe(a);
    expect((await serve.client.resolvePath('/ck'))!.state).toBe('staging');

    // Node 2 restarts on its own directories and serves its staged file again.
    const n2b = await agentOf(serve, n2.root);
    expect(sha256(readFileSync(n2b.p('ck', 'b.bin')))).toBe(b);
    const again = await serve.client.commit((await serve.client.resolvePath('/ck'))!.id);
    const done = await waitCommit(serve.client, again.id, 60_000);
    expect(done.error).toBeNull();
    const files = (await serve.client.getManifest(again.id)).files.map((f) => [f.path, f.sha256]);
    expect(Object.fromEntries(files)).toMatchObject({ 'a.bin': a, 'b.bin': b });
  });

  it('a serve killed while the agents upload completes the commit after a restart', async () => {
    db = await clusterDatabase();
    const first = await serveOn({ env: { ROSET_FAILPOINTS: 'commit.while-uploading' } });
    const port = new URL(first.endpoint).port;
    const n1 = await agentOf(first);
    const n2 = await agentOf(first);
    mkdirSync(n1.p('ck'));
    const a = shard(n1, 'ck/a.bin', 16 * MiB);
    const b = shard(n2, 'ck/b.bin', 16 * MiB);
    const commit = await first.client.commit((await first.client.resolvePath('/ck'))!.id);
    await first.logged('"failpoint":"commit.while-uploading"');
    await first.kill9();
    const second = await serveOn({ root: first.root, listen: `127.0.0.1:${port}` });
    const done = await waitCommit(second.client, commit.id, 120_000);
    expect(done.error).toBeNull();
    expect(done.status).toBe('completed');
    expect(Object.fromEntries((await second.client.getManifest(commit.id)).files.map((f) => [f.path, f.sha256]))).toEqual({ 'a.bin': a, 'b.bin': b });
    expect(errnoOf(() => writeFileSync(n2.p('ck', 'late'), 'x'))).toBe('EROFS');
  });

  it('a PostgreSQL restart while a commit waits costs retries, not data; no agent restarts', async () => {
    db = await clusterDatabase();
    const serve = await serveOn({ args: ['--commit-lease', '3'] });
    const n1 = await agentOf(serve);
    const n2 = await agentOf(serve);
    const pids = [n1.proc.pid, n2.proc.pid];
    mkdirSync(n1.p('ck'));
    const a = shard(n1, 'ck/a.bin');
    const held = startHeldWriter(n2.p('ck', 'b.bin'));
    await held.line('open');
    await held.write(MiB);
    const commit = await serve.client.commit((await serve.client.resolvePath('/ck'))!.id);
    await db.restart();
    await held.write(MiB);
    const b = await held.close();
    const done = await waitCommit(serve.client, commit.id, 120_000);
    expect(done.error).toBeNull();
    expect(Object.fromEntries((await serve.client.getManifest(commit.id)).files.map((f) => [f.path, f.sha256]))).toEqual({ 'a.bin': a, 'b.bin': b });
    expect([n1.proc.exitCode, n2.proc.exitCode]).toEqual([null, null]);
    expect([n1.proc.pid, n2.proc.pid]).toEqual(pids);
    // The agents still work: a new folder, written and committed.
    mkdirSync(n2.p('ck2'));
    shard(n2, 'ck2/x.bin', 1024);
    const next = await waitCommit(serve.client, (await serve.client.commit((await serve.client.resolvePath('/ck2'))!.id)).id);
    expect(next.status).toBe('completed');
  });

  it('two serves on one database: the one driving a commit dies and the other completes it', async () => {
    db = await clusterDatabase();
    const store = s3TestUrl(`faults-${randomBytes(4).toString('hex')}`);
    const a = await serveOn({ store, env: { ROSET_FAILPOINTS: 'commit.while-uploading' }, args: ['--commit-lease', '2'] });
    // The second serve shares the database and the bucket, and has its own state directory and key.
    const b = await serveOn({ store, args: ['--commit-lease', '2'] });
    const n1 = await agentOf(b);
    const n2 = await agentOf(b);
    mkdirSync(n1.p('ck'));
    const x = shard(n1, 'ck/x.bin', 8 * MiB);
    const y = shard(n2, 'ck/y.bin', 8 * MiB);
    // The commit is asked of serve A, which drives it, and dies mid-upload.
    const commit = await a.client.commit((await a.client.resolvePath('/ck'))!.id);
    await a.logged('"failpoint":"commit.while-uploading"');
    await a.kill9();
    const done = await waitCommit(b.client, commit.id, 120_000);
    expect(done.error).toBeNull();
    expect(done.status).toBe('completed');
    expect(Object.fromEntries((await b.client.getManifest(commit.id)).files.map((f) => [f.path, f.sha256]))).toEqual({ 'x.bin': x, 'y.bin': y });
    expect(b.logs()).toContain('resuming the commit');
  });
});
