/**
 * The model-based property test of the filesystem core, declared once for every
 * metadata backend: `describeCoreModel` runs random command sequences against the
 * reference model (fs-model.ts) and against the core in process, through `CoreTarget`
 * (the core's path-based methods and the control plane). What the test checks, and its
 * settings, are described in test/core/model.property.test.ts.
 */
import * as fsSync from 'node:fs';
import { constants as osConstants } from 'node:os';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { manifestKey } from '../../src/commit/layout.js';
import { RosetError } from '../../src/errors/index.js';
import { toErrno } from '../../src/fuse/errno.js';
import { normalizePath } from '../../src/meta/paths.js';
import { msOf, timespecFromMs } from '../../src/meta/types.js';
import type { Manifest } from '../../src/api/types.js';
import type { ObjectStore } from '../../src/store/types.js';
import { startCore, type CoreHarness, type CoreMetadata } from './core.js';
import { faulty, type FaultyStore } from './faulty-store.js';
import type { OpenFlags, SealTiming } from './fs-model.js';
import { checkModel, commandsArb, printStats, runSequence, settingsFromEnv, type CommitStatus, type Obs, type RealNode, type RealStat, type Target } from './model-run.js';

const C = fsSync.constants;
const ERRNO_NAMES = new Map(Object.entries(osConstants.errno as Record<string, number>).map(([k, v]) => [v, k]));

const FLAGS: Record<OpenFlags, number> = {
  r: C.O_RDONLY, rw: C.O_RDWR, w: C.O_WRONLY, wt: C.O_WRONLY | C.O_TRUNC, a: C.O_WRONLY | C.O_APPEND,
};

function observe<T>(fn: () => T | Promise<T>): Promise<Obs<T>> {
  return (async () => fn())().then((value) => ({ ok: true as const, value }), (err: unknown) => {
    const errno = ERRNO_NAMES.get(-toErrno(err)) ?? `errno ${toErrno(err)}`;
    const detail = err instanceof RosetError ? `${err.rosetCode}: ${err.message}` : String(err);
    return { ok: false as const, errno, detail };
  });
}

/** The core's path-based methods and the control plane, in process. */
class CoreTarget implements Target<number> {
  readonly layer = 'core' as const;

  constructor(private readonly h: CoreHarness, private readonly store: FaultyStore, private readonly inner: ObjectStore, readonly timing: SealTiming) {}

  getattr(p: string): Promise<Obs<RealStat>> {
    return observe(async () => {
      const st = await this.h.fs.getattr(p);
      const fmt = st.mode & C.S_IFMT;
      return { type: fmt === C.S_IFDIR ? 'folder' : fmt === C.S_IFREG ? 'file' : 'other', perm: st.mode & 0o7777, size: st.size, mtimeMs: msOf(st.mtime) };
    });
  }

  readdir(p: string): Promise<Obs<string[]>> { return observe(() => this.h.fs.readdir(p)); }
  mkdir(p: string, mode: number): Promise<Obs<void>> { return observe(() => this.h.fs.mkdir(p, mode)); }
  rmdir(p: string): Promise<Obs<void>> { return observe(() => this.h.fs.rmdir(p)); }
  unlink(p: string): Promise<Obs<void>> { return observe(() => this.h.fs.unlink(p)); }
  rename(from: string, to: string): Promise<Obs<void>> { return observe(() => this.h.fs.rename(from, to)); }
  truncate(p: string, size: number): Promise<Obs<void>> { return observe(() => this.h.fs.truncate(p, size)); }
  chmod(p: string, mode: number): Promise<Obs<void>> { return observe(() => this.h.fs.chmod(p, mode)); }
  utimens(p: string, mtimeMs: number): Promise<Obs<void>> { return observe(() => this.h.fs.utimens(p, timespecFromMs(mtimeMs), timespecFromMs(mtimeMs))); }

  create(p: string, mode: number, append: boolean): Promise<Obs<number>> {
    return observe(() => this.h.fs.create(p, mode, C.O_WRONLY | C.O_CREAT | C.O_EXCL | (append ? C.O_APPEND : 0)));
  }

  open(p: string, flags: OpenFlags): Promise<Obs<number>> { return observe(() => this.h.fs.open(p, FLAGS[flags])); }
  write(fh: number, data: Buffer, pos: number): Promise<Obs<number>> { return observe(() => this.h.fs.write(fh, data, data.length, pos)); }

  read(fh: number, len: number, pos: number): Promise<Obs<Buffer>> {
    return observe(() => {
      const buf = Buffer.alloc(len);
      return buf.subarray(0, this.h.fs.read(fh, buf, len, pos));
    });
  }

  ftruncate(fh: number, size: number): Promise<Obs<void>> { return observe(() => this.h.fs.ftruncate(fh, size)); }

  /** As the kernel does on close(2): FLUSH (its error is close's), then RELEASE regardless. */
  async close(fh: number): Promise<Obs<void>> {
    const flushed = await observe(() => this.h.fs.flush(fh));
    const released = await observe(() => this.h.fs.release(fh));
    return flushed.ok ? released : flushed;
  }

  async lookup(p: string): Promise<RealNode | null> {
    const n = await this.h.cp.resolvePath(this.h.mountId, normalizePath(p));
    return n ? { id: n.id, type: n.type, state: n.state, path: n.path } : null;
  }

  commit(nodeId: string): Promise<Obs<string>> { return observe(async () => (await this.h.cp.commit(this.h.mountId, nodeId, {})).id); }

  async commitStatus(id: string): Promise<CommitStatus> {
    const c = await this.h.cp.getCommit(this.h.mountId, id);
    if (c.phase === 'completed') return { done: true, completed: true };
    if (c.phase === 'failed') return { done: true, completed: false, code: c.error?.code, message: c.error?.message };
    return { done: false };
  }

  /** Read past the failure injection: the store's failures are the commit's, not the test's. */
  async manifest(id: string): Promise<Array<{ path: string; size: number; mode: number; sha256: string }>> {
    const m = JSON.parse((await this.inner.get(manifestKey(id))).toString('utf8')) as Manifest;
    return m.files.map((f) => ({ path: f.path, size: f.size, mode: f.mode, sha256: f.sha256 }));
  }

  async waitSettled(id: string, ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end && !(await this.commitStatus(id)).done) await new Promise((r) => setTimeout(r, 5));
  }

  setStore(up: boolean): void {
    this.store.rules.length = 0;
    if (!up) this.store.rules.push({ op: '*', kind: 'forbidden' });
  }
}

/** How long the harness may take to shut down (commits drained, uploads finished). */
const CLOSE_MS = 20_000;

async function closeWithin(h: CoreHarness, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => { timer = setTimeout(() => r(false), ms); });
  try {
    return await Promise.race([h.close().then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface CoreModelOptions {
  /** The test file, as the replay line names it. */
  testFile: string;
  /** Sequences run unless ROSET_MODEL_RUNS says otherwise. */
  defaultRuns: number;
  /** The metadata store of each sequence's core (default: SQLite); read when a sequence starts. */
  metadata?: () => CoreMetadata;
  /** Added to the test's title. */
  label?: string;
}

/**
 * Declares the model test: each sequence on a fresh core (control plane, local store
 * behind a fault injector, filesystem core) with the metadata store `metadata` gives.
 */
export function describeCoreModel(opts: CoreModelOptions): void {
  const settings = settingsFromEnv(opts.defaultRuns);
  const sealMs = Number(process.env.ROSET_MODEL_SEAL_MS ?? 300);
  const maxLength = Number(process.env.ROSET_MODEL_LENGTH ?? 60);
  /**
   * A sequence after which the core could not shut down: a background upload that never
   * ends (it holds a thread-pool thread for good), so nothing after it in this process
   * can be trusted, and it cannot be shrunk here.
   */
  let stuck: { run: number; message: string } | null = null;

  describe(`filesystem core against the reference model (property)${opts.label ? `, ${opts.label}` : ''}`, () => {
    it(`answers every command as the model does and ends with the model's tree (${settings.runs} sequences of up to ${maxLength} commands)`, async () => {
      const stats = process.env.ROSET_MODEL_STATS ? new Map<string, number>() : undefined;
      let run = 0;
      const prop = fc.asyncProperty(commandsArb({ maxLength, exclude: settings.exclude, names: settings.names, race: settings.race }), async (cmds) => {
        const thisRun = run++;
        if (stuck) throw new Error(`not run: sequence ${stuck.run} left the core unable to shut down`);
        let store: FaultyStore | undefined;
        let inner: ObjectStore | undefined;
        const h = await startCore({ sealTimeoutMs: sealMs, wrapStore: (s) => { inner = s; store = faulty(s); return store; }, metadata: opts.metadata?.() });
        let failure: unknown = null;
        let trace: string[] = [];
        try {
          trace = await runSequence(cmds, new CoreTarget(h, store!, inner!, { timeoutMs: sealMs, slackMs: 100 }), { stats, logFile: process.env.ROSET_MODEL_LOG });
        } catch (err) {
          failure = err;
        }
        store!.rules.length = 0;
        if (!(await closeWithin(h, CLOSE_MS))) {
          const what = failure instanceof Error ? `Before that:\n${failure.message}` : `The sequence itself passed:\n${trace.map((t) => `    ${t}`).join('\n')}`;
          stuck = { run: thisRun, message: `the core did not shut down within ${CLOSE_MS / 1000} s after this sequence (a commit or a background upload never ended)\n\n${what}` };
          throw new Error(stuck.message);
        }
        if (failure) throw failure;
      });
      try {
        await checkModel(prop, settings, opts.testFile, 'native', (seed) => (stuck
          ? `Sequence ${stuck.run} (counting from 0, shrinking included) could not be shut down; it is not shrunk, since each reproduction keeps a thread of the process busy for good. Run ${stuck.run} of seed ${seed} replays it while it falls in the first ${settings.runs} runs (ROSET_MODEL_PATH=${stuck.run}).\n${stuck.message}`
          : null));
      } finally {
        if (stats) printStats(stats);
      }
    }, 900_000);
  });
}
