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
 * named. What stays cached is the daemon's `--cache-size` LRU's business (staged bytes
 * are never evicted): a target larger than the cache ends with its last files cached.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { open, readdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { RosetError } from '../../errors/index.js';
import type { RosetClient } from '../../sdk/index.js';
import { fuseMountpoints } from '../../util/mounts.js';
import { UsageError, action, clientFor, parsePositiveInt, printJson, println } from '../context.js';
import { ProgressLine, formatBytes, formatDuration } from '../format.js';
import { mapPath } from '../paths.js';

interface PrefetchOptions {
  ref?: string;
  concurrency: number;
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
    .option('--json', 'print the totals as JSON')
    .action(action(async (input: string | undefined, opts: PrefetchOptions, cmd: Command) => {
      if ((input === undefined) === (opts.ref === undefined)) throw new UsageError('give either PATH or --ref NAME');
      const local = opts.ref !== undefined ? await refFolder(clientFor(cmd), opts.ref) : await localTarget(clientFor(cmd), input!);
      const report = await prefetch(local, opts.concurrency, new ProgressLine());
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

/** The regular files under `root` (or `root` itself), with their sizes. */
async function filesUnder(root: string): Promise<Array<{ file: string; size: number }>> {
  const st = await stat(root);
  if (st.isFile()) return [{ file: root, size: st.size }];
  if (!st.isDirectory()) throw new RosetError('INVALID_PATH', `${root} is neither a file nor a folder`);
  const out: Array<{ file: string; size: number }> = [];
  for (const e of await readdir(root, { withFileTypes: true })) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) out.push(...await filesUnder(p));
    else if (e.isFile()) out.push({ file: p, size: (await stat(p)).size });
  }
  return out;
}

/** Reads every file under `root`, `concurrency` at a time, drawing progress on a terminal. */
export async function prefetch(root: string, concurrency: number, progress: ProgressLine): Promise<PrefetchReport> {
  const started = Date.now();
  const files = await filesUnder(root);
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
