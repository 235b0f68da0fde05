/**
 * The rows of the benchmark (issue 6, design §7), each measured with its reference in
 * the same run, for one system at a time.
 *
 * Owns: the procedure of each row, and the files and keys it makes. Each row removes
 * its big files when done, so the cache disk and the test server's OSD (a sparse file
 * shared with other users) never hold more than one row's worth.
 *
 * Invariants:
 * - Throughput rows alternate reference and system sample by sample (ref, system,
 *   ref, system, ...) and report medians, so a drift in the machine's load hits both.
 * - Every file the systems write has unique content (see io.ts), so Roset's content
 *   addressing never turns a measured upload into a dedup.
 * - Roset is driven the way a user drives it: files through the mount, commits through
 *   the SDK (RosetClient), reads through the mount. Nothing reaches into its cache
 *   except to empty it (a cold read restarts the daemon with the cache deleted) and to
 *   drop the page cache of its files before a warm read.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { BenchOptions } from './options.js';
import { dataPool, smallFileBody, smallFileName } from './io.js';
import { dropCache, epochNow, log, MBps, median, percentile, runIo, sampleRss, waitCommit } from './measure.js';
import type { RowResult, Target } from './report.js';
import type { RawS3, S3Env } from './s3.js';
import {
  memoryOf, mountJuiceFS, startRoset, waitDrained, type JuiceFSMount, type JuiceFSVolume, type Mounted, type RosetDaemon, type RosetStart,
} from './systems.js';
import { loadAvg } from './machine.js';
import { sleep } from '../src/util/sleep.js';

const GiB = 2 ** 30;
const gib = (b: number): string => `${+(b / GiB).toFixed(2)} GiB`;

export interface BenchContext {
  opts: BenchOptions;
  s3: S3Env;
  raw: RawS3;
  /** Run directory on the cache disk. */
  root: string;
  /** Key prefix of this run in the bucket, ending in '/'. */
  runPrefix: string;
  results: RowResult[];
  errors: string[];
  seed: () => number;
}

export function refDir(ctx: BenchContext): string {
  const d = path.join(ctx.root, 'ref');
  mkdirSync(d, { recursive: true });
  return d;
}

export function add(ctx: BenchContext, r: Omit<RowResult, 'ratio'> & { ratio?: number | null }): RowResult {
  const ratio = r.ratio !== undefined ? r.ratio : r.value !== null && r.reference.value ? r.value / r.reference.value : null;
  const row = { ...r, ratio } as RowResult;
  ctx.results.push(row);
  const v = row.skipped ? `SKIPPED: ${row.skipped}` : row.error ? `ERROR ${row.error.split('\n')[0]}` : `${row.value?.toFixed(2)} ${row.unit} vs ${row.reference.value?.toFixed(2)} (${row.reference.what})`;
  log(`  = ${row.what} [${row.system}]: ${v}${ratio !== null ? `, ratio ${ratio.toFixed(2)}` : ''}${row.target ? `, ${row.target.pass ? 'pass' : 'MISS'} (${row.target.text})` : ''}`);
  return row;
}

/** Records a row that could not be measured, with why. */
export function failed(ctx: BenchContext, row: number, id: string, what: string, system: string, unit: RowResult['unit'], err: unknown): void {
  const msg = (err as Error).message ?? String(err);
  ctx.errors.push(`${what} [${system}]: ${msg}`);
  add(ctx, { row, id, what, system, unit, value: null, reference: { what: '', value: null }, ratio: null, target: null, error: msg });
}

const atLeast = (ratio: number | null, k: number): Target => ({ text: `≥ ${k} × ref`, pass: ratio !== null && ratio >= k });
export const atMost = (ratio: number | null, k: number): Target => ({ text: `≤ ${k} × ref`, pass: ratio !== null && ratio <= k });

// ---- row 1: sequential write until close ------------------------------------------------

/** Sequential write of `sizeBytes` into `dir` (on a mount), against the same write to the cache disk. */
export async function writeRow(ctx: BenchContext, system: string, dir: string, isRoset: boolean): Promise<void> {
  const { sizeBytes, repeat } = ctx.opts;
  const what = `seq write ${gib(sizeBytes)}, until close`;
  const vals: number[] = [];
  const refs: number[] = [];
  const loads: number[] = [];
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < repeat; i++) {
    const rf = path.join(refDir(ctx), `write-${i}.bin`);
    log(`  ${what}: sample ${i + 1}/${repeat}: cache disk`);
    const r = await runIo(['write', rf, String(sizeBytes), String(ctx.seed())]);
    rmSync(rf, { force: true });
    log(`  ${what}: sample ${i + 1}/${repeat}: ${system}`);
    const f = path.join(dir, `write-${i}.bin`);
    loads.push(loadAvg()[0]);
    const v = await runIo(['write', f, String(sizeBytes), String(ctx.seed())]);
    rmSync(f, { force: true });
    refs.push(MBps(r.bytes, r.ms));
    vals.push(MBps(v.bytes, v.ms));
    log(`    ${vals.at(-1)!.toFixed(0)} MB/s vs ${refs.at(-1)!.toFixed(0)} MB/s on the cache disk`);
  }
  const value = median(vals);
  const ref = median(refs);
  add(ctx, {
    row: 1, id: 'write', what, system, unit: 'MB/s', value, reference: { what: 'cache disk', value: ref },
    target: isRoset ? atLeast(value / ref, 0.9) : null, samples: { value: vals, reference: refs, load1: loads },
  });
}

// ---- row 2: last close to commit completed -----------------------------------------------

export async function commitRow(ctx: BenchContext, d: RosetDaemon, system: string): Promise<void> {
  const { commitBytes, repeat, rawPartBytes, rawConcurrency } = ctx.opts;
  const what = `last close → commit completed, ${gib(commitBytes)}`;
  const vals: number[] = [];
  const refs: number[] = [];
  const loads: number[] = [];
  const calls: number[] = [];
  const stats: unknown[] = [];
  for (let i = 0; i < repeat; i++) {
    // Reference: the same kind of bytes, from the cache disk, by a raw multipart upload.
    const rf = path.join(refDir(ctx), `commit-${i}.bin`);
    await runIo(['write', rf, String(commitBytes), String(ctx.seed())]);
    log(`  ${what}: sample ${i + 1}/${repeat}: raw multipart upload (${rawPartBytes / 2 ** 20} MiB parts × ${rawConcurrency})`);
    const rawMs = await ctx.raw.multipartUpload(`${ctx.runPrefix}raw/commit-${i}.bin`, rf, rawPartBytes, rawConcurrency);
    rmSync(rf, { force: true });

    log(`  ${what}: sample ${i + 1}/${repeat}: ${system}`);
    const folder = `/commit-${i}`;
    mkdirSync(path.join(d.mnt, folder));
    const node = await d.client.resolvePath(folder);
    if (!node) throw new Error(`${folder} made through the mount is unknown to the API`);
    loads.push(loadAvg()[0]);
    const w = await runIo(['write', path.join(d.mnt, folder, 'model.bin'), String(commitBytes), String(ctx.seed())]);
    const t0 = epochNow();
    const c = await d.client.commit(node.id, { message: `bench ${i}` });
    calls.push(epochNow() - t0);
    const { commit, doneEpochMs } = await waitCommit(d.client, c.id, 20, 3_600_000);
    const ms = doneEpochMs - w.endEpochMs;
    vals.push(ms / 1000);
    refs.push(rawMs / 1000);
    stats.push(commit.stats);
    log(`    ${(ms / 1000).toFixed(2)} s vs ${(rawMs / 1000).toFixed(2)} s raw (upload ${(MBps(commitBytes, ms)).toFixed(0)} vs ${MBps(commitBytes, rawMs).toFixed(0)} MB/s)`);
  }
  const value = median(vals);
  const ref = median(refs);
  add(ctx, {
    row: 2, id: 'commit', what, system, unit: 's', value,
    reference: { what: `raw multipart ${rawPartBytes / 2 ** 20} MiB × ${rawConcurrency}`, value: ref },
    target: atMost(value / ref, 1.2), samples: { value: vals, reference: refs, load1: loads },
    extra: { commitCallMs: calls, stats },
  });
}

// ---- row 3: commit() latency ----------------------------------------------------------------

export async function latencyRow(ctx: BenchContext, d: RosetDaemon, system: string): Promise<void> {
  const n = ctx.opts.commits;
  log(`  commit() latency: ${n} folders with one 4 KiB file each`);
  const pool = dataPool(ctx.seed());
  const base = ctx.seed();
  const folders: string[] = [];
  for (let i = 0; i < n; i++) {
    const folder = `/lat-${String(i).padStart(4, '0')}`;
    mkdirSync(path.join(d.mnt, folder));
    writeFileSync(path.join(d.mnt, folder, 'state.bin'), smallFileBody(base, i, 4096, pool));
    folders.push(folder);
  }
  const nodes = await d.client.resolve(folders);
  // The floor of any call on this API: an unauthenticated GET on the same connection pool.
  const health: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = epochNow();
    await d.client.getHealth();
    health.push(epochNow() - t0);
  }
  const lat: number[] = [];
  const loads: number[] = [];
  for (const [i, folder] of folders.entries()) {
    const node = nodes[folder];
    if (!node) throw new Error(`${folder} is unknown to the API`);
    loads.push(loadAvg()[0]);
    const t0 = epochNow();
    const c = await d.client.commit(node.id);
    lat.push(epochNow() - t0);
    // Each commit finishes before the next: the call is timed alone, as a trainer makes it.
    await waitCommit(d.client, c.id, 10, 120_000);
    if ((i + 1) % 50 === 0) log(`    ${i + 1}/${n} commits, p50 so far ${percentile(lat, 50).toFixed(1)} ms`);
  }
  const p50 = percentile(lat, 50);
  const p99 = percentile(lat, 99);
  const h50 = percentile(health, 50);
  const h99 = percentile(health, 99);
  const common = { id: 'latency', system, unit: 'ms' as const, samples: undefined };
  add(ctx, { ...common, row: 3, id: 'latency-p50', what: `commit() call latency p50 (${n} commits)`, value: p50,
    reference: { what: 'GET /health p50', value: h50 }, target: null, extra: { latenciesMs: lat, healthMs: health, load1: loads } });
  add(ctx, { ...common, row: 3, id: 'latency-p99', what: `commit() call latency p99 (${n} commits)`, value: p99,
    reference: { what: 'GET /health p99', value: h99 }, target: { text: '< 50 ms', pass: p99 < 50 } });
}

// ---- row 5: 10,000 small files, and their commit ---------------------------------------------

/**
 * Creates `count` small files in `dir`; for Roset (`d`) then commits them, for JuiceFS
 * (`jfs`) waits for its write-back to drain. Both then get a start-to-durable row: from
 * the first file's open to the data durable in the bucket.
 */
export async function smallRow(ctx: BenchContext, system: string, dir: string, count: number, d: RosetDaemon | null, jfs?: JuiceFSMount): Promise<void> {
  const { smallBytes, rawPutConcurrency } = ctx.opts;
  const what = `create ${count} × ${smallBytes / 1024} KiB files`;
  const rdir = path.join(refDir(ctx), 'small');
  log(`  ${what}: cache disk`);
  const r = await runIo(['small', rdir, String(count), String(smallBytes), String(ctx.seed())]);
  rmSync(rdir, { recursive: true, force: true });
  log(`  ${what}: ${system}`);
  const seed = ctx.seed();
  const load = loadAvg()[0];
  const v = await runIo(['small', dir, String(count), String(smallBytes), String(seed)], 7_200_000);
  const rate = (x: { ms: number }) => count / (x.ms / 1000);
  add(ctx, {
    row: 5, id: 'small-create', what, system, unit: 'files/s', value: rate(v), reference: { what: 'cache disk', value: rate(r) },
    target: null, samples: { value: [rate(v)], reference: [rate(r)], load1: [load] },
  });
  if (jfs) {
    log(`  ${count} files durable: waiting for ${system}'s write-back to drain`);
    const drainedAt = await waitDrained(jfs, 50, 3_600_000, epochNow);
    const pool = dataPool(seed);
    log(`  ${count} files durable: raw PUTs × ${rawPutConcurrency}`);
    const rawMs = await ctx.raw.putMany((i) => `${ctx.runPrefix}raw/small-jfs/${smallFileName(i)}`, (i) => smallFileBody(seed, i, smallBytes, pool), count, rawPutConcurrency);
    add(ctx, {
      row: 5, id: 'small-durable', what: `${count} × ${smallBytes / 1024} KiB files: start of creating → durable in the bucket`, system, unit: 's',
      value: (drainedAt - v.startEpochMs) / 1000, reference: { what: `raw PUTs × ${rawPutConcurrency}`, value: rawMs / 1000 }, target: null,
      extra: { afterCreateS: (drainedAt - v.endEpochMs) / 1000, durability: JUICEFS_DURABILITY },
    });
    return;
  }
  if (!d) return;

  const cwhat = `commit of those ${count} files`;
  const folder = `/${path.relative(d.mnt, dir)}`;
  const node = await d.client.resolvePath(folder);
  if (!node) throw new Error(`${folder} is unknown to the API`);
  log(`  ${cwhat}: ${system}`);
  const t0 = epochNow();
  const c = await d.client.commit(node.id);
  const { commit, doneEpochMs } = await waitCommit(d.client, c.id, 50, 3_600_000);
  const commitS = (doneEpochMs - t0) / 1000;
  log(`  ${cwhat}: raw PUTs × ${rawPutConcurrency}`);
  const pool = dataPool(seed);
  const rawMs = await ctx.raw.putMany((i) => `${ctx.runPrefix}raw/small/${smallFileName(i)}`, (i) => smallFileBody(seed, i, smallBytes, pool), count, rawPutConcurrency);
  const rawS = rawMs / 1000;
  add(ctx, {
    row: 5, id: 'small-commit', what: `${cwhat} (time beyond upload)`, system, unit: 's', value: commitS,
    reference: { what: `raw PUTs × ${rawPutConcurrency}`, value: rawS },
    target: { text: '≤ ref + 2 s', pass: commitS - rawS <= 2 }, extra: { beyondUploadS: commitS - rawS, stats: commit.stats },
  });
  add(ctx, {
    row: 5, id: 'small-durable', what: `${count} × ${smallBytes / 1024} KiB files: start of creating → durable in the bucket`, system, unit: 's',
    value: (doneEpochMs - v.startEpochMs) / 1000, reference: { what: `raw PUTs × ${rawPutConcurrency}`, value: rawS }, target: null,
    extra: { afterCreateS: commitS },
  });
}

// ---- row 4: cold and warm read -----------------------------------------------------------------

export interface DaemonHolder {
  d: RosetDaemon;
  start: RosetStart;
}

export async function readRow(ctx: BenchContext, h: DaemonHolder, system: string, storePrefix: string): Promise<void> {
  const { sizeBytes, repeat, rawRangeBytes, rawConcurrency } = ctx.opts;
  const seed = ctx.seed();
  log(`  read: writing and committing a ${gib(sizeBytes)} file`);
  mkdirSync(path.join(h.d.mnt, 'read'));
  await runIo(['write', path.join(h.d.mnt, 'read', 'model.bin'), String(sizeBytes), String(seed)]);
  const node = await h.d.client.resolvePath('/read');
  if (!node) throw new Error('/read is unknown to the API');
  const c = await h.d.client.commit(node.id);
  await waitCommit(h.d.client, c.id, 50, 3_600_000);
  const manifest = await h.d.client.getManifest(c.id);
  const key = storePrefix + manifest.files[0]!.key;
  const lf = path.join(refDir(ctx), 'read.bin');
  await runIo(['write', lf, String(sizeBytes), String(seed)]);

  const cold: number[] = [], raw: number[] = [], warm: number[] = [], local: number[] = [], loads: number[] = [];
  const inMount = path.join(h.d.mnt, 'read', 'model.bin');
  for (let i = 0; i < repeat; i++) {
    log(`  cold read ${gib(sizeBytes)}: sample ${i + 1}/${repeat}: raw ranged GETs (${rawRangeBytes / 2 ** 20} MiB × ${rawConcurrency})`);
    const rawMs = await ctx.raw.rangedGet(key, sizeBytes, rawRangeBytes, rawConcurrency);
    raw.push(MBps(sizeBytes, rawMs));
    log(`  cold read: sample ${i + 1}/${repeat}: restarting ${system} with its cache deleted`);
    await h.d.stop();
    rmSync(h.d.cacheDir, { recursive: true, force: true });
    h.d = await startRoset(h.start);
    loads.push(loadAvg()[0]);
    const cr = await runIo(['read', inMount, String(seed)]);
    if (cr.bytes !== sizeBytes) throw new Error(`cold read returned ${cr.bytes} bytes, expected ${sizeBytes}`);
    cold.push(MBps(cr.bytes, cr.ms));
    log(`    cold ${cold.at(-1)!.toFixed(0)} MB/s vs raw ${raw.at(-1)!.toFixed(0)} MB/s`);

    dropCache(h.d.cacheDir);
    dropCache(inMount);
    const wr = await runIo(['read', inMount, String(seed)]);
    warm.push(MBps(wr.bytes, wr.ms));
    dropCache(lf);
    const lr = await runIo(['read', lf, String(seed)]);
    local.push(MBps(lr.bytes, lr.ms));
    log(`    warm ${warm.at(-1)!.toFixed(0)} MB/s vs local disk ${local.at(-1)!.toFixed(0)} MB/s`);
  }
  rmSync(lf, { force: true });
  const v = median(cold), r = median(raw), w = median(warm), l = median(local);
  add(ctx, {
    row: 4, id: 'read-cold', what: `cold read ${gib(sizeBytes)} (empty cache)`, system, unit: 'MB/s', value: v,
    reference: { what: `raw ranged GETs ${rawRangeBytes / 2 ** 20} MiB × ${rawConcurrency}`, value: r },
    target: atLeast(v / r, 0.8), samples: { value: cold, reference: raw, load1: loads },
  });
  add(ctx, {
    row: 4, id: 'read-warm', what: `warm read ${gib(sizeBytes)} (cached, page cache dropped)`, system, unit: 'MB/s', value: w,
    reference: { what: 'cache disk read', value: l }, target: atLeast(w / l, 0.8), samples: { value: warm, reference: local, load1: loads },
  });
}

/** Cold read through a peer mount of an object the bench put there, against raw ranged GETs of it. */
export async function peerReadRow(ctx: BenchContext, m: Mounted, system: string, key: string, seed: number): Promise<void> {
  const { sizeBytes, repeat, rawRangeBytes, rawConcurrency } = ctx.opts;
  const vals: number[] = [], refs: number[] = [], loads: number[] = [];
  const f = path.join(m.mnt, path.basename(key));
  for (let i = 0; i < repeat; i++) {
    log(`  cold read ${gib(sizeBytes)}: sample ${i + 1}/${repeat}: raw ranged GETs, then ${system}`);
    refs.push(MBps(sizeBytes, await ctx.raw.rangedGet(key, sizeBytes, rawRangeBytes, rawConcurrency)));
    dropCache(f);
    loads.push(loadAvg()[0]);
    const r = await runIo(['read', f, String(seed)]);
    if (r.bytes !== sizeBytes) throw new Error(`read returned ${r.bytes} bytes, expected ${sizeBytes}`);
    vals.push(MBps(r.bytes, r.ms));
    log(`    ${vals.at(-1)!.toFixed(0)} MB/s vs raw ${refs.at(-1)!.toFixed(0)} MB/s`);
  }
  const v = median(vals), r = median(refs);
  add(ctx, {
    row: 4, id: 'read-cold', what: `cold read ${gib(sizeBytes)} (empty cache)`, system, unit: 'MB/s', value: v,
    reference: { what: `raw ranged GETs ${rawRangeBytes / 2 ** 20} MiB × ${rawConcurrency}`, value: r },
    target: null, samples: { value: vals, reference: refs, load1: loads },
  });
}

// ---- row 6: daemon memory while writing (and committing) a big file ---------------------------------

export async function rssRow(ctx: BenchContext, start: RosetStart, system: string): Promise<void> {
  const { rssBytes, rssFiles } = ctx.opts;
  const MiBk = 1024;
  // Whole MiB per file: io.ts writes 1 MiB blocks.
  const perFile = Math.max(2 ** 20, Math.floor(rssBytes / rssFiles / 2 ** 20) * 2 ** 20);
  const total = perFile * rssFiles;
  const shape = rssFiles > 1 ? `${gib(total)} in ${rssFiles} files` : gib(total);
  const d = await startRoset(start);
  try {
    // Let start-up settle (SQLite, the S3 probe, the API) before the idle reading.
    await sleep(2000);
    const idle = memoryOf(d.pid);
    if (!idle) throw new Error('cannot read /proc/PID/status of roset-mount');
    mkdirSync(path.join(d.mnt, 'big'));
    const node = await d.client.resolvePath('/big');
    if (!node) throw new Error('/big is unknown to the API');
    log(`  peak RSS: writing ${shape} through ${system} (idle RSS ${(idle.rssKiB / MiBk).toFixed(0)} MiB)`);
    const sampler = sampleRss(d.pid);
    let writeMs = 0;
    for (let i = 0; i < rssFiles; i++) {
      const name = rssFiles > 1 ? `shard-${String(i).padStart(3, '0')}.bin` : 'model.bin';
      writeMs += (await runIo(['write', path.join(d.mnt, 'big', name), String(perFile), String(ctx.seed())])).ms;
    }
    const afterWrite = memoryOf(d.pid)!;
    const sampledWrite = sampler.stop();
    add(ctx, {
      row: 6, id: 'rss-write', what: `daemon peak RSS while writing ${shape}`, system, unit: 'MiB', value: afterWrite.hwmKiB / MiBk,
      reference: { what: 'idle daemon', value: idle.rssKiB / MiBk }, target: { text: '< 300 MiB', pass: afterWrite.hwmKiB / MiBk < 300 },
      extra: { vmHWMKiB: afterWrite.hwmKiB, maxSampledRssKiB: sampledWrite.maxRssKiB, writeMBps: MBps(total, writeMs), files: rssFiles },
    });
    log(`  peak RSS: committing ${shape}`);
    const sampler2 = sampleRss(d.pid);
    const t0 = epochNow();
    const c = await d.client.commit(node.id);
    const { commit } = await waitCommit(d.client, c.id, 100, 7_200_000);
    const commitS = (epochNow() - t0) / 1000;
    const afterCommit = memoryOf(d.pid)!;
    const sampledCommit = sampler2.stop();
    add(ctx, {
      row: 6, id: 'rss-commit', what: `daemon peak RSS through the commit of ${shape}`, system, unit: 'MiB', value: afterCommit.hwmKiB / MiBk,
      reference: { what: 'idle daemon', value: idle.rssKiB / MiBk }, target: { text: '< 300 MiB', pass: afterCommit.hwmKiB / MiBk < 300 },
      extra: { vmHWMKiB: afterCommit.hwmKiB, maxSampledRssKiB: sampledCommit.maxRssKiB, commitS, uploadMBps: MBps(total, commitS * 1000), stats: commit.stats, files: rssFiles },
    });
  } finally {
    await d.stop();
  }
}

// ---- JuiceFS (a peer with a write-back cache) -------------------------------------------------

/** Said next to every JuiceFS durability number. */
export const JUICEFS_DURABILITY = 'JuiceFS: data blocks in the bucket; its file-to-block map stays in the local SQLite database (backed up to the bucket hourly). Roset: the data and a manifest of the commit in the bucket.';

/** A mounted JuiceFS volume that a cold read remounts with its cache emptied. */
export interface JuiceFSHolder {
  v: JuiceFSVolume;
  m: JuiceFSMount;
}

/** Waits for write-back to drain, unmounts, deletes the cache, mounts again. */
export async function remountJuiceFS(h: JuiceFSHolder): Promise<void> {
  await waitDrained(h.m, 50, 3_600_000, epochNow);
  await h.m.stop();
  rmSync(h.v.cacheDir, { recursive: true, force: true });
  h.m = await mountJuiceFS(h.v);
}

/** Row 4 through JuiceFS: a file written through it, read after a remount with an empty cache. */
export async function juicefsReadRow(ctx: BenchContext, h: JuiceFSHolder, system: string, refKey: string): Promise<void> {
  const { sizeBytes, repeat, rawRangeBytes, rawConcurrency } = ctx.opts;
  const seed = ctx.seed();
  log(`  read: writing a ${gib(sizeBytes)} file through ${system}`);
  const f = path.join(h.m.mnt, 'read.bin');
  await runIo(['write', f, String(sizeBytes), String(seed)]);
  const vals: number[] = [], refs: number[] = [], loads: number[] = [];
  for (let i = 0; i < repeat; i++) {
    log(`  cold read ${gib(sizeBytes)}: sample ${i + 1}/${repeat}: raw ranged GETs, then ${system} remounted with its cache deleted`);
    refs.push(MBps(sizeBytes, await ctx.raw.rangedGet(refKey, sizeBytes, rawRangeBytes, rawConcurrency)));
    await remountJuiceFS(h);
    loads.push(loadAvg()[0]);
    const r = await runIo(['read', path.join(h.m.mnt, 'read.bin'), String(seed)]);
    if (r.bytes !== sizeBytes) throw new Error(`read returned ${r.bytes} bytes, expected ${sizeBytes}`);
    vals.push(MBps(r.bytes, r.ms));
    log(`    ${vals.at(-1)!.toFixed(0)} MB/s vs raw ${refs.at(-1)!.toFixed(0)} MB/s`);
  }
  add(ctx, {
    row: 4, id: 'read-cold', what: `cold read ${gib(sizeBytes)} (empty cache)`, system, unit: 'MB/s', value: median(vals),
    reference: { what: `raw ranged GETs ${rawRangeBytes / 2 ** 20} MiB × ${rawConcurrency}`, value: median(refs) },
    target: null, samples: { value: vals, reference: refs, load1: loads },
  });
}

// ---- row 9: cold read of N files at once ------------------------------------------------------

/** What the parallel cold read needs of a system: where its files are, and how to empty its cache. */
export interface ParallelReadSubject {
  system: string;
  isRoset: boolean;
  /** The N files through the mount, with the seeds they were written with. */
  files: () => string[];
  seeds: number[];
  /** The objects of the raw reference, the same sizes. */
  keys: string[];
  /** Stops the system, deletes its cache, starts it again. */
  coldRestart: () => Promise<void>;
}

/** Writes N files of `bytes` each through `dir` (sequentially); returns their seeds. */
export async function writeParallelFiles(ctx: BenchContext, dir: string): Promise<number[]> {
  const { parallelFiles, parallelBytes } = ctx.opts;
  mkdirSync(dir, { recursive: true });
  const seeds: number[] = [];
  for (let i = 0; i < parallelFiles; i++) {
    const seed = ctx.seed();
    seeds.push(seed);
    await runIo(['write', path.join(dir, parallelName(i)), String(parallelBytes), String(seed)]);
  }
  return seeds;
}

export const parallelName = (i: number): string => `part-${String(i).padStart(3, '0')}.bin`;

/** N cold reads at once through the system, against N raw ranged-GET reads at once. */
export async function parallelReadRow(ctx: BenchContext, s: ParallelReadSubject): Promise<void> {
  const { parallelFiles, parallelBytes, repeat, rawRangeBytes, rawConcurrency } = ctx.opts;
  const total = parallelFiles * parallelBytes;
  const what = `cold read ${parallelFiles} × ${parallelBytes / 2 ** 20} MiB at once (empty cache)`;
  const vals: number[] = [], refs: number[] = [], loads: number[] = [];
  for (let i = 0; i < repeat; i++) {
    log(`  ${what}: sample ${i + 1}/${repeat}: raw ranged GETs of the ${parallelFiles} objects at once`);
    const t0 = epochNow();
    await Promise.all(s.keys.map((k) => ctx.raw.rangedGet(k, parallelBytes, rawRangeBytes, rawConcurrency)));
    refs.push(MBps(total, epochNow() - t0));
    log(`  ${what}: sample ${i + 1}/${repeat}: ${s.system} restarted with its cache deleted`);
    await s.coldRestart();
    loads.push(loadAvg()[0]);
    const files = s.files();
    const rs = await Promise.all(files.map((f, j) => runIo(['read', f, String(s.seeds[j])])));
    const bytes = rs.reduce((a, r) => a + r.bytes, 0);
    if (bytes !== total) throw new Error(`parallel read returned ${bytes} bytes, expected ${total}`);
    const ms = Math.max(...rs.map((r) => r.endEpochMs)) - Math.min(...rs.map((r) => r.startEpochMs));
    vals.push(MBps(total, ms));
    log(`    ${vals.at(-1)!.toFixed(0)} MB/s vs raw ${refs.at(-1)!.toFixed(0)} MB/s`);
  }
  const v = median(vals), r = median(refs);
  add(ctx, {
    row: 9, id: 'read-parallel', what, system: s.system, unit: 'MB/s', value: v,
    reference: { what: `raw ranged GETs of the ${parallelFiles} objects at once, ${rawRangeBytes / 2 ** 20} MiB × ${rawConcurrency} each`, value: r },
    target: s.isRoset ? atLeast(v / r, 0.8) : null, samples: { value: vals, reference: refs, load1: loads },
  });
}

// ---- row 10: start of writing → durable in the bucket ------------------------------------------

/** CPU seconds (user + system) a process has used, from /proc/PID/stat. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

/** How one sample makes a file durable: Roset commits its folder, JuiceFS drains. */
export interface DurableSubject {
  system: string;
  mnt: string;
  /** The process to measure CPU and peak RSS of. */
  pid: () => number;
  /** Called with the sample's folder (made by the row) before the write. */
  prepare?: (folder: string) => Promise<void>;
  /** After the file's close: resolves when it is durable, with that epoch ms. */
  durable: (folder: string) => Promise<number>;
  /**
   * Keep each sample's file: deleting it through JuiceFS (trash off) deletes its blocks
   * in the background, which would compete with the next sample's upload.
   */
  keepFiles?: boolean;
  /** How a sample's folder is removed (default: recursively; Roset: `rmdir` of the committed folder). */
  removeFolder?: (dir: string) => void;
  note?: string;
}

export async function durableRow(ctx: BenchContext, s: DurableSubject): Promise<void> {
  const { sizeBytes, repeat, rawPartBytes, rawConcurrency } = ctx.opts;
  const what = `${gib(sizeBytes)}: start of writing → durable in the bucket`;
  const vals: number[] = [], refs: number[] = [], loads: number[] = [], writeS: number[] = [], cpu: Array<number | null> = [];
  for (let i = 0; i < repeat; i++) {
    const rf = path.join(refDir(ctx), `durable-${i}.bin`);
    await runIo(['write', rf, String(sizeBytes), String(ctx.seed())]);
    log(`  ${what}: sample ${i + 1}/${repeat}: raw multipart upload (${rawPartBytes / 2 ** 20} MiB parts × ${rawConcurrency})`);
    const rawMs = await ctx.raw.multipartUpload(`${ctx.runPrefix}raw/durable-${i}.bin`, rf, rawPartBytes, rawConcurrency);
    rmSync(rf, { force: true });
    await ctx.raw.deletePrefix(`${ctx.runPrefix}raw/durable-${i}.bin`);
    log(`  ${what}: sample ${i + 1}/${repeat}: ${s.system}`);
    const folder = `durable-${i}`;
    mkdirSync(path.join(s.mnt, folder));
    await s.prepare?.(folder);
    loads.push(loadAvg()[0]);
    const cpu0 = cpuSeconds(s.pid());
    const w = await runIo(['write', path.join(s.mnt, folder, 'model.bin'), String(sizeBytes), String(ctx.seed())]);
    const doneAt = await s.durable(folder);
    const cpu1 = cpuSeconds(s.pid());
    cpu.push(cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null);
    vals.push((doneAt - w.startEpochMs) / 1000);
    writeS.push(w.ms / 1000);
    refs.push(rawMs / 1000);
    log(`    ${vals.at(-1)!.toFixed(2)} s (write until close ${writeS.at(-1)!.toFixed(2)} s) vs ${refs.at(-1)!.toFixed(2)} s raw upload`);
    if (!s.keepFiles) (s.removeFolder ?? ((dir: string) => rmSync(dir, { recursive: true, force: true })))(path.join(s.mnt, folder));
  }
  const mem = memoryOf(s.pid());
  add(ctx, {
    row: 10, id: 'durable', what, system: s.system, unit: 's', value: median(vals),
    reference: { what: `raw multipart ${rawPartBytes / 2 ** 20} MiB × ${rawConcurrency} from the cache disk`, value: median(refs) },
    target: null, samples: { value: vals, reference: refs, load1: loads },
    extra: { writeUntilCloseS: writeS, cpuSeconds: cpu, peakRssMiB: mem ? mem.hwmKiB / 1024 : null, ...(s.note ? { durability: s.note } : {}) },
  });
}

// ---- Roset against JuiceFS -------------------------------------------------------------------

/** The issue's targets of Roset against JuiceFS, by row id: `≥ k` for a rate, `≤ k` for a time. */
export const JUICEFS_TARGETS: Record<string, { k: number; atLeast: boolean }> = {
  'read-cold': { k: 1.5, atLeast: true },
  'read-parallel': { k: 1.5, atLeast: true },
  durable: { k: 1, atLeast: false },
  'small-create': { k: 2, atLeast: true },
  'small-durable': { k: 1, atLeast: false },
};

/**
 * One row per Roset result that has a JuiceFS counterpart in this run: the same value,
 * with JuiceFS's as the reference and the issue's ratio as the target.
 */
export function juicefsComparisons(ctx: BenchContext): void {
  const jfs = ctx.results.filter((r) => r.system === 'juicefs' && r.value !== null);
  for (const r of [...ctx.results]) {
    const t = JUICEFS_TARGETS[r.id];
    if (!t || !r.system.startsWith('roset') || r.value === null) continue;
    const j = jfs.find((x) => x.id === r.id && x.what === r.what);
    if (!j) continue;
    const ratio = r.value / j.value!;
    add(ctx, {
      row: r.row, id: `${r.id}-vs-juicefs`, what: `${r.what}, against JuiceFS`, system: r.system, unit: r.unit, value: r.value,
      reference: { what: 'JuiceFS --writeback, same run', value: j.value }, ratio,
      target: t.atLeast ? atLeast(ratio, t.k) : atMost(ratio, t.k),
    });
  }
}
