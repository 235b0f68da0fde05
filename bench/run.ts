/**
 * `npm run bench`: Roset against its references and its peers, all in one run on one
 * S3 server (issue 6, design §7). Prints a table and writes
 * `bench-results/<time>.json` and `bench-results/latest.json`; with `--write-doc` it
 * also rewrites the results section of docs/BENCHMARKS.md.
 *
 * Order: peers installed (scripts/bench-setup --peers) → S3 test server leased →
 * for each Roset binding: rows 1, 2, 3, 5, 10, 4, 9 on one daemon (4 and 9 last: they
 * restart the daemon with an empty cache) → s3fs and rclone: rows 1, 4, 5 → JuiceFS
 * (`--writeback`, SQLite metadata): rows 1, 5, 10, 4, 9, then the rows of Roset
 * against JuiceFS (the issue's ratios as targets) → the multi-node group
 * on the first binding: rows 7 and 8 (PostgreSQL, `roset serve`, 3 agents, and an
 * embedded daemon as row 7's reference; cluster.ts) → for each binding: row 6 on a
 * fresh daemon (a fresh VmHWM) → report. A system none of whose selected rows
 * (`--rows`) apply is not started at all.
 *
 * Owns: the run directory (a fresh temp dir under --dir, removed at the end) and the
 * bucket prefix `bench/<runId>/`, with one sub-prefix per daemon and peer; and
 * `roset-bench-<id>/`, the JuiceFS volume's (JuiceFS takes its volume name as its
 * only key prefix).
 *
 * Invariants:
 * - Whatever fails, and on SIGINT/SIGTERM, every mount, daemon and worker this run
 *   started is stopped, the run's keys are deleted, the run directory is removed and
 *   the server lease is given back (systems.ts `cleanupAll`).
 * - A system that fails records an error row and the run goes on with the others:
 *   one broken binding must not hide the numbers of the rest. A peer that cannot be
 *   installed (JuiceFS when it cannot be built) records skipped rows with the reason.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { commitInfo, describeMachine, loadAvg } from './machine.js';
import { log } from './measure.js';
import { parseOptions, type BenchOptions, type PeerName, type RowName } from './options.js';
import { textTable, updateDoc, writeResults, type BenchResult } from './report.js';
import {
  add, commitRow, durableRow, failed, JUICEFS_DURABILITY, juicefsComparisons, juicefsReadRow, latencyRow, parallelName, parallelReadRow,
  peerReadRow, readRow, refDir, remountJuiceFS, rssRow, smallRow, writeParallelFiles, writeRow,
  type BenchContext, type DaemonHolder, type JuiceFSHolder,
} from './rows.js';
import { benchCluster } from './cluster.js';
import { acquireServer, RawS3, releaseServer, serverVersion, type S3Env } from './s3.js';
import {
  cleanupAll, detectBindings, formatJuiceFS, juicefsBinary, mountJuiceFS, onCleanup, REPO, startRclone, startRoset, startS3fs, waitDrained,
  type Mounted, type RosetStart,
} from './systems.js';
import { epochNow, runIo, waitCommit } from './measure.js';

const DOC = path.join(REPO, 'docs', 'BENCHMARKS.md');

const ROW_UNITS: Record<RowName, ['MB/s' | 's' | 'ms' | 'files/s' | 'MiB', number, string]> = {
  write: ['MB/s', 1, 'seq write'],
  commit: ['s', 2, 'last close → commit completed'],
  latency: ['ms', 3, 'commit() call latency'],
  read: ['MB/s', 4, 'cold/warm read'],
  small: ['files/s', 5, 'small files'],
  rss: ['MiB', 6, 'daemon peak RSS'],
  cluster: ['ms', 7, 'commit() with 3 agents'],
  'parallel-read': ['MB/s', 9, 'parallel cold read'],
  durable: ['s', 10, 'start of writing → durable'],
};

/** The rows measured on the per-binding daemon, and through the peers. */
const DAEMON_ROWS: RowName[] = ['write', 'commit', 'latency', 'small', 'durable', 'read', 'parallel-read'];
const PEER_ROWS: Record<PeerName, RowName[]> = {
  s3fs: ['write', 'read', 'small'],
  rclone: ['write', 'read', 'small'],
  juicefs: ['write', 'small', 'durable', 'read', 'parallel-read'],
};

/** Runs one row for one system, turning a failure into an error row. */
async function attempt(ctx: BenchContext, row: RowName, system: string, fn: () => Promise<void>): Promise<boolean> {
  if (!ctx.opts.rows.has(row)) return true;
  try {
    await fn();
    return true;
  } catch (err) {
    const [unit, n, what] = ROW_UNITS[row];
    log(`  ! ${what} [${system}] failed: ${(err as Error).message}`);
    failed(ctx, n, row, what, system, unit, err);
    return false;
  }
}

async function deletePrefix(ctx: BenchContext, prefix: string): Promise<void> {
  try {
    const n = await ctx.raw.deletePrefix(prefix);
    if (n) log(`  deleted ${n} keys under ${prefix}`);
  } catch (err) {
    log(`  could not delete ${prefix}: ${(err as Error).message}`);
  }
}

async function benchRoset(ctx: BenchContext, binding: string, hasFlag: boolean): Promise<void> {
  if (!DAEMON_ROWS.some((r) => ctx.opts.rows.has(r))) return;
  const system = `roset (${binding})`;
  const prefix = `${ctx.runPrefix}roset-${binding}/`;
  const start: RosetStart = {
    dir: path.join(ctx.root, `roset-${binding}`), binding, hasBindingFlag: hasFlag,
    storeUrl: `s3://${ctx.s3.bucket}/${prefix}`, s3: ctx.s3,
  };
  log(`${system}: starting roset-mount on ${start.dir}/mnt, store s3://${ctx.s3.bucket}/${prefix}`);
  let h: DaemonHolder;
  try {
    h = { d: await startRoset(start), start };
  } catch (err) {
    for (const row of DAEMON_ROWS) await attempt(ctx, row, system, async () => { throw err; });
    return;
  }
  try {
    await attempt(ctx, 'write', system, () => writeRow(ctx, system, path.join(h.d.mnt, 'write'), true));
    await attempt(ctx, 'commit', system, () => commitRow(ctx, h.d, system));
    await attempt(ctx, 'latency', system, () => latencyRow(ctx, h.d, system));
    await attempt(ctx, 'small', system, () => smallRow(ctx, system, path.join(h.d.mnt, 'small'), ctx.opts.smallFiles, h.d));
    await attempt(ctx, 'durable', system, () => durableRow(ctx, {
      system, mnt: h.d.mnt, pid: () => h.d.pid,
      // A committed folder leaves as a whole by rmdir (docs/SEMANTICS.md, "Removing
      // committed folders"); a recursive rm would first unlink its files (EROFS).
      removeFolder: (dir) => rmdirSync(dir),
      durable: async (folder) => {
        const node = await h.d.client.resolvePath(`/${folder}`);
        if (!node) throw new Error(`/${folder} made through the mount is unknown to the API`);
        const c = await h.d.client.commit(node.id);
        return (await waitCommit(h.d.client, c.id, 20, 3_600_000)).doneEpochMs;
      },
    }));
    await attempt(ctx, 'read', system, () => readRow(ctx, h, system, prefix));
    await attempt(ctx, 'parallel-read', system, async () => {
      const seeds = await writeParallelFiles(ctx, path.join(h.d.mnt, 'parallel'));
      const node = await h.d.client.resolvePath('/parallel');
      if (!node) throw new Error('/parallel is unknown to the API');
      const c = await h.d.client.commit(node.id);
      await waitCommit(h.d.client, c.id, 50, 3_600_000);
      const manifest = await h.d.client.getManifest(c.id);
      const keys = seeds.map((_, i) => {
        const f = manifest.files.find((x) => x.path === parallelName(i));
        if (!f) throw new Error(`${parallelName(i)} is not in the manifest of /parallel`);
        return prefix + f.key;
      });
      await parallelReadRow(ctx, {
        system, isRoset: true, seeds, keys,
        files: () => seeds.map((_, i) => path.join(h.d.mnt, 'parallel', parallelName(i))),
        coldRestart: async () => {
          await h.d.stop();
          rmSync(h.d.cacheDir, { recursive: true, force: true });
          h.d = await startRoset(h.start);
        },
      });
    });
  } finally {
    await h.d.stop();
    rmSync(start.dir, { recursive: true, force: true });
    await deletePrefix(ctx, prefix);
  }
}

async function benchPeer(ctx: BenchContext, name: 's3fs' | 'rclone', readKey: string | null, readSeed: number): Promise<void> {
  const dir = path.join(ctx.root, name);
  const prefix = `${ctx.runPrefix}peers/`;
  log(`${name}: mounting s3://${ctx.s3.bucket}/${prefix}`);
  let m: Mounted;
  try {
    m = name === 's3fs' ? await startS3fs(dir, ctx.s3, prefix) : await startRclone(dir, ctx.s3, prefix);
  } catch (err) {
    for (const row of ['write', 'read', 'small'] as RowName[]) await attempt(ctx, row, name, async () => { throw err; });
    return;
  }
  try {
    await attempt(ctx, 'write', name, () => writeRow(ctx, name, path.join(m.mnt, `${name}-write`), false));
    if (readKey) await attempt(ctx, 'read', name, () => peerReadRow(ctx, m, name, readKey, readSeed));
    await attempt(ctx, 'small', name, async () => {
      const dir2 = path.join(m.mnt, `${name}-small`);
      try {
        await smallRow(ctx, name, dir2, ctx.opts.peerSmallFiles, null);
      } finally {
        // Through the mount, so rclone drops its pending uploads instead of running them later.
        rmSync(dir2, { recursive: true, force: true });
      }
    });
  } finally {
    await m.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Rows for a peer that could not run at all, each saying why. */
function skipped(ctx: BenchContext, system: string, rows: RowName[], why: string): void {
  for (const row of rows) {
    if (!ctx.opts.rows.has(row)) continue;
    const [unit, n, what] = ROW_UNITS[row];
    add(ctx, { row: n, id: row, what, system, unit, value: null, reference: { what: '', value: null }, ratio: null, target: null, skipped: why });
  }
}

/**
 * JuiceFS with `--writeback` and SQLite metadata on the run's S3 server: rows 1, 5, 10,
 * 4 and 9. Its volume's keys (`roset-bench-<id>/`) are deleted whatever happens.
 */
async function benchJuiceFS(ctx: BenchContext, readKey: string | null, runId: string): Promise<void> {
  const system = 'juicefs';
  const rows = PEER_ROWS.juicefs;
  const found = juicefsBinary();
  if (found.bin === null) {
    log(`JuiceFS SKIPPED: ${found.why}`);
    skipped(ctx, system, rows, found.why);
    return;
  }
  const bin = found.bin;
  const name = `roset-bench-${runId.slice(-8).toLowerCase()}`;
  const dir = path.join(ctx.root, 'juicefs');
  onCleanup(`JuiceFS keys under ${name}/`, async () => { await ctx.raw.deletePrefix(`${name}/`); });
  log(`${system}: formatting volume ${name} (SQLite metadata, trash off) on s3://${ctx.s3.bucket}/${name}/, mounting with --writeback`);
  let h: JuiceFSHolder;
  try {
    const v = formatJuiceFS(bin, dir, ctx.s3, name);
    h = { v, m: await mountJuiceFS(v) };
  } catch (err) {
    for (const row of rows) await attempt(ctx, row, system, async () => { throw err; });
    await deletePrefix(ctx, `${name}/`);
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  const drained = () => waitDrained(h.m, 50, 3_600_000, epochNow);
  try {
    await attempt(ctx, 'write', system, async () => {
      await writeRow(ctx, system, path.join(h.m.mnt, 'write'), false);
      await drained();
    });
    // Files stay until the volume goes: deleting them through JuiceFS deletes their
    // blocks in the background, under the rows that follow.
    await attempt(ctx, 'small', system, () => smallRow(ctx, system, path.join(h.m.mnt, 'small'), ctx.opts.smallFiles, null, h.m));
    await attempt(ctx, 'durable', system, () => durableRow(ctx, {
      system, mnt: h.m.mnt, pid: () => h.m.servePid, durable: async () => drained(), keepFiles: true, note: JUICEFS_DURABILITY,
    }));
    if (readKey) await attempt(ctx, 'read', system, () => juicefsReadRow(ctx, h, system, readKey));
    await attempt(ctx, 'parallel-read', system, async () => {
      const pdir = path.join(h.m.mnt, 'parallel');
      const seeds = await writeParallelFiles(ctx, pdir);
      // The raw reference: the same bytes, uploaded as plain objects.
      const keys: string[] = [];
      for (const [i, seed] of seeds.entries()) {
        const lf = path.join(refDir(ctx), parallelName(i));
        await runIo(['write', lf, String(ctx.opts.parallelBytes), String(seed)]);
        keys.push(`${ctx.runPrefix}peers/${parallelName(i)}`);
        await ctx.raw.multipartUpload(keys.at(-1)!, lf, ctx.opts.rawPartBytes, ctx.opts.rawConcurrency);
        rmSync(lf, { force: true });
      }
      await parallelReadRow(ctx, {
        system, isRoset: false, seeds, keys,
        files: () => seeds.map((_, i) => path.join(h.m.mnt, 'parallel', parallelName(i))),
        coldRestart: () => remountJuiceFS(h),
      });
    });
  } finally {
    await h.m.stop();
    rmSync(dir, { recursive: true, force: true });
    await deletePrefix(ctx, `${name}/`);
  }
}

async function bench(opts: BenchOptions): Promise<BenchResult> {
  const startedAt = new Date();
  const loadStart = loadAvg();
  // Now, not at the end: others commit to this checkout while a long run goes on, and
  // what was measured is what `npm run build` compiled just before.
  const commit = commitInfo();
  const peers = [...opts.peers].filter((p) => PEER_ROWS[p].some((r) => opts.rows.has(r)));
  if (peers.length) {
    log(`installing peers if missing (scripts/bench-setup --peers${peers.includes('juicefs') ? '; a first JuiceFS build takes about 20 minutes' : ''})`);
    const setup = spawnSync(path.join(REPO, 'scripts', 'bench-setup'), ['--peers'], {
      stdio: 'inherit', env: { ...process.env, ...(peers.includes('juicefs') ? {} : { ROSET_BENCH_NO_JUICEFS: '1' }) },
    });
    if (setup.status !== 0) throw new Error('scripts/bench-setup --peers failed');
  }

  mkdirSync(opts.dir, { recursive: true });
  const root = mkdtempSync(path.join(opts.dir, 'roset-bench-'));
  // Registered first, so it runs last: after every mount on it is gone.
  onCleanup('run directory', async () => rmSync(root, { recursive: true, force: true }));
  log(`run directory ${root}; starting the S3 test server (scripts/s3-test-server start)`);
  const s3: S3Env = acquireServer();
  onCleanup('S3 server lease', async () => releaseServer(s3));
  const raw = new RawS3(s3);
  onCleanup('S3 client', async () => raw.close());
  const runId = `${startedAt.toISOString().replace(/[:.]/g, '-')}-${randomUUID().slice(0, 8)}`;
  const runPrefix = `bench/${runId}/`;
  onCleanup(`keys under ${runPrefix}`, async () => { await raw.deletePrefix(runPrefix); });
  log(`S3: ${s3.endpoint}, bucket ${s3.bucket}, prefix ${runPrefix}`);

  let seedN = Math.floor(Math.random() * 2 ** 20) * 1000;
  const ctx: BenchContext = { opts, s3, raw, root, runPrefix, results: [], errors: [], seed: () => ++seedN };
  const machine = describeMachine(root, serverVersion());

  const detected = detectBindings();
  const bindings = opts.bindings ?? detected.bindings;
  for (const b of bindings) if (!detected.bindings.includes(b)) ctx.errors.push(`binding ${b}: not offered by roset-mount --help`);
  log(`Roset bindings: ${bindings.join(', ')} (roset-mount offers ${detected.bindings.join(', ')}${detected.hasFlag ? ' via --fuse-binding' : '; no --fuse-binding flag yet'})`);

  for (const b of bindings) await benchRoset(ctx, b, detected.hasFlag);

  const fusePeers = peers.filter((p): p is 's3fs' | 'rclone' => p !== 'juicefs');
  // One object for the peers to read, put there by a raw upload before they mount
  // (s3fs and rclone read it; for JuiceFS it is the raw reference).
  let readKey: string | null = null;
  const readSeed = ctx.seed();
  if (peers.length && opts.rows.has('read')) {
    const lf = path.join(root, 'peer-read.bin');
    await runIo(['write', lf, String(opts.sizeBytes), String(readSeed)]);
    readKey = `${runPrefix}peers/read.bin`;
    log(`peers: uploading the ${(opts.sizeBytes / 2 ** 30).toFixed(2)} GiB object they will read`);
    await raw.multipartUpload(readKey, lf, opts.rawPartBytes, opts.rawConcurrency);
    rmSync(lf, { force: true });
  }
  for (const p of fusePeers) await benchPeer(ctx, p, readKey, readSeed);
  if (peers.includes('juicefs')) {
    await benchJuiceFS(ctx, readKey, runId);
    juicefsComparisons(ctx);
  }
  if (peers.length) await deletePrefix(ctx, `${runPrefix}peers/`);

  if (opts.rows.has('cluster')) {
    const b = bindings[0] ?? detected.bindings[0]!;
    await benchCluster(ctx, b, detected.hasFlag);
  }

  if (opts.rows.has('rss')) {
    for (const b of bindings) {
      const system = `roset (${b})`;
      const prefix = `${runPrefix}roset-${b}-rss/`;
      const start: RosetStart = {
        dir: path.join(root, `roset-${b}-rss`), binding: b, hasBindingFlag: detected.hasFlag,
        storeUrl: `s3://${s3.bucket}/${prefix}`, s3,
      };
      log(`${system}: memory row on a fresh daemon`);
      await attempt(ctx, 'rss', system, () => rssRow(ctx, start, system));
      rmSync(start.dir, { recursive: true, force: true });
      await deletePrefix(ctx, prefix);
    }
  }
  await deletePrefix(ctx, runPrefix);

  const finishedAt = new Date();
  const loadEnd = loadAvg();
  return {
    schema: 1,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationS: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    commit,
    machine,
    load: {
      start: loadStart, end: loadEnd,
      note: `1/5/15-min load averages on ${machine.cpus} CPUs; the S3 server, the daemons and other users' work share them; per-sample 1-min load is in rows[].samples.load1`,
    },
    options: { ...opts, rows: [...opts.rows], peers: [...opts.peers] },
    bindings: { available: detected.bindings, measured: bindings, flag: detected.hasFlag },
    s3: { endpoint: s3.endpoint, bucket: s3.bucket, prefix: runPrefix },
    rows: ctx.results.sort((a, b) => a.row - b.row),
    errors: ctx.errors,
  };
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  if (opts.docFrom) {
    const r = JSON.parse(readFileSync(opts.docFrom, 'utf8')) as BenchResult;
    updateDoc(DOC, r);
    process.stdout.write(`${textTable(r)}\n\ndocs/BENCHMARKS.md updated from ${opts.docFrom}\n`);
    return;
  }
  let cleaning: Promise<void> | null = null;
  const cleanup = (): Promise<void> => (cleaning ??= cleanupAll(log));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      log(`${sig}: stopping every mount and daemon of this run`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  let result: BenchResult;
  try {
    result = await bench(opts);
  } finally {
    log('cleaning up');
    await cleanup();
  }
  const file = writeResults(result, opts.out);
  process.stdout.write(`\n${textTable(result)}\n\n`);
  if (result.errors.length) process.stdout.write(`errors:\n${result.errors.map((e) => `  - ${e.split('\n')[0]}`).join('\n')}\n\n`);
  process.stdout.write(`results: ${file} (and ${path.join(opts.out, 'latest.json')})\n`);
  if (opts.writeDoc) {
    updateDoc(DOC, result);
    process.stdout.write(`docs/BENCHMARKS.md updated\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
