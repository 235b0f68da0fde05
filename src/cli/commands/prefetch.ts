/**
 * `roset prefetch PATH | --ref NAME`: warms this node's read cache with a folder (or a
 * file) before a job starts, so that its resume reads local disk rather than the bucket.
 *
 * How: every regular file under the target is read through this machine's mountpoint,
 * several files at once, and the bytes are dropped. The daemon serving the mount
 * fetches, verifies and caches each object as for any reader, so nothing here trusts
 * or writes the cache itself, and it works the same on the embedded daemon and on an
 * agent of `roset serve`. With `--ref`, the target is the folder of the ref's commit.
 *
 * Invariants: the command only reads (a staged file is read from the local disk, which
 * costs nothing from the bucket); a file staged on another node (EREMOTE) is skipped
 * and reported, never fatal; any other read error fails the command, with the file
 * named. Before reading anything it compares the committed bytes of the target with
 * the `--cache-size` of the daemon serving the mountpoint (from its daemon.json): a
 * target that cannot stay cached whole fails with PREFETCH_EXCEEDS_CACHE, and nothing
 * is read, unless `--force` (then the LRU keeps its last files; staged bytes are never
 * evicted). A daemon whose limit the CLI cannot see (not this state dir's daemon, or
 * one of an earlier release) is not checked, and the command says so on stderr.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { open, readdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { RosetError } from '../../errors/index.js';
import { readDaemonState } from '../daemon-state.js';
import type { RosetClient } from '../../sdk/index.js';
import { fuseMountpoints } from '../../util/mounts.js';
import { UsageError, action, clientFor, parsePositiveInt, printJson, println } from '../context.js';
import { ProgressLine, formatBytes, formatDuration } from '../format.js';
import { mapPath } from '../paths.js';

interface PrefetchOptions {
  ref?: string;
  concurrency: number;
  force?: boolean;
  json?: boolean;
}

export interface PrefetchReport {
  /** The local path that was read. */
  path: string;
  files: number;
  bytes: number;
  seconds: number;
  /** Files staged on another node (EREMOTE): not readable here, not prefetched. */
  skipped: string[];
}

const READ_BYTES = 4 << 20;

export function registerPrefetch(program: Command): void {
  program
    .command('prefetch')
    .description('Warm this node\'s read cache with a folder or a ref\'s checkpoint, so that resuming from it reads local disk')
    .argument('[path]', 'folder or file under a mountpoint of this machine (e.g. /mnt/roset/ckpt/step-9)')
    .option('--ref <name>', 'prefetch the folder of the commit this ref points at, instead of PATH')
    .addOption(new Option('--concurrency <n>', 'files read at once').default(4).argParser(parsePositiveInt))
    .option('--force', 'read the target even if its committed files are larger than the daemon\'s --cache-size (the files read first are evicted as the last are cached); without it such a target fails with PREFETCH_EXCEEDS_CACHE before anything is read')
    .option('--json', 'print the totals as JSON')
    .action(action(async (input: string | undefined, opts: PrefetchOptions, cmd: Command) => {
      if ((input === undefined) === (opts.ref === undefined)) throw new UsageError('give either PATH or --ref NAME');
      const client = clientFor(cmd);
      const local = opts.ref !== undefined ? await refFolder(client, opts.ref) : await localTarget(client, input!);
      const files = await filesUnder(local);
      if (!opts.force) checkFits(local, files, cacheLimitOf(client.config.stateDir, local));
      const report = await prefetch(local, files, opts.concurrency, new ProgressLine());
      if (opts.json) {
        printJson(report);
        return;
      }
      println(`prefetched ${report.files} file${report.files === 1 ? '' : 's'}, ${formatBytes(report.bytes)} in ${formatDuration(report.seconds)}  ${report.path}`);
      for (const s of report.skipped) println(`skipped (staged on another node): ${s}`);
    }));
}

/** PATH as a path on this machine, under a mountpoint of it. */
async function localTarget(client: RosetClient, input: string): Promise<string> {
  const t = await mapPath(client, input);
  if (t.local) return t.local;
  return path.join(await mountpointHere(client, t.mount?.id), t.path);
}

/** The local folder of the commit `name` points at. */
async function refFolder(client: RosetClient, name: string): Promise<string> {
  const ref = await client.getRef(name);
  if (!ref) throw new RosetError('REF_NOT_FOUND', `No ref named ${name}`);
  const commit = await client.getCommit(ref.commitId);
  return path.join(await mountpointHere(client, commit.mountId), commit.path);
}

/** A mountpoint of `mountId` (the default mount when undefined) mounted on this machine. */
async function mountpointHere(client: RosetClient, mountId: string | undefined): Promise<string> {
  const mounts = await client.listAll((o) => client.listMounts(o));
  const mount = mountId === undefined ? mounts[0] : mounts.find((m) => m.id === mountId);
  const here = new Set(fuseMountpoints());
  const mp = mount?.mountpoints.find((p) => here.has(p));
  if (!mp) throw new RosetError('NOT_MOUNTED', `mount ${mount?.id ?? mountId ?? '(default)'} is not mounted on this machine: prefetch reads through a local mountpoint`);
  return mp;
}

interface TargetFile {
  file: string;
  size: number;
  /**
   * Shown without any write permission. Every committed file is (the mount shows them
   * so), hence every committed file counts against the cache; a staged file counts
   * only if it lost its write bits (or the mount is read-only), which errs towards
   * refusing, never towards churning the cache.
   */
  readOnly: boolean;
}

/** The regular files under `root` (or `root` itself), with their sizes. */
async function filesUnder(root: string): Promise<TargetFile[]> {
  const st = await stat(root);
  if (st.isFile()) return [{ file: root, size: st.size, readOnly: (st.mode & 0o222) === 0 }];
  if (!st.isDirectory()) throw new RosetError('INVALID_PATH', `${root} is neither a file nor a folder`);
  const out: TargetFile[] = [];
  for (const e of await readdir(root, { withFileTypes: true })) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) out.push(...await filesUnder(p));
    else if (e.isFile()) {
      const s = await stat(p);
      out.push({ file: p, size: s.size, readOnly: (s.mode & 0o222) === 0 });
    }
  }
  return out;
}

/** What the CLI knows of the read cache of the daemon serving `target`. */
type CacheLimit =
  | { kind: 'known'; maxBytes: number; mountpoint: string }
  | { kind: 'unknown'; why: string };

/**
 * The `--cache-size` of the daemon serving `target`, from the daemon.json of this state
 * dir when that daemon runs and serves the mountpoint that holds `target`.
 */
function cacheLimitOf(stateDir: string, target: string): CacheLimit {
  const mp = fuseMountpoints().filter((m) => target === m || target.startsWith(m.endsWith('/') ? m : `${m}/`)).sort((a, b) => b.length - a.length)[0];
  if (!mp) return { kind: 'unknown', why: `${target} is under no FUSE mountpoint of this machine` };
  const d = readDaemonState(stateDir);
  if (!d || !d.running || d.mountpoint !== mp) return { kind: 'unknown', why: `the daemon serving ${mp} is not the one of state dir ${stateDir}` };
  if (d.cacheMaxBytes === undefined) return { kind: 'unknown', why: `the daemon serving ${mp} (an earlier release) does not tell its cache size` };
  return { kind: 'known', maxBytes: d.cacheMaxBytes, mountpoint: mp };
}

/** Refuses, before anything is read, a target whose committed files cannot all stay cached. */
function checkFits(root: string, files: TargetFile[], limit: CacheLimit): void {
  switch (limit.kind) {
    case 'unknown':
      process.stderr.write(`roset: warning: not checked against the read cache size: ${limit.why}\n`);
      return;
    case 'known': {
      const bytes = files.reduce((n, f) => n + (f.readOnly ? f.size : 0), 0);
      if (limit.maxBytes === 0 || bytes <= limit.maxBytes) return;
      throw new RosetError('PREFETCH_EXCEEDS_CACHE',
        `${root} holds ${formatBytes(bytes)} of committed files, more than the ${formatBytes(limit.maxBytes)} read cache of the daemon on ${limit.mountpoint} (--cache-size): they cannot all stay cached, so nothing was read; use --force to read them anyway, or raise --cache-size`,
        { path: root, bytes, cacheMaxBytes: limit.maxBytes });
    }
    default: {
      const never: never = limit;
      throw new Error(`unknown cache limit ${String(never)}`);
    }
  }
}

/** Reads `files` (those under `root`), `concurrency` at a time, drawing progress on a terminal. */
export async function prefetch(root: string, files: TargetFile[], concurrency: number, progress: ProgressLine): Promise<PrefetchReport> {
  const started = Date.now();
  const total = files.reduce((n, f) => n + f.size, 0);
  let bytes = 0;
  let done = 0;
  const skipped: string[] = [];
  const draw = (): void => {
    const secs = (Date.now() - started) / 1000;
    const rate = secs > 0.2 ? bytes / secs : 0;
    const share = total > 0 ? bytes / total : 1;
    const eta = rate > 0 ? `ETA ${formatDuration((total - bytes) / rate)}` : 'ETA -:--';
    progress.draw(`${String(Math.floor(share * 100)).padStart(3)}% ${done}/${files.length} files ${formatBytes(bytes)}/${formatBytes(total)} ${rate > 0 ? `${formatBytes(rate)}/s` : '- B/s'} ${eta}  ${root}`);
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    const buf = Buffer.allocUnsafe(READ_BYTES);
    while (next < files.length) {
      const f = files[next++]!;
      let fh;
      try {
        fh = await open(f.file, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EREMOTE') {
          skipped.push(f.file);
          done++;
          continue;
        }
        throw new RosetError('PREFETCH_READ_FAILED', `cannot open ${f.file}: ${(err as Error).message}`);
      }
      try {
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, null);
          if (bytesRead === 0) break;
          bytes += bytesRead;
          draw();
        }
      } catch (err) {
        throw new RosetError('PREFETCH_READ_FAILED', `reading ${f.file} failed: ${(err as Error).message}`);
      } finally {
        await fh.close();
      }
      done++;
      draw();
    }
  };
  draw();
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, files.length)) }, worker));
  progress.finish();
  return { path: root, files: done - skipped.length, bytes, seconds: (Date.now() - started) / 1000, skipped };
}
