/**
 * gc with agents on other nodes: `roset serve` on PostgreSQL and one `roset-mount`
 * agent. The agent's background upload of a file whose bytes are an object only a
 * soft-deleted commit references pins that object over the agent rpc before it finds
 * it in the bucket; gc in the serve then purges the commit but keeps the object, the
 * agent's commit completes and reads back, and the pin goes with the commit, so the
 * next gc deletes exactly what no kept commit needs. Pin expiry: an agent silent past
 * the bound is deregistered and the object it pinned is swept; restarted on the same
 * state directory, it sends the bytes again and its commit reads back.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../src/store/s3.js';
import { listAll } from '../../src/store/types.js';
import { removeRoot, waitCommit, type TestDaemon } from '../support/daemon.js';
import { writeRandom } from '../support/files.js';
import { s3EndpointArgs, s3ProcessEnv, s3TestConfig, s3TestUrl } from '../support/s3.js';
import { startAgent, startServe, stopCluster, type TestServe } from '../support/cluster.js';
import { clusterDatabase, type ClusterDatabase } from '../support/cluster-db.js';

describe('gc with an agent on another node', () => {
  let db: ClusterDatabase;
  let serve: TestServe;
  let node: TestDaemon;
  let store: string;
  let env: NodeJS.ProcessEnv;
  const roots: string[] = [];

  beforeAll(async () => {
    env = s3ProcessEnv();
    db = await clusterDatabase();
    store = s3TestUrl(`gc-cluster-${randomBytes(4).toString('hex')}`);
    serve = await startServe({ database: db.url, store, env, args: s3EndpointArgs() });
    roots.push(serve.root);
    node = await startAgent(serve, { env });
    roots.push(node.root);
  });
  afterAll(async () => {
    await stopCluster();
    await db?.stop();
    for (const r of roots) removeRoot(r);
  });

  const pins = async (): Promise<Array<{ agent_id: string; sha256: string }>> => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      return (await c.query('SELECT agent_id, sha256 FROM gc_pins')).rows as Array<{ agent_id: string; sha256: string }>;
    } finally {
      await c.end();
    }
  };
  const objectKeys = async (): Promise<Set<string>> => {
    const s = await S3Store.fromUrl(store, { s3Endpoint: s3TestConfig().endpoint, s3ForcePathStyle: true, s3ConditionalWrites: true });
    const keys = new Set<string>();
    for await (const o of listAll(s, 'objects/')) keys.add(o.key);
    await s.close();
    return keys;
  };
  const commit = async (path: string): Promise<string> => {
    const n = (await serve.client.resolvePath(path))!;
    const c = await serve.client.commit(n.id);
    expect((await waitCommit(serve.client, c.id)).status).toBe('completed');
    return c.id;
  };

  it('keeps the object an agent\'s upload pinned, and sweeps it once nothing needs it', async () => {
    mkdirSync(node.p('old'));
    const sha = writeRandom(node.p('old', 'w.bin'), 1 << 20);
    const bytes = readFileSync(node.p('old', 'w.bin'));
    const old = await commit('/old');
    await serve.client.deleteNode((await serve.client.resolvePath('/old'))!.id);

    mkdirSync(node.p('new'));
    writeFileSync(node.p('new', 'w.bin'), bytes);
    // The background upload pins the object over the rpc before it finds it.
    for (let i = 0; i < 100 && !(await pins()).some((p) => p.sha256 === sha); i++) await new Promise((r) => setTimeout(r, 100));
    expect((await pins()).filter((p) => p.sha256 === sha).map((p) => p.agent_id)).toHaveLength(1);

    const r = await serve.client.gc({ graceSeconds: 0, keepWithinSeconds: 0 });
    expect(r.purged.map((p) => p.commitId)).toEqual([old]);
    expect(r.objectsPinned).toBe(1);
    const fresh = await commit('/new');
    const m = await serve.client.getManifest(fresh);
    expect(m.files.map((f) => f.sha256)).toEqual([sha]);
    expect(await pins()).toEqual([]);
    const again = await serve.client.gc({ graceSeconds: 0, keepWithinSeconds: 0 });
    expect(again.objectsDeleted).toBe(0);
    expect(await objectKeys()).toEqual(new Set(m.files.map((f) => f.key)));
    const s = await S3Store.fromUrl(store, { s3Endpoint: s3TestConfig().endpoint, s3ForcePathStyle: true, s3ConditionalWrites: true });
    expect(createHash('sha256').update(await s.get(m.files[0]!.key)).digest('hex')).toBe(sha);
    await s.close();
  });

  it('expires the pins of an agent silent past --pin-expiry and sweeps its object; restarted, the agent uploads again and its commit reads back', async () => {
    mkdirSync(node.p('late'));
    const sha = writeRandom(node.p('late', 'w.bin'), 1 << 20);
    const key = `objects/${sha.slice(0, 2)}/${sha}`;
    // The background upload pins the object and sends it: the node's record says "uploaded".
    for (let i = 0; i < 100 && !(await objectKeys()).has(key); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await objectKeys()).toContain(key);
    const [pin] = (await pins()).filter((p) => p.sha256 === sha);
    expect(pin).toBeDefined();
    await node.stop();
    // The node stays away: last heard from long before the pin expiry (default 7 days).
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query("UPDATE agents SET last_seen_at = '2000-01-01T00:00:00.000Z' WHERE id = $1", [pin!.agent_id]);
    } finally {
      await c.end();
    }
    const r = await serve.client.gc({ graceSeconds: 0, keepWithinSeconds: 0 });
    expect({ agents: r.agentsExpired, pins: r.pinsExpired }).toEqual({ agents: [pin!.agent_id], pins: 1 });
    expect(await objectKeys()).not.toContain(key);
    expect(await pins()).toEqual([]);

    // It comes back with its staged file and its record: registering again, it distrusts the record.
    node = await startAgent(serve, { env, root: node.root });
    const fresh = await commit('/late');
    const m = await serve.client.getManifest(fresh);
    expect(m.files.map((f) => f.sha256)).toEqual([sha]);
    const s = await S3Store.fromUrl(store, { s3Endpoint: s3TestConfig().endpoint, s3ForcePathStyle: true, s3ConditionalWrites: true });
    expect(createHash('sha256').update(await s.get(key)).digest('hex')).toBe(sha);
    await s.close();
  });
});
