/**
 * What a benchmark result was measured on: the machine, the disk under the cache
 * directory, the software versions and the commit of the code.
 *
 * Owns: nothing on disk; it only reads /proc, /sys, `df`, `findmnt` and git.
 *
 * Invariant: every probe is best effort (a missing tool gives 'unknown', never a
 * failed run), and the commit records whether the working tree had uncommitted
 * changes under src/, bench/ or native/: on a shared checkout the built code can
 * differ from HEAD, and a result that hides that would mislead whoever compares it
 * later.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { juicefsBinary, REPO } from './systems.js';

function run(cmd: string, args: string[], cwd = REPO): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', cwd, timeout: 20_000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

export interface DiskInfo {
  dir: string;
  source: string;
  fstype: string;
  sizeGiB: number;
  availGiB: number;
  device: string;
  model: string;
  rotational: boolean | null;
}

export function diskOf(dir: string): DiskInfo {
  const real = realpathSync(dir);
  const [source = 'unknown', fstype = 'unknown'] = run('findmnt', ['-n', '-o', 'SOURCE,FSTYPE', '-T', real]).split(/\s+/);
  const df = run('df', ['-P', '-B1', real]).split('\n')[1]?.split(/\s+/) ?? [];
  const dev = path.basename(source);
  // A partition's queue settings live on its parent device.
  const blockDev = run('lsblk', ['-no', 'PKNAME', source]) || dev;
  const sys = (f: string): string => {
    try {
      return readFileSync(`/sys/block/${blockDev}/${f}`, 'utf8').trim();
    } catch {
      return '';
    }
  };
  const rot = sys('queue/rotational');
  const model = sys('device/model') || (blockDev.startsWith('vd') ? 'virtio block device' : 'unknown');
  return {
    dir: real, source, fstype,
    sizeGiB: Number(df[1] ?? NaN) / 2 ** 30, availGiB: Number(df[3] ?? NaN) / 2 ** 30,
    device: blockDev, model, rotational: rot === '' ? null : rot === '1',
  };
}

export interface MachineInfo {
  hostname: string;
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  os: string;
  node: string;
  cacheDisk: DiskInfo;
  fuse: string;
  /** `juicefs` is absent in results from before JuiceFS was a peer. */
  peers: { s3fs: string; rclone: string; juicefs?: string };
  s3Server: string;
}

export function describeMachine(cacheDir: string, s3Server: string): MachineInfo {
  const osRelease = (() => {
    try {
      return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'unknown';
    } catch {
      return 'unknown';
    }
  })();
  return {
    hostname: os.hostname(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: os.totalmem() / 2 ** 30,
    kernel: `${os.type()} ${os.release()}`,
    os: osRelease,
    node: process.version,
    cacheDisk: diskOf(cacheDir),
    fuse: run('fusermount3', ['--version']) || 'unknown',
    peers: {
      s3fs: run('s3fs', ['--version']).split('\n')[0] || 'not installed',
      rclone: run('rclone', ['version']).split('\n')[0] || 'not installed',
      juicefs: (() => {
        const j = juicefsBinary();
        return j.bin ? run(j.bin, ['--version']).split('\n')[0] || 'unknown version' : `not installed (${j.why})`;
      })(),
    },
    s3Server,
  };
}

export interface CommitInfo {
  sha: string;
  subject: string;
  date: string;
  /** Uncommitted changes under src/, bench/, native/, bin/ or package*.json when the bench was built. */
  dirtyPaths: string[];
}

export function commitInfo(): CommitInfo {
  const status = run('git', ['status', '--porcelain', '--', 'src', 'bench', 'native', 'bin', 'package.json', 'package-lock.json', 'binding.gyp']);
  return {
    sha: run('git', ['rev-parse', 'HEAD']) || 'unknown',
    subject: run('git', ['log', '-1', '--format=%s']),
    date: run('git', ['log', '-1', '--format=%cI']),
    dirtyPaths: status ? status.split('\n').map((l) => l.slice(3)) : [],
  };
}

export function loadAvg(): [number, number, number] {
  const [a = 0, b = 0, c = 0] = os.loadavg();
  return [a, b, c];
}
