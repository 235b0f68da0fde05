/**
 * Smoke test of the benchmark harness (bench/): that it parses its flags, finds the
 * bindings, writes and checks its data, renders its table and doc section, and that a
 * tiny run end to end (one Roset binding, no peers, on the S3 test server) produces
 * every row, the multi-node group's included (a throwaway PostgreSQL, `roset serve`
 * and 3 agents), and leaves no mount, process, PostgreSQL cluster or key behind.
 *
 * Invariant: nothing here times anything or asserts a speed. Benchmarks are measured
 * by `npm run bench`, never by a test (design §7).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseOptions } from '../../bench/options.js';
import { docSection, markdownTable, textTable, updateDoc, type BenchResult } from '../../bench/report.js';
import { RawS3 } from '../../bench/s3.js';
import { parseBindings } from '../../bench/systems.js';
import { fuseMountpoints } from '../../src/util/mounts.js';
import { REPO } from '../support/daemon.js';
import { s3TestConfig } from '../support/s3.js';

const run = promisify(execFile);

/** Command lines of running processes that name any of `paths`. */
function processesMentioning(paths: string[]): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (paths.some((p) => cmd.includes(p))) out.push(`${pid}: ${cmd}`);
  }
  return out;
}
const IO = path.join(REPO, 'bench', 'dist', 'bench', 'io.js');
const RUN = path.join(REPO, 'bench', 'dist', 'bench', 'run.js');
const TSC = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');

// The harness is not part of `npm run build`: compile it here (as `npm run bench`
// does), so the programs run below are the code in the tree.
beforeAll(async () => {
  await run(process.execPath, [TSC, '-p', path.join(REPO, 'bench', 'tsconfig.json')], { timeout: 120_000 });
}, 180_000);

function requireBuild(): void {
  if (!existsSync(path.join(REPO, 'dist', 'cli', 'roset-mount.js'))) throw new Error('dist/ is missing: run `npm run build` before the tests');
}

describe('bench options', () => {
  it('defaults to the sizes of issue 6', () => {
    const o = parseOptions([]);
    expect(o.sizeBytes).toBe(2 * 2 ** 30);
    expect(o.commitBytes).toBe(2 ** 30);
    expect(o.rssBytes).toBe(10 * 2 ** 30);
    expect(o.smallFiles).toBe(10_000);
    expect(o.smallBytes).toBe(4096);
    expect(o.repeat).toBe(3);
    expect([...o.peers]).toEqual(['s3fs', 'rclone', 'juicefs']);
    expect(o.parallelFiles).toBe(8);
    expect(o.parallelBytes).toBe(256 * 2 ** 20);
    expect(o.rows.has('parallel-read') && o.rows.has('durable')).toBe(true);
    expect(o.rows.has('cluster')).toBe(true);
    expect(o.clusterBytes).toBe(256 * 2 ** 20);
    expect(o.clusterCommits).toBe(100);
  });

  it('selects or skips the multi-node group', () => {
    expect([...parseOptions(['--rows', 'cluster']).rows]).toEqual(['cluster']);
    expect(parseOptions(['--no-cluster']).rows.has('cluster')).toBe(false);
    expect(parseOptions(['--no-cluster']).rows.has('write')).toBe(true);
    const q = parseOptions(['--quick', '--cluster-commits', '7']);
    expect(q.clusterBytes).toBe(64 * 2 ** 20);
    expect(q.clusterCommits).toBe(7);
  });

  it('selects peers, or none', () => {
    expect([...parseOptions(['--peers', 'juicefs']).peers]).toEqual(['juicefs']);
    expect([...parseOptions(['--peers', 's3fs,juicefs']).peers]).toEqual(['s3fs', 'juicefs']);
    expect(parseOptions(['--no-peers']).peers.size).toBe(0);
    expect(() => parseOptions(['--peers', 'juicefs,nope'])).toThrow(/unknown peer/);
    expect([...parseOptions(['--rows', 'parallel-read,durable', '--parallel-files', '4', '--parallel-mib', '64']).rows]).toEqual(['parallel-read', 'durable']);
    expect(parseOptions(['--parallel-files', '4']).parallelFiles).toBe(4);
    expect(parseOptions(['--quick']).parallelBytes).toBe(32 * 2 ** 20);
  });

  it('--quick shrinks what was not set, and an explicit flag beats it', () => {
    const o = parseOptions(['--quick', '--size-gib', '0.5']);
    expect(o.sizeBytes).toBe(2 ** 29);
    expect(o.rssBytes).toBe(2 ** 30);
    expect(o.repeat).toBe(1);
    expect(() => parseOptions(['--rows', 'write,nope'])).toThrow(/unknown row/);
  });
});

describe('binding detection', () => {
  it('falls back to fuse-native when roset-mount has no --fuse-binding', () => {
    expect(parseBindings('Options:\n  --store <url>  store\n  -h, --help  help\n')).toEqual({ bindings: ['fuse-native'], hasFlag: false });
  });

  it('reads the choices of --fuse-binding, across commander line wraps', () => {
    const help = [
      'Options:',
      '  --fuse-binding <name>      FUSE binding [env ROSET_FUSE_BINDING] (choices:',
      '                             "native", "fuse-native", default: "native")',
      '  --log-level <level>        log level (choices: "info", "debug")',
    ].join('\n');
    expect(parseBindings(help)).toEqual({ bindings: ['native', 'fuse-native'], hasFlag: true });
  });
});

describe('io worker', () => {
  it('reads back what it wrote, and refuses bytes written with another seed', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-bench-io-'));
    try {
      const f = path.join(dir, 'a.bin');
      const size = 3 * 2 ** 20 + 123;
      const w = JSON.parse((await run(process.execPath, [IO, 'write', f, String(size), '7'])).stdout);
      expect(w.bytes).toBe(size);
      const r = JSON.parse((await run(process.execPath, [IO, 'read', f, '7'])).stdout);
      expect(r.bytes).toBe(size);
      await expect(run(process.execPath, [IO, 'read', f, '8'])).rejects.toThrow(/wrong header/);
      const s = JSON.parse((await run(process.execPath, [IO, 'small', path.join(dir, 's'), '5', '4096', '9'])).stdout);
      expect(s.files).toBe(5);
      const bodies = readdirSync(path.join(dir, 's')).map((n) => readFileSync(path.join(dir, 's', n)).toString('hex'));
      expect(new Set(bodies).size).toBe(5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});

const FAKE: BenchResult = {
  schema: 1, startedAt: '2026-01-01T00:00:00.000Z', finishedAt: '2026-01-01T00:10:00.000Z', durationS: 600,
  commit: { sha: 'abcdef0123456789', subject: 'a commit', date: '', dirtyPaths: ['src/x.ts'] },
  machine: {
    hostname: 'h', cpus: 2, cpuModel: 'cpu', memoryGiB: 8, kernel: 'Linux 6', os: 'Debian', node: 'v20',
    cacheDisk: { dir: '/tmp', source: '/dev/vda', fstype: 'ext4', sizeGiB: 100, availGiB: 50, device: 'vda', model: 'virtio', rotational: false },
    fuse: '3.14', peers: { s3fs: 's3fs 1.90', rclone: 'rclone 1.60' }, s3Server: 'ceph 16',
  },
  load: { start: [1, 1, 1], end: [2, 2, 2], note: 'n' },
  options: { sizeBytes: 2 ** 31, commitBytes: 2 ** 30, smallFiles: 10, smallBytes: 4096, peerSmallFiles: 5, commits: 3, rssBytes: 2 ** 33, repeat: 1 },
  bindings: { available: ['fuse-native'], measured: ['fuse-native'], flag: false },
  s3: { endpoint: 'http://x', bucket: 'b', prefix: 'bench/r/' },
  rows: [
    { row: 1, id: 'write', what: 'seq write', system: 'roset (fuse-native)', unit: 'MB/s', value: 300, reference: { what: 'cache disk', value: 1000 }, ratio: 0.3, target: { text: '≥ 0.9 × ref', pass: false } },
    { row: 3, id: 'latency-p99', what: 'p99', system: 'roset (fuse-native)', unit: 'ms', value: 9, reference: { what: 'health', value: 1 }, ratio: 9, target: { text: '< 50 ms', pass: true } },
    { row: 4, id: 'read', what: 'cold read', system: 's3fs', unit: 'MB/s', value: null, reference: { what: '', value: null }, ratio: null, target: null, error: 'it broke' },
    { row: 10, id: 'durable', what: 'durable', system: 'juicefs', unit: 's', value: null, reference: { what: '', value: null }, ratio: null, target: null, skipped: 'no Go' },
  ],
  errors: ['cold read [s3fs]: it broke'],
};

describe('report', () => {
  it('shows measured, reference, ratio, target and result for every row, errors included', () => {
    const t = textTable(FAKE);
    expect(t).toMatch(/300 MB\/s\s+1000 MB\/s \(cache disk\)\s+0\.30\s+≥ 0\.9 × ref\s+MISS/);
    expect(t).toMatch(/9\.0 ms .* pass/);
    expect(t).toMatch(/error: it broke .* ERROR/);
    expect(t).toMatch(/skipped: no Go .* SKIPPED/);
    expect(docSection(FAKE)).toContain('Skipped: juicefs: no Go.');
    expect(markdownTable(FAKE).split('\n')).toHaveLength(2 + FAKE.rows.length);
    const s = docSection(FAKE);
    expect(s).toContain('`abcdef012345`');
    expect(s).toContain('uncommitted changes');
  });

  it('rewrites only the generated section of the doc', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-bench-doc-'));
    try {
      const f = path.join(dir, 'B.md');
      writeFileSync(f, '# Bench\n\nhand-written\n');
      updateDoc(f, FAKE);
      updateDoc(f, { ...FAKE, startedAt: '2027-01-01T00:00:00.000Z' });
      const doc = readFileSync(f, 'utf8');
      expect(doc.startsWith('# Bench\n\nhand-written\n')).toBe(true);
      expect(doc.match(/bench:results:begin/g)).toHaveLength(1);
      expect(doc).toContain('2027-01-01');
      expect(doc).not.toContain('2026-01-01T00:00:00.000Z to');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});

describe('bench smoke run', () => {
  it('runs every row with tiny sizes on one binding and leaves nothing behind', async () => {
    requireBuild();
    const s3 = s3TestConfig();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-bench-smoke-'));
    try {
      const args = [RUN, '--quick', '--no-peers', '--bindings', 'fuse-native', '--size-gib', '0.01', '--commit-gib', '0.01',
        '--rss-gib', '0.02', '--small-files', '20', '--commits', '5', '--cluster-mib', '2', '--cluster-commits', '3', '--parallel-files', '3', '--parallel-mib', '2',
        '--dir', dir, '--out', path.join(dir, 'out')];
      // The test server is the test run's (its lease); the bench uses it as an external one.
      await run(process.execPath, args, { env: { ...process.env, ...s3.env }, timeout: 600_000, maxBuffer: 64 << 20 });
      const r = JSON.parse(readFileSync(path.join(dir, 'out', 'latest.json'), 'utf8')) as BenchResult;
      expect(r.errors).toEqual([]);
      expect(r.rows.map((x) => x.id).sort()).toEqual(
        ['cluster-commit', 'cluster-latency-p50', 'cluster-latency-p99', 'commit', 'durable', 'latency-p50', 'latency-p99', 'read-cold',
          'read-parallel', 'read-warm', 'rss-commit', 'rss-write', 'small-commit', 'small-create', 'small-durable', 'write'].sort());
      for (const x of r.rows) {
        expect(x.value, x.id).toBeGreaterThan(0);
        expect(x.reference.value, x.id).toBeGreaterThan(0);
      }
      expect(r.machine.cpus).toBeGreaterThan(0);
      // The multi-node rows ran on PostgreSQL, with their embedded reference.
      const cl = r.rows.find((x) => x.id === 'cluster-latency-p50')!;
      expect(cl.system).toBe('roset serve + 3 agents (fuse-native)');
      expect((cl.extra!.latenciesMs as number[]).length).toBe(3);
      expect((cl.extra!.embeddedLatenciesMs as number[]).length).toBe(3);
      const pgDir = (cl.extra!.database as { dir: string }).dir;
      expect(pgDir).toMatch(/roset-bench-pg-/);
      const cc = r.rows.find((x) => x.id === 'cluster-commit')!;
      expect((cc.extra!.samples as Array<{ stats: { files: number } }>)[0]!.stats.files).toBe(3);
      // No process of the run is left: daemons, agents, roset serve, PostgreSQL.
      expect(existsSync(pgDir)).toBe(false);
      expect(processesMentioning([dir, pgDir])).toEqual([]);
      expect(fuseMountpoints().filter((m) => m.startsWith(dir))).toEqual([]);
      // Only the results are left: the run directory was removed, and the run's keys.
      expect(readdirSync(dir)).toEqual(['out']);
      const raw = new RawS3({ endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, leased: false });
      try {
        expect(await raw.deletePrefix(r.s3.prefix)).toBe(0);
      } finally {
        raw.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});
