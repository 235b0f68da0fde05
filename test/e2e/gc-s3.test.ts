/**
 * `roset gc` end to end on the real S3 server (Ceph RGW), through a mount: five
 * checkpoints that share files, three soft-deleted, then gc with `--grace 0` deletes
 * exactly the objects no kept manifest references, and every kept commit reads back
 * byte for byte; a dry run changes nothing; gc racing commits whose files dedup against
 * objects of purged commits deletes nothing they need; a daemon killed mid-gc (between a
 * tombstone and its delete) and restarted converges on the next run.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../src/store/s3.js';
import { listAll } from '../../src/store/types.js';
import { removeRoot, startDaemon, stopAll, tempRoot, type TestDaemon } from '../support/daemon.js';
import { sha256Of, writeRandom } from '../support/files.js';
import { s3TestConfig, s3TestUrl } from '../support/s3.js';

describe('gc on S3', () => {
  let store: string;
  let root: string;
  let d: TestDaemon;
  let env: NodeJS.ProcessEnv;
  let args: string[];

  beforeAll(async () => {
    const s3 = s3TestConfig();
    store = s3TestUrl('gc');
    env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
    args = ['--s3-endpoint', s3.endpoint, '--s3-force-path-style'];
    root = tempRoot();
    d = await startDaemon({ root, store, args, env });
  });
  afterAll(async () => {
    await stopAll();
    if (root) removeRoot(root);
  });

  const bucket = async (): Promise<S3Store> => S3Store.fromUrl(store, { s3Endpoint: s3TestConfig().endpoint, s3ForcePathStyle: true, s3ConditionalWrites: true });
  const objectKeys = async (): Promise<Set<string>> => {
    const s = await bucket();
    const keys = new Set<string>();
    for await (const o of listAll(s, 'objects/')) keys.add(o.key);
    await s.close();
    return keys;
  };
  /** The object keys the manifests of these commits name. */
  const neededBy = async (ids: string[]): Promise<Set<string>> =>
    new Set((await Promise.all(ids.map((id) => d.client.getManifest(id)))).flatMap((m) => m.files.map((f) => f.key)));
  /** Every file of a commit, read from the bucket, hashes to its manifest's sha256. */
  const readsBack = async (id: string): Promise<void> => {
    const s = await bucket();
    const { createHash } = await import('node:crypto');
    for (const f of (await d.client.getManifest(id)).files) {
      expect(createHash('sha256').update(await s.get(f.key)).digest('hex'), `${id} ${f.path}`).toBe(f.sha256);
    }
    await s.close();
  };
  const commit = (dir: string, ...extra: string[]): string => {
    const r = d.cli('commit', d.p(dir), '--json', ...extra);
    expect(r.code, r.stderr).toBe(0);
    return r.json<{ id: string }>().id;
  };
  const softDelete = async (dir: string): Promise<void> => {
    await d.client.deleteNode((await d.client.resolvePath(`/${dir}`))!.id);
  };
  const gc = (...flags: string[]) => {
    const r = d.cli('gc', '--json', ...flags);
    expect(r.code, r.stderr).toBe(0);
    return r.json<{ purged: Array<{ commitId: string }>; objectsDeleted: number; bytesFreed: number; objectsPinned: number }>();
  };

  const ids: string[] = [];
  const shared = new Map<string, string>();

  it('deletes exactly the objects no kept manifest references; kept commits read back; latest resolves; a dry run changes nothing', async () => {
    mkdirSync(d.p('ck'));
    for (let i = 0; i < 5; i++) {
      mkdirSync(d.p('ck', `step-${i}`));
      writeFileSync(d.p('ck', `step-${i}`, 'config.json'), '{"lr": 0.001}');
      writeFileSync(d.p('ck', `step-${i}`, 'tokenizer.bin'), i < 3 ? 'tokenizer v1' : 'tokenizer v2');
      shared.set(`model-${i}`, writeRandom(d.p('ck', `step-${i}`, 'model.pt'), (1 + i) << 20));
      ids.push(commit(`ck/step-${i}`, ...(i === 4 ? ['--ref', 'latest'] : [])));
    }
    for (const i of [0, 1, 3]) await softDelete(`ck/step-${i}`);
    const kept = [ids[2]!, ids[4]!];
    const needed = await neededBy(kept);
    const before = await objectKeys();
    expect(before.size).toBeGreaterThan(needed.size);

    const dry = gc('--grace', '0', '--keep-within', '0', '--dry-run');
    expect(dry.purged.map((p) => p.commitId).sort()).toEqual([ids[0], ids[1], ids[3]].sort());
    expect(dry.objectsDeleted).toBe(before.size - needed.size);
    expect(await objectKeys()).toEqual(before);
    expect((await d.client.getManifest(ids[0]!)).files.length).toBe(3);

    const r = gc('--grace', '0', '--keep-within', '0');
    expect(r.purged.map((p) => p.commitId).sort()).toEqual([ids[0], ids[1], ids[3]].sort());
    expect(r.objectsDeleted).toBe(before.size - needed.size);
    expect(r.bytesFreed).toBe(dry.bytesFreed);
    expect(await objectKeys()).toEqual(needed);
    for (const id of kept) await readsBack(id);
    for (const i of [2, 4]) expect(await sha256Of(d.p('ck', `step-${i}`, 'model.pt'))).toBe(shared.get(`model-${i}`));
    const latest = d.cli('ref', 'get', 'latest', '--json');
    expect(latest.code, latest.stderr).toBe(0);
    expect(latest.json<{ commitId: string }>().commitId).toBe(ids[4]);
    const again = gc('--grace', '0', '--keep-within', '0');
    expect({ purged: again.purged.length, deleted: again.objectsDeleted }).toEqual({ purged: 0, deleted: 0 });
  });

  it('racing commits whose files dedup against objects of purged commits: gc deletes nothing they need', async () => {
    // Objects only purged commits reference, then the same bytes written again while gc runs.
    for (let i = 0; i < 3; i++) {
      mkdirSync(d.p('ck', `old-${i}`));
      writeRandom(d.p('ck', `old-${i}`, 'weights.pt'), 2 << 20);
      commit(`ck/old-${i}`);
    }
    const olds = await Promise.all([0, 1, 2].map(async (i) => (await sha256Of(d.p('ck', `old-${i}`, 'weights.pt')))));
    const { readFileSync } = await import('node:fs');
    const bytes = [0, 1, 2].map((i) => readFileSync(d.p('ck', `old-${i}`, 'weights.pt')));
    for (let i = 0; i < 3; i++) await softDelete(`ck/old-${i}`);

    // gc runs in the daemon, asked over HTTP, while the files are written (background
    // uploads that find the old objects) and committed.
    const gcOpts = { graceSeconds: 0, keepWithinSeconds: 0 };
    const gcRuns = (async () => {
      const runs = [];
      for (let k = 0; k < 4; k++) runs.push(await d.client.gc(gcOpts).catch((e: { wireCode?: string }) => { if (e.wireCode !== 'GC_RUNNING') throw e; return null; }));
      return runs;
    })();
    await new Promise((r) => setTimeout(r, 20));
    const newIds = await Promise.all([0, 1, 2].map(async (i) => {
      mkdirSync(d.p('ck', `new-${i}`));
      writeFileSync(d.p('ck', `new-${i}`, 'weights.pt'), bytes[i]!);
      writeFileSync(d.p('ck', `new-${i}`, 'note.txt'), `new ${i}`);
      const node = (await d.client.resolvePath(`/ck/new-${i}`))!;
      const c = await d.client.commit(node.id);
      const done = await d.client.waitForCommit(c.id);
      expect(done.status, JSON.stringify(done)).toBe('completed');
      return c.id;
    }));
    const runs = await gcRuns;
    expect(runs.some((r) => r !== null && r.purged.length > 0)).toBe(true);
    // One more run once everything settled: still nothing the new commits need goes.
    gc('--grace', '0', '--keep-within', '0');
    for (let i = 0; i < 3; i++) {
      await readsBack(newIds[i]!);
      expect(await sha256Of(d.p('ck', `new-${i}`, 'weights.pt'))).toBe(olds[i]);
    }
    const needed = await neededBy([ids[2]!, ids[4]!, ...newIds]);
    expect(await objectKeys()).toEqual(needed);
  });

  it('a daemon killed between a tombstone and its delete converges when gc runs again after a restart', async () => {
    mkdirSync(d.p('ck', 'doomed'));
    writeRandom(d.p('ck', 'doomed', 'a.bin'), 1 << 20);
    writeRandom(d.p('ck', 'doomed', 'b.bin'), 1 << 20);
    commit('ck/doomed');
    await softDelete('ck/doomed');
    await d.stop();
    d = await startDaemon({ root, store, args, env: { ...env, ROSET_FAILPOINTS: 'gc.after-tombstone' } });
    const running = d.client.gc({ graceSeconds: 0, keepWithinSeconds: 0 }).catch(() => null);
    for (let i = 0; i < 200 && !d.logs().includes('failpoint reached'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(d.logs()).toContain('gc.after-tombstone');
    await d.kill9();
    await running;
    d = await startDaemon({ root, store, args, env });
    const r = gc('--grace', '0', '--keep-within', '0');
    expect(r.objectsPinned).toBe(0);
    const kept = (await d.client.listCommits({ limit: 100 })).items.filter((c) => c.status === 'completed' && !c.path.includes('old-') && !c.path.includes('doomed') && ![ids[0], ids[1], ids[3]].includes(c.id));
    expect(await objectKeys()).toEqual(await neededBy(kept.map((c) => c.id)));
    for (const c of kept) await readsBack(c.id);
  });
});
