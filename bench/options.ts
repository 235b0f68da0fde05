/**
 * `npm run bench -- [flags]`: the benchmark's command line.
 *
 * Owns: the defaults, which are the sizes of issue 6 and design §7 (2 GiB writes and
 * reads, 1 GiB commit, 10,000 files of 4 KiB, 10 GiB for memory; for the multi-node
 * group, 3 agents writing 256 MiB each and 100 commits), and `--quick`, a short
 * version for developers. A flag given explicitly always beats `--quick`.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { positive, positiveInt } from '../src/util/cli-args.js';
import { REPO } from './systems.js';

/**
 * Row groups; `cluster` is the multi-node group (rows 7 and 8: `roset serve` and 3
 * agents); `parallel-read` is row 9 (N files read cold at once), `durable` row 10
 * (start of writing → durable in the bucket).
 */
export const ROWS = ['write', 'commit', 'latency', 'read', 'small', 'rss', 'cluster', 'parallel-read', 'durable'] as const;
export type RowName = (typeof ROWS)[number];

/** The peers, in the order they run. */
export const PEERS = ['s3fs', 'rclone', 'juicefs'] as const;
export type PeerName = (typeof PEERS)[number];

export interface BenchOptions {
  sizeBytes: number;
  commitBytes: number;
  rssBytes: number;
  rssFiles: number;
  smallFiles: number;
  smallBytes: number;
  peerSmallFiles: number;
  commits: number;
  /** Multi-node group: bytes each of the 3 agents writes (row 8). */
  clusterBytes: number;
  /** Multi-node group: commit() calls timed on the cluster and on the embedded daemon (row 7). */
  clusterCommits: number;
  /** Row 9: files read at once, and the size of each. */
  parallelFiles: number;
  parallelBytes: number;
  repeat: number;
  /** The peers to run (`--peers a,b`; none with `--no-peers`). */
  peers: Set<PeerName>;
  bindings: string[] | null;
  rows: Set<RowName>;
  dir: string;
  out: string;
  writeDoc: boolean;
  docFrom: string | null;
  quick: boolean;
  rawPartBytes: number;
  rawConcurrency: number;
  rawRangeBytes: number;
  rawPutConcurrency: number;
}

const GiB = 2 ** 30;
const MiB = 2 ** 20;

function list(v: string): string[] {
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

/** Rounds a size to whole MiB: every write is made of 1 MiB blocks. */
function mib(bytes: number): number {
  return Math.max(MiB, Math.round(bytes / MiB) * MiB);
}

export function parseOptions(argv: string[]): BenchOptions {
  const program = new Command()
    .name('npm run bench --')
    .description('Roset benchmark: every row measured against its reference in the same run (issue 6, design §7)')
    .option('--size-gib <n>', 'sequential write and cold/warm read size', positive, 2)
    .option('--commit-gib <n>', 'file size for last close → commit completed', positive, 1)
    .option('--rss-gib <n>', 'bytes written while the daemon RSS is sampled', positive, 10)
    .option('--rss-files <n>', 'split those bytes over this many files (a sharded checkpoint)', positiveInt, 1)
    .option('--small-files <n>', 'small files created and committed through Roset', positiveInt, 10_000)
    .option('--small-kib <n>', 'size of each small file', positive, 4)
    .option('--peer-small-files <n>', 'small files created through s3fs and rclone (s3fs does about 100/s)', positiveInt, 1000)
    .option('--commits <n>', 'commit() calls timed for p50/p99', positiveInt, 200)
    .option('--cluster-mib <n>', 'multi-node group: MiB each of the 3 agents writes into one folder (row 8)', positive, 256)
    .option('--cluster-commits <n>', 'multi-node group: commit() calls timed with 3 agents, and on the embedded daemon (row 7)', positiveInt, 100)
    .option('--no-cluster', 'skip the multi-node group (PostgreSQL, roset serve and 3 agents)')
    .option('--repeat <n>', 'samples per throughput row (median reported; ref and system alternate)', positiveInt, 3)
    .option('--quick', 'short run: 0.25 GiB sizes, 1 GiB RSS write, 1,000 small files, 50 commits, 64 MiB per agent, 32 MiB parallel files, 1 sample')
    .option('--parallel-files <n>', 'row 9: files read cold at once', positiveInt, 8)
    .option('--parallel-mib <n>', 'row 9: size of each of those files', positive, 256)
    .option('--peers <list>', `peers to run: ${PEERS.join(',')} (default: all)`, list)
    .option('--no-peers', `skip every peer (${PEERS.join(', ')})`)
    .option('--bindings <list>', 'Roset FUSE bindings to run (default: every one roset-mount --help offers)', list)
    .option('--rows <list>', `rows to run: ${ROWS.join(',')}`, list)
    .option('--dir <dir>', 'where caches and reference files go: the "cache disk"', os.tmpdir())
    .option('--out <dir>', 'where the JSON results go', path.join(REPO, 'bench-results'))
    .option('--write-doc', 'rewrite the results section of docs/BENCHMARKS.md from this run')
    .option('--doc-from <json>', 'do not run: rewrite docs/BENCHMARKS.md from a results file')
    .option('--raw-part-mib <n>', 'raw multipart reference: part size', positive, 64)
    .option('--raw-concurrency <n>', 'raw multipart and ranged-GET reference: requests in flight', positiveInt, 8)
    .option('--raw-range-mib <n>', 'raw ranged-GET reference: range size', positive, 16)
    .option('--raw-put-concurrency <n>', 'raw small-object PUT reference: requests in flight', positiveInt, 16)
    .showHelpAfterError();
  program.parse(argv, { from: 'user' });
  const o = program.opts();
  const quick = Boolean(o.quick);
  // --quick only changes what the user did not set.
  const pick = <T>(name: string, quickValue: T): T => (quick && program.getOptionValueSource(name) !== 'cli' ? quickValue : o[name] as T);
  const rows = (o.rows as string[] | undefined) ?? [...ROWS];
  for (const r of rows) if (!(ROWS as readonly string[]).includes(r)) throw new InvalidArgumentError(`unknown row ${r}; rows are ${ROWS.join(', ')}`);
  const selected = new Set(rows as RowName[]);
  if (o.cluster === false) selected.delete('cluster');
  // `--peers a,b` gives a list, `--no-peers` false, neither leaves it unset.
  const peerList = o.peers === false ? [] : (o.peers as string[] | undefined) ?? [...PEERS];
  for (const p of peerList) if (!(PEERS as readonly string[]).includes(p)) throw new InvalidArgumentError(`unknown peer ${p}; peers are ${PEERS.join(', ')}`);
  return {
    sizeBytes: mib(pick<number>('sizeGib', 0.25) * GiB),
    commitBytes: mib(pick<number>('commitGib', 0.25) * GiB),
    rssBytes: mib(pick<number>('rssGib', 1) * GiB),
    rssFiles: o.rssFiles as number,
    smallFiles: pick<number>('smallFiles', 1000),
    smallBytes: Math.round((o.smallKib as number) * 1024),
    peerSmallFiles: pick<number>('peerSmallFiles', 200),
    commits: pick<number>('commits', 50),
    clusterBytes: mib(pick<number>('clusterMib', 64) * MiB),
    clusterCommits: pick<number>('clusterCommits', 50),
    parallelFiles: o.parallelFiles as number,
    parallelBytes: mib(pick<number>('parallelMib', 32) * MiB),
    repeat: pick<number>('repeat', 1),
    peers: new Set(peerList as PeerName[]),
    bindings: (o.bindings as string[] | undefined) ?? null,
    rows: selected,
    dir: path.resolve(o.dir as string),
    out: path.resolve(o.out as string),
    writeDoc: Boolean(o.writeDoc),
    docFrom: (o.docFrom as string | undefined) ? path.resolve(o.docFrom as string) : null,
    quick,
    rawPartBytes: mib((o.rawPartMib as number) * MiB),
    rawConcurrency: o.rawConcurrency as number,
    rawRangeBytes: mib((o.rawRangeMib as number) * MiB),
    rawPutConcurrency: o.rawPutConcurrency as number,
  };
}
