/**
 * The reference-model test (test/core/model.property.test.ts) through a real FUSE mount:
 * the same model, generators and runner, with node:fs calls on a running roset-mount
 * (the binding from ROSET_TEST_FUSE_BINDING) and commits through the HTTP API. Errno is
 * compared through `err.code`. Shorter: 20 sequences of up to 30 commands by default.
 *
 * Each sequence works in a folder of its own under the mount's root (the model's root),
 * on one daemon. What differs from the core run:
 * - the kernel answers some calls before the file system is asked (a path through a
 *   file is ENOTDIR, rename(p, p) is 0, a write through a read-only descriptor EBADF);
 *   the model knows (layer 'mount');
 * - the kernel keeps attributes for 1 s, so a file's write bits may still show right
 *   after a commit changed its state behind the mount: write bits are not compared;
 * - there is no store-failure injection through a daemon here (storeDown/storeUp are
 *   left out), and the seal timeout is 1 s.
 *
 * Settings: ROSET_MODEL_RUNS (default 20), ROSET_MODEL_SEED, ROSET_MODEL_PATH,
 * ROSET_MODEL_EXCLUDE, ROSET_MODEL_NAMES, ROSET_MODEL_LENGTH (default 30), as for the
 * core run. Needs `npm run build` first.
 */
import * as fsSync from 'node:fs';
import * as fsp from 'node:fs/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { errnoOf, RosetError } from '../../src/errors/index.js';
import type { OpenFlags, SealTiming } from '../support/fs-model.js';
import { removeRoot, startDaemon, stopAll, testFuseBinding, type TestDaemon } from '../support/daemon.js';
import { checkModel, commandsArb, printStats, runSequence, settingsFromEnv, type CommitStatus, type Obs, type RealNode, type RealStat, type Target } from '../support/model-run.js';

const C = fsSync.constants;
const SEAL_SECONDS = 1;

const FLAGS: Record<OpenFlags, number> = {
  r: C.O_RDONLY, rw: C.O_RDWR, w: C.O_WRONLY, wt: C.O_WRONLY | C.O_TRUNC, a: C.O_WRONLY | C.O_APPEND,
};

async function observe<T>(fn: () => Promise<T>): Promise<Obs<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    if (err instanceof RosetError) return { ok: false, errno: errnoOf(err.rosetCode), detail: `${err.rosetCode}: ${err.message}` };
    const e = err as NodeJS.ErrnoException;
    return { ok: false, errno: e.code ?? 'unknown', detail: e.message };
  }
}

/** node:fs on the mount, below `base`; commits through the API. */
class MountTarget implements Target<fsp.FileHandle> {
  readonly layer = 'mount' as const;

  constructor(private readonly d: TestDaemon, private readonly base: string, readonly timing: SealTiming) {}

  /** The mount path of a model path. */
  private m(p: string): string {
    return p === '/' ? this.d.p(this.base) : this.d.p(this.base, p.slice(1));
  }

  /** The API path of a model path. */
  private api(p: string): string {
    return p === '/' ? `/${this.base}` : `/${this.base}${p}`;
  }

  getattr(p: string): Promise<Obs<RealStat>> {
    return observe(async () => {
      const st = await fsp.lstat(this.m(p));
      return { type: st.isDirectory() ? 'folder' : st.isFile() ? 'file' : 'other', perm: st.mode & 0o7777, size: st.size, mtimeMs: st.mtime.getTime() };
    });
  }

  readdir(p: string): Promise<Obs<string[]>> { return observe(() => fsp.readdir(this.m(p))); }
  mkdir(p: string, mode: number): Promise<Obs<void>> { return observe(async () => { await fsp.mkdir(this.m(p), mode); }); }
  rmdir(p: string): Promise<Obs<void>> { return observe(() => fsp.rmdir(this.m(p))); }
  unlink(p: string): Promise<Obs<void>> { return observe(() => fsp.unlink(this.m(p))); }
  rename(from: string, to: string): Promise<Obs<void>> { return observe(() => fsp.rename(this.m(from), this.m(to))); }
  truncate(p: string, size: number): Promise<Obs<void>> { return observe(() => fsp.truncate(this.m(p), size)); }
  chmod(p: string, mode: number): Promise<Obs<void>> { return observe(() => fsp.chmod(this.m(p), mode)); }
  utimens(p: string, mtimeMs: number): Promise<Obs<void>> { return observe(() => fsp.utimes(this.m(p), mtimeMs / 1000, mtimeMs / 1000)); }

  create(p: string, mode: number, append: boolean): Promise<Obs<fsp.FileHandle>> {
    return observe(() => fsp.open(this.m(p), C.O_WRONLY | C.O_CREAT | C.O_EXCL | (append ? C.O_APPEND : 0), mode));
  }

  open(p: string, flags: OpenFlags): Promise<Obs<fsp.FileHandle>> {
    return observe(async () => {
      const fh = await fsp.open(this.m(p), FLAGS[flags]);
      if ((await fh.stat()).isDirectory()) {
        // open(O_RDONLY) of a folder is an opendir on a mount: reported as the core's EISDIR.
        await fh.close();
        throw Object.assign(new Error(`${p} is a folder`), { code: 'EISDIR' });
      }
      return fh;
    });
  }

  /** Through fs.write on the descriptor: FileHandle.write skips the system call for 0 bytes. */
  write(fh: fsp.FileHandle, data: Buffer, pos: number): Promise<Obs<number>> {
    return observe(() => new Promise<number>((resolve, reject) => fsSync.write(fh.fd, data, 0, data.length, pos, (err, n) => (err ? reject(err) : resolve(n)))));
  }

  read(fh: fsp.FileHandle, len: number, pos: number): Promise<Obs<Buffer>> {
    return observe(async () => {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      return buf.subarray(0, bytesRead);
    });
  }

  ftruncate(fh: fsp.FileHandle, size: number): Promise<Obs<void>> { return observe(() => fh.truncate(size)); }
  close(fh: fsp.FileHandle): Promise<Obs<void>> { return observe(() => fh.close()); }

  async lookup(p: string): Promise<RealNode | null> {
    const n = await this.d.client.resolvePath(this.api(p));
    if (!n) return null;
    const prefix = `/${this.base}`;
    const path = n.path === prefix ? '/' : n.path.startsWith(`${prefix}/`) ? n.path.slice(prefix.length) : `(outside the sequence's folder) ${n.path}`;
    return { id: n.id, type: n.type, state: n.state, path };
  }

  commit(nodeId: string): Promise<Obs<string>> { return observe(async () => (await this.d.client.commit(nodeId)).id); }

  async commitStatus(id: string): Promise<CommitStatus> {
    const c = await this.d.client.getCommit(id);
    if (c.status === 'completed') return { done: true, completed: true };
    if (c.status === 'failed') return { done: true, completed: false, code: c.error?.code, message: c.error?.message };
    return { done: false };
  }

  async manifest(id: string): Promise<Array<{ path: string; size: number; mode: number; sha256: string }>> {
    return (await this.d.client.getManifest(id)).files.map((f) => ({ path: f.path, size: f.size, mode: f.mode, sha256: f.sha256 }));
  }

  async waitSettled(id: string, ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end && !(await this.commitStatus(id)).done) await new Promise((r) => setTimeout(r, 20));
  }
}

const settings = settingsFromEnv(20);
const maxLength = Number(process.env.ROSET_MODEL_LENGTH ?? 30);
const binding = testFuseBinding() ?? 'default';

/**
 * fuse-native (libfuse 2) renames a file unlinked, or renamed over, while open to
 * `.fuse_hidden*` until its last handle is released, so listings and commits of its folder
 * see that name: a documented difference of that binding (docs/SEMANTICS.md), which the
 * model does not describe. On that binding the runner skips those commands; they run on
 * the native binding here, and on both in test/e2e/unlinked-open.test.ts.
 */
const keepOpenNames = process.env.ROSET_TEST_FUSE_BINDING === 'fuse-native';

describe(`a real mount (${binding}) against the reference model`, () => {
  let d: TestDaemon;

  beforeAll(async () => {
    // Modes in the generators are unaffected by this umask; the model assumes it.
    process.umask(0o022);
    d = await startDaemon({ sealTimeout: SEAL_SECONDS });
  });
  afterAll(async () => {
    await stopAll();
    if (d) removeRoot(d.root);
  });

  it(`answers every command as the model does (${settings.runs} sequences of up to ${maxLength} commands)`, async () => {
    const stats = process.env.ROSET_MODEL_STATS ? new Map<string, number>() : undefined;
    let n = 0;
    const prop = fc.asyncProperty(commandsArb({ maxLength, exclude: [...settings.exclude, 'storeDown', 'storeUp'], names: settings.names, race: settings.race }), async (cmds) => {
      const base = `seq${String(++n).padStart(5, '0')}`;
      await fsp.mkdir(d.p(base));
      // RELEASE reaches the daemon after close(2) returns: a generous slack on the seal's timing.
      await runSequence(cmds, new MountTarget(d, base, { timeoutMs: SEAL_SECONDS * 1000, slackMs: 500 }), { stats, logFile: process.env.ROSET_MODEL_LOG, keepOpenNames });
    });
    try {
      await checkModel(prop, settings, 'test/e2e/model.test.ts', binding === 'fuse-native' ? 'fuse-native' : 'native');
    } finally {
      if (stats) printStats(stats);
    }
  }, 1_800_000);
});
