/**
 * An in-process Roset without FUSE: control plane, local store and filesystem core,
 * for tests that drive the core directly. The metadata store is SQLite in the
 * harness's directory, or a fresh database on a PostgreSQL test server
 * (`metadata: { kind: 'postgres', server }`), dropped when the harness closes.
 */
import { constants as fsConstants, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { PostgresMetadataStore } from '../../src/meta/postgres.js';
import { SqliteMetadataStore } from '../../src/meta/sqlite.js';
import type { MetadataStore } from '../../src/meta/types.js';
import { ControlPlane } from '../../src/control/service.js';
import type { CoreContext } from '../../src/core/context.js';
import { RosetFilesystem } from '../../src/core/filesystem.js';
import type { PathFilesystem } from '../../src/core/path-ops.js';
import { HandleTable } from '../../src/core/handles.js';
import { StagingIndex } from '../../src/core/staging-index.js';
import { LocalStore } from '../../src/store/local.js';
import type { ObjectStore } from '../../src/store/types.js';
import type { PostgresServer } from './postgres.js';

/** Which metadata store a harness runs on. */
export type CoreMetadata = { kind: 'sqlite' } | { kind: 'postgres'; server: PostgresServer };

export interface CoreHarness {
  dir: string;
  cp: ControlPlane;
  /** The core by path (resolving each path once), as the fuse-native binding uses it. */
  fs: PathFilesystem;
  /** The core itself, by node id. */
  core: RosetFilesystem;
  ctx: CoreContext;
  mountId: string;
  close: () => Promise<void>;
}

export async function startCore(opts: {
  sealTimeoutMs?: number; wrapStore?: (s: ObjectStore) => ObjectStore; cacheMaxBytes?: number; readCache?: CoreContext['readCache']; metadata?: CoreMetadata;
  prefetchSiblings?: boolean;
  /** Upload large files while they are written (the daemon's default); off unless set. */
  uploadWhileWriting?: boolean;
} = {}): Promise<CoreHarness> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-core-'));
  const log = pino({ level: 'silent' });
  const pgServer = opts.metadata?.kind === 'postgres' ? opts.metadata.server : null;
  const pgUrl = pgServer ? await pgServer.createDatabase() : null;
  const meta: MetadataStore = pgUrl ? await PostgresMetadataStore.open(pgUrl, { log }) : new SqliteMetadataStore(path.join(dir, 'metadata.db'));
  const local = await LocalStore.open(path.join(dir, 'store'));
  const store = opts.wrapStore ? opts.wrapStore(local) : local;
  const cp = new ControlPlane(meta, store, log, { sealTimeoutMs: opts.sealTimeoutMs ?? 10_000, holder: 'test-core' });
  const mountId = await cp.ensureMount('default');
  const cacheDir = path.join(dir, 'cache');
  await RosetFilesystem.prepareCacheDir(cacheDir);
  const index = new StagingIndex(path.join(cacheDir, 'index.db'));
  const ctx: CoreContext = { mountId, agentId: 'agt_test', control: cp, store, index, handles: new HandleTable(), cacheDir, cacheMaxBytes: opts.cacheMaxBytes, readCache: opts.readCache, prefetchSiblings: opts.prefetchSiblings, uploadWhileWriting: opts.uploadWhileWriting, readOnly: false, log };
  const core = new RosetFilesystem(ctx, null);
  const fs = core.byPath();
  cp.registerAgent(core.agent);
  return {
    dir, cp, fs, core, ctx, mountId,
    close: async () => {
      await cp.engine.drain(30_000);
      await fs.uploader.drained();
      await fs.settle();
      index.close();
      await meta.close();
      if (pgServer && pgUrl) await pgServer.dropDatabase(pgUrl);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function waitSettled(h: CoreHarness, commitId: string, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const c = await h.cp.getCommit(h.mountId, commitId);
    if (c.phase === 'completed' || c.phase === 'failed') return c;
    if (Date.now() > end) throw new Error(`commit ${commitId} still ${c.phase}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The code of a rejected RosetError, or null when `p` resolves. */
export async function codeOf(p: Promise<unknown>): Promise<string | null> {
  try {
    await p;
    return null;
  } catch (err) {
    return (err as { rosetCode?: string }).rosetCode ?? String(err);
  }
}

/** Creates `p` through the harness's path API and writes `bytes` in order, `chunk` at a time. */
export async function writeFile(h: CoreHarness, p: string, bytes: Buffer, chunk = 1 << 20): Promise<void> {
  const fh = await h.fs.create(p, 0o644, fsConstants.O_WRONLY);
  for (let off = 0; off < bytes.length; off += chunk) h.fs.write(fh, bytes.subarray(off, off + chunk), Math.min(chunk, bytes.length - off), off);
  await h.fs.flush(fh);
  await h.fs.release(fh);
}

/** Reads up to `size` bytes of `p` through the harness's path API (shorter at its end). */
export async function readAll(h: CoreHarness, p: string, size: number): Promise<Buffer> {
  const fh = await h.fs.open(p, fsConstants.O_RDONLY);
  try {
    const buf = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const n = h.fs.read(fh, buf.subarray(off), size - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    await h.fs.release(fh);
  }
}
