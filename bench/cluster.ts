/**
 * The multi-node group (design §7, "`commit()` with 3 agents on `roset serve`"): a
 * throwaway PostgreSQL cluster, `roset serve` on it, and three `roset-mount` agents
 * (three nodes) on one machine, started through the `bin/` programs as a user starts
 * them, each agent with its own mountpoint, state and cache directory, all on the
 * run's bucket prefix `cluster/`.
 *
 *   row 7: `commit()` call latency, p50 and p99, with 3 agents: each commit seals a
 *          small folder holding one 4 KiB file from each agent. Reference: the same
 *          calls on an embedded single-node `roset-mount` (its own SQLite), on folders
 *          of the same shape, the two alternating call by call.
 *   row 8: last close on the slowest node → commit `completed`, each agent writing
 *          `--cluster-mib` into one folder. Reference: a raw multipart upload of the
 *          slowest node's bytes (the same reference as row 2).
 *
 * Owns: the cluster's processes and directories (under the run directory, PostgreSQL
 * under the system's temporary directory, see postgres.ts) and the bucket prefixes
 * `cluster/` and `cluster-embedded/` of the run.
 *
 * Invariants:
 * - Every process is registered for cleanup before it can fail half-way (systems.ts,
 *   postgres.ts), and the group tears down in its own `finally`: agents first (they
 *   unmount while their control plane still answers), then the embedded daemon,
 *   `roset serve`, and PostgreSQL last.
 * - Row 8 measures one node's close → completed, as row 2 does for one node. Node 3
 *   opens its file before the commit and holds it open (io.ts `write --hold`); nodes
 *   1 and 2 write and close; the commit is called (the barrier rises with node 3's
 *   file still open, so the seal waits for it); the bench waits until the bytes of
 *   nodes 1 and 2 are in the bucket (their background uploads started at their
 *   close); then node 3 writes its bytes and closes. On this one machine, nodes 1 and
 *   2 uploading at the same time would share the CPUs and the S3 server with node 3's
 *   upload, which on real nodes each have their own; waiting for them keeps that out
 *   of the ratio. The time waited is recorded with the row.
 * - A failure of the group records error rows for 7 and 8 with the reason (PostgreSQL
 *   missing included), never a silent skip.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { dataPool, smallFileBody } from './io.js';
import { loadAvg } from './machine.js';
import { epochNow, log, MBps, median, percentile, runHeldWrite, runIo, waitCommit } from './measure.js';
import { startPostgres, type BenchPostgres } from './postgres.js';
import { add, atMost, failed, refDir, type BenchContext } from './rows.js';
import { startRoset, startServe, type RosetDaemon, type RosetServe, type RosetStart } from './systems.js';
import type { RosetClient } from '../src/sdk/index.js';
import { sleep } from '../src/util/sleep.js';

const MiB = 2 ** 20;
const AGENTS = 3;

interface Cluster {
  pg: BenchPostgres;
  serve: RosetServe;
  agents: RosetDaemon[];
}

const latencyWhat = (p: number, n: number): string => `commit() call latency p${p}, 3 agents on roset serve (PostgreSQL), ${n} commits`;
const commitWhat = (bytes: number): string => `last close on node 3 → commit completed, 3 agents × ${bytes / MiB} MiB`;

/** The multi-node group on one FUSE binding: rows 7 and 8. */
export async function benchCluster(ctx: BenchContext, binding: string, hasFlag: boolean): Promise<void> {
  const system = `roset serve + 3 agents (${binding})`;
  const dir = path.join(ctx.root, 'cluster');
  const prefix = `${ctx.runPrefix}cluster/`;
  const embeddedPrefix = `${ctx.runPrefix}cluster-embedded/`;
  const failAll = (err: unknown, rows: Array<7 | 8>): void => {
    log(`  ! multi-node [${system}] failed: ${(err as Error).message}`);
    if (rows.includes(7)) {
      failed(ctx, 7, 'cluster-latency-p50', latencyWhat(50, ctx.opts.clusterCommits), system, 'ms', err);
      failed(ctx, 7, 'cluster-latency-p99', latencyWhat(99, ctx.opts.clusterCommits), system, 'ms', err);
    }
    if (rows.includes(8)) failed(ctx, 8, 'cluster-commit', commitWhat(ctx.opts.clusterBytes), system, 's', err);
  };

  const parts: Partial<Cluster> & { agents: RosetDaemon[] } = { agents: [] };
  try {
    log(`${system}: starting a throwaway PostgreSQL cluster`);
    parts.pg = await startPostgres(log);
    log(`  ${parts.pg.version}, ${parts.pg.dir}`);
    log(`${system}: starting roset serve, store s3://${ctx.s3.bucket}/${prefix}`);
    parts.serve = await startServe({
      dir: path.join(dir, 'serve'), database: parts.pg.url, storeUrl: `s3://${ctx.s3.bucket}/${prefix}`, s3: ctx.s3,
      // Row 8 holds node 3's file open while nodes 1 and 2 upload: never the seal's limit.
      extraArgs: ['--seal-timeout', '3600'],
    });
    for (let i = 1; i <= AGENTS; i++) {
      log(`${system}: starting agent ${i} on ${dir}/node${i}/mnt`);
      parts.agents.push(await startRoset({
        dir: path.join(dir, `node${i}`), binding, hasBindingFlag: hasFlag, storeUrl: '', s3: ctx.s3,
        agentOf: { apiUrl: parts.serve.endpoint, apiKey: parts.serve.apiKey },
      }));
    }
  } catch (err) {
    failAll(err, [7, 8]);
    await teardown(ctx, parts, dir, [prefix, embeddedPrefix]);
    return;
  }
  const c = parts as Cluster;
  try {
    const embedded: RosetStart = {
      dir: path.join(dir, 'embedded'), binding, hasBindingFlag: hasFlag, storeUrl: `s3://${ctx.s3.bucket}/${embeddedPrefix}`, s3: ctx.s3,
    };
    try {
      await latencyRows(ctx, c, system, embedded);
    } catch (err) {
      failAll(err, [7]);
    }
    try {
      await commitRow(ctx, c, system, prefix);
    } catch (err) {
      failAll(err, [8]);
    }
  } finally {
    await teardown(ctx, parts, dir, [prefix, embeddedPrefix]);
  }
}

async function teardown(ctx: BenchContext, parts: Partial<Cluster> & { agents: RosetDaemon[] }, dir: string, prefixes: string[]): Promise<void> {
  const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      log(`  could not stop ${what}: ${(err as Error).message}`);
    }
  };
  for (const a of [...parts.agents].reverse()) await step(`agent ${a.mnt}`, () => a.stop());
  if (parts.serve) await step('roset serve', () => parts.serve!.stop());
  if (parts.pg) await step('PostgreSQL', () => parts.pg!.stop());
  rmSync(dir, { recursive: true, force: true });
  for (const p of prefixes) {
    try {
      const n = await ctx.raw.deletePrefix(p);
      if (n) log(`  deleted ${n} keys under ${p}`);
    } catch (err) {
      log(`  could not delete ${p}: ${(err as Error).message}`);
    }
  }
}

const pgInfo = (pg: BenchPostgres): Record<string, unknown> => ({ server: pg.version, settings: pg.settings, dir: pg.dir });

// ---- row 7: commit() latency with 3 agents, against the embedded daemon ---------------------

interface Timed {
  callMs: number[];
  /** Call to the first poll (every 10 ms) that sees `completed`. */
  completedMs: number[];
  healthMs: number[];
}

async function timedCommit(client: RosetClient, nodeId: string, into: Timed): Promise<void> {
  const t0 = epochNow();
  const c = await client.commit(nodeId);
  into.callMs.push(epochNow() - t0);
  // Each commit finishes before the next: the call is timed alone, as a trainer makes it.
  const { doneEpochMs } = await waitCommit(client, c.id, 10, 120_000);
  into.completedMs.push(doneEpochMs - t0);
}

async function latencyRows(ctx: BenchContext, c: Cluster, system: string, embeddedStart: RosetStart): Promise<void> {
  const n = ctx.opts.clusterCommits;
  log(`  commit() latency with 3 agents: ${n} folders holding one 4 KiB file from each agent; reference: the embedded daemon`);
  const emb = await startRoset(embeddedStart);
  try {
    const pool = dataPool(ctx.seed());
    const base = ctx.seed();
    const folders: string[] = [];
    for (let i = 0; i < n; i++) {
      const folder = `/lat3-${String(i).padStart(4, '0')}`;
      folders.push(folder);
      // The folder made on node 1; each node writes its own rank's file, as ranks do.
      mkdirSync(path.join(c.agents[0]!.mnt, folder));
      mkdirSync(path.join(emb.mnt, folder));
      for (let k = 0; k < AGENTS; k++) {
        writeFileSync(path.join(c.agents[k]!.mnt, folder, `rank${k}.bin`), smallFileBody(base, 2 * AGENTS * i + k, 4096, pool));
        writeFileSync(path.join(emb.mnt, folder, `rank${k}.bin`), smallFileBody(base, 2 * AGENTS * i + AGENTS + k, 4096, pool));
      }
    }
    const client = c.serve.client;
    const [nodes, embNodes] = await Promise.all([client.resolve(folders), emb.client.resolve(folders)]);
    const cl: Timed = { callMs: [], completedMs: [], healthMs: [] };
    const em: Timed = { callMs: [], completedMs: [], healthMs: [] };
    // The floor of any call on each API: an unauthenticated GET.
    for (let i = 0; i < n; i++) {
      for (const [api, t] of [[client, cl], [emb.client, em]] as const) {
        const t0 = epochNow();
        await api.getHealth();
        t.healthMs.push(epochNow() - t0);
      }
    }
    const loads: number[] = [];
    for (const [i, folder] of folders.entries()) {
      const node = nodes[folder];
      const embNode = embNodes[folder];
      if (!node || !embNode) throw new Error(`${folder} is unknown to the API`);
      loads.push(loadAvg()[0]);
      // Alternate which goes first, so neither always follows the other's background work.
      const order = i % 2 === 0 ? [[client, node.id, cl], [emb.client, embNode.id, em]] as const : [[emb.client, embNode.id, em], [client, node.id, cl]] as const;
      for (const [api, id, t] of order) await timedCommit(api, id, t);
      if ((i + 1) % 25 === 0) log(`    ${i + 1}/${n} commits each, p50 so far ${percentile(cl.callMs, 50).toFixed(1)} ms (3 agents) vs ${percentile(em.callMs, 50).toFixed(1)} ms (embedded)`);
    }
    const stats = (t: Timed) => ({
      p50: percentile(t.callMs, 50), p99: percentile(t.callMs, 99), max: Math.max(...t.callMs),
      completedP50: percentile(t.completedMs, 50), completedP99: percentile(t.completedMs, 99),
      healthP50: percentile(t.healthMs, 50), healthP99: percentile(t.healthMs, 99),
    });
    const s = stats(cl);
    const e = stats(em);
    log(`    call → completed p50 ${s.completedP50.toFixed(0)} ms (3 agents) vs ${e.completedP50.toFixed(0)} ms (embedded); GET /health p50 ${s.healthP50.toFixed(1)} vs ${e.healthP50.toFixed(1)} ms`);
    const extra = {
      agents: AGENTS, database: pgInfo(c.pg), cluster: s, embedded: e,
      latenciesMs: cl.callMs, embeddedLatenciesMs: em.callMs, completedMs: cl.completedMs, embeddedCompletedMs: em.completedMs, load1: loads,
    };
    add(ctx, {
      row: 7, id: 'cluster-latency-p50', what: latencyWhat(50, n), system, unit: 'ms', value: s.p50,
      reference: { what: 'embedded roset-mount p50', value: e.p50 }, target: null, extra,
    });
    add(ctx, {
      row: 7, id: 'cluster-latency-p99', what: latencyWhat(99, n), system, unit: 'ms', value: s.p99,
      reference: { what: 'embedded roset-mount p99', value: e.p99 }, target: { text: '< 50 ms', pass: s.p99 < 50 },
    });
  } finally {
    await emb.stop();
    rmSync(embeddedStart.dir, { recursive: true, force: true });
  }
}

// ---- row 8: last close on the slowest node → completed --------------------------------------

/** Waits until at least `count` keys are under `prefix`; returns whether they were, and when. */
async function waitForKeys(ctx: BenchContext, prefix: string, count: number, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if ((await ctx.raw.countKeys(prefix)) >= count) return true;
    if (Date.now() > end) return false;
    await sleep(100);
  }
}

async function commitRow(ctx: BenchContext, c: Cluster, system: string, storePrefix: string): Promise<void> {
  const { clusterBytes: bytes, repeat, rawPartBytes, rawConcurrency } = ctx.opts;
  const what = commitWhat(bytes);
  const [n1, n2, n3] = c.agents as [RosetDaemon, RosetDaemon, RosetDaemon];
  const client = c.serve.client;
  const objects = `${storePrefix}objects/`;
  const vals: number[] = [], refs: number[] = [], loads: number[] = [];
  const samples: Array<Record<string, unknown>> = [];
  for (let i = 0; i < repeat; i++) {
    // Reference: node 3's amount of bytes, from the cache disk, by a raw multipart upload.
    const rf = path.join(refDir(ctx), `cluster-${i}.bin`);
    await runIo(['write', rf, String(bytes), String(ctx.seed())]);
    log(`  ${what}: sample ${i + 1}/${repeat}: raw multipart upload (${rawPartBytes / MiB} MiB parts × ${rawConcurrency})`);
    const rawKey = `${ctx.runPrefix}raw/cluster-${i}.bin`;
    const rawMs = await ctx.raw.multipartUpload(rawKey, rf, rawPartBytes, rawConcurrency);
    rmSync(rf, { force: true });
    await ctx.raw.deletePrefix(rawKey);

    log(`  ${what}: sample ${i + 1}/${repeat}: ${system}`);
    const folder = `/ckpt-${i}`;
    mkdirSync(path.join(n1.mnt, folder));
    const node = await client.resolvePath(folder);
    if (!node) throw new Error(`${folder} made on node 1 is unknown to roset serve`);
    const before = await ctx.raw.countKeys(objects);
    // Node 3 opens its file first and holds it open: the commit must wait for it.
    const held = runHeldWrite(path.join(n3.mnt, folder, 'rank2.bin'), bytes, ctx.seed());
    try {
      await held.opened;
      loads.push(loadAvg()[0]);
      const [w1, w2] = await Promise.all([
        runIo(['write', path.join(n1.mnt, folder, 'rank0.bin'), String(bytes), String(ctx.seed())]),
        runIo(['write', path.join(n2.mnt, folder, 'rank1.bin'), String(bytes), String(ctx.seed())]),
      ]);
      const t0 = epochNow();
      const commit = await client.commit(node.id, { message: `bench cluster ${i}` });
      const callMs = epochNow() - t0;
      // Nodes 1 and 2 uploaded in the background from their close; wait for their objects.
      const tw = epochNow();
      const uploaded = await waitForKeys(ctx, objects, before + 2, 60_000 + (2 * bytes) / 10_000);
      const waitedMs = epochNow() - tw;
      if (!uploaded) log(`    the objects of nodes 1 and 2 were not all in the bucket after ${(waitedMs / 1000).toFixed(0)} s; node 3 goes on`);
      const pending = await client.getCommit(commit.id);
      if (pending.status !== 'pending') throw new Error(`commit ${commit.id} is ${pending.status} before node 3 closed: ${pending.error?.code ?? ''} ${pending.error?.message ?? ''}`);
      held.go();
      const w3 = await held.done;
      const { commit: done, doneEpochMs } = await waitCommit(client, commit.id, 20, 3_600_000);
      const ms = doneEpochMs - w3.endEpochMs;
      const manifest = await client.getManifest(commit.id);
      const sizes = manifest.files.map((f) => `${f.path}:${f.size}`).sort().join(' ');
      if (manifest.files.length !== AGENTS || manifest.files.some((f) => f.size !== bytes)) throw new Error(`the manifest of ${commit.id} holds ${sizes}, expected 3 files of ${bytes} bytes`);
      vals.push(ms / 1000);
      refs.push(rawMs / 1000);
      samples.push({
        commitCallMs: callMs, waitForNodes12UploadsMs: waitedMs, nodes12Uploaded: uploaded,
        writeMBps: [MBps(w1.bytes, w1.ms), MBps(w2.bytes, w2.ms), MBps(w3.bytes, w3.ms)],
        commitCallToCompletedMs: doneEpochMs - t0, stats: done.stats,
      });
      log(`    ${(ms / 1000).toFixed(2)} s vs ${(rawMs / 1000).toFixed(2)} s raw (commit() ${callMs.toFixed(1)} ms with node 3's file open; waited ${(waitedMs / 1000).toFixed(1)} s for the uploads of nodes 1 and 2)`);
    } finally {
      // A failure above must not leave node 3's writer holding its file (the seal would wait on it).
      held.go();
      await held.done.catch(() => undefined);
    }
  }
  const value = median(vals);
  const ref = median(refs);
  add(ctx, {
    row: 8, id: 'cluster-commit', what, system, unit: 's', value,
    reference: { what: `raw multipart ${rawPartBytes / MiB} MiB × ${rawConcurrency} of node 3's ${bytes / MiB} MiB`, value: ref },
    target: atMost(value / ref, 1.2), samples: { value: vals, reference: refs, load1: loads },
    extra: { agents: AGENTS, database: pgInfo(c.pg), bytesPerAgent: bytes, samples },
  });
}
