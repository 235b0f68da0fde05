/**
 * `roset-mount`: wires the embedded control plane, the API, the data plane and the
 * FUSE adapter together, and owns start-up and shutdown.
 *
 * Start: state dir → agent id → metadata → store → abort this agent's abandoned
 * multipart uploads → control plane → staging index and core → reconcile staged files
 * → recover in-flight commits → API → state files → mount.
 * Stop (SIGTERM/SIGINT): stop accepting work, drain in-flight commits up to the drain
 * limit, unmount, close the API and the databases.
 *
 * Invariants: the daemon owns its state dir exclusively (a second daemon on the same
 * state dir refuses to start); `daemon.json` exists only while the mount is up. The
 * agent id (`agent-id` in the state dir) is made once and kept across restarts; the
 * store tags every multipart upload with it. The start-up sweep aborts only uploads
 * with this agent's tag (never another node's on a shared prefix), and runs before
 * anything can start an upload: before commits resume and before background uploads.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { ApiServer } from '../api/server.js';
import type { TlsFiles } from '../api/listen-policy.js';
import { SqliteMetadataStore } from '../meta/sqlite.js';
import { ControlPlane, hashToken } from '../control/service.js';
import { HandleTable } from '../core/handles.js';
import { RosetFilesystem } from '../core/filesystem.js';
import { StagingIndex } from '../core/staging-index.js';
import type { CoreContext } from '../core/context.js';
import { mountFuseBinding, type FuseBinding, type FuseMount } from '../fuse/index.js';
import { openStore, type StoreOptions } from '../store/index.js';
import type { ObjectStore } from '../store/types.js';
import { forceUnmount, isFuseMounted, processAlive } from '../util/mounts.js';
import { STATE_FILES, type DaemonInfo } from '../util/state-dir.js';

export interface DaemonConfig {
  mountpoint: string;
  stateDir: string;
  cacheDir: string;
  /** Bytes of committed data the read cache may keep; 0: no limit. */
  cacheMaxBytes: number;
  store: string;
  storeOptions: StoreOptions;
  listenHost: string;
  listenPort: number;
  /** Serve the API over HTTPS with this certificate. */
  tls?: TlsFiles | null;
  /** Serve plain HTTP on a non-loopback address (a trusted network). */
  insecureListen?: boolean;
  readOnly: boolean;
  allowOther: boolean;
  sealTimeoutMs: number;
  drainTimeoutMs: number;
  mountName: string;
  /** `native` (libfuse3, C data path, writeback cache) or `fuse-native` (libfuse 2). */
  fuseBinding: FuseBinding;
}

export class Daemon {
  private meta?: SqliteMetadataStore;
  private store?: ObjectStore;
  private index?: StagingIndex;
  private api?: ApiServer;
  private fuse?: FuseMount;
  private cp?: ControlPlane;
  private core?: RosetFilesystem;
  private stopping: Promise<void> | null = null;
  endpoint = '';

  constructor(private readonly cfg: DaemonConfig, private readonly log: Logger) {}

  async start(): Promise<void> {
    const { cfg, log } = this;
    await fs.mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
    await this.claimStateDir();
    await this.clearStaleMount();

    const agentId = await this.agentId();
    this.meta = new SqliteMetadataStore(path.join(cfg.stateDir, STATE_FILES.metadata));
    this.store = await openStore(cfg.store, {
      ...cfg.storeOptions,
      uploadOwner: agentId,
      onRetry: (info) => log.warn({ component: 'store', ...info }, 'retrying a storage operation'),
    });
    // Before anything can upload: what this agent left unfinished is dead, and a resumed
    // commit starts its uploads afresh.
    await this.abortAbandonedUploads(agentId);
    const cp = new ControlPlane(this.meta, this.store, log.child({ component: 'control' }), { sealTimeoutMs: cfg.sealTimeoutMs });
    this.cp = cp;
    const mountId = await cp.ensureMount(cfg.mountName);
    await this.ensureApiKey(cp);

    await fs.mkdir(cfg.cacheDir, { recursive: true, mode: 0o700 });
    await RosetFilesystem.prepareCacheDir(cfg.cacheDir);
    this.index = new StagingIndex(path.join(cfg.cacheDir, 'index.db'));
    const ctx: CoreContext = {
      mountId, agentId, control: cp, store: this.store, index: this.index, handles: new HandleTable(),
      cacheDir: cfg.cacheDir, cacheMaxBytes: cfg.cacheMaxBytes, readOnly: cfg.readOnly, log: log.child({ component: 'fs' }),
    };
    const core = new RosetFilesystem(ctx, cfg.mountpoint);
    this.core = core;
    cp.registerAgent(core.agent);
    const { lost } = await core.reconcile();
    await cp.engine.recover();
    await cp.resyncRefMirrors(mountId);

    this.api = new ApiServer(cp, log.child({ component: 'api' }));
    this.endpoint = await this.api.listen(cfg.listenHost, cfg.listenPort, { tls: cfg.tls, insecureListen: cfg.insecureListen });
    await writeFileAtomic(path.join(cfg.stateDir, STATE_FILES.endpoint), `${this.endpoint}\n`, 0o644);

    this.fuse = await mountFuseBinding(cfg.fuseBinding, core, cfg.mountpoint, { allowOther: cfg.allowOther, log: log.child({ component: 'fuse', binding: cfg.fuseBinding }) });
    // With the native binding the kernel may hold written pages: the seal flushes them.
    if (this.fuse.flushKernelCache) ctx.flushKernelCache = this.fuse.flushKernelCache.bind(this.fuse);
    const info: DaemonInfo = { pid: process.pid, mountpoint: cfg.mountpoint, endpoint: this.endpoint };
    await writeFileAtomic(path.join(cfg.stateDir, STATE_FILES.daemon), `${JSON.stringify(info)}\n`, 0o644);
    log.info({ mountpoint: cfg.mountpoint, fuseBinding: cfg.fuseBinding, endpoint: this.endpoint, store: this.store.description, storeCapabilities: this.store.capabilities, stateDir: cfg.stateDir, cacheDir: cfg.cacheDir, mountId, lostStagedFiles: lost.length }, 'roset-mount ready');
  }

  /** Refuses to share a state dir with a live daemon; takes over one left by a dead one. */
  private async claimStateDir(): Promise<void> {
    const file = path.join(this.cfg.stateDir, STATE_FILES.daemon);
    if (!existsSync(file)) return;
    try {
      const info = JSON.parse(readFileSync(file, 'utf8')) as DaemonInfo;
      if (info.pid !== process.pid && processAlive(info.pid)) {
        throw new Error(`Another roset-mount (pid ${info.pid}) is using state dir ${this.cfg.stateDir} for ${info.mountpoint}`);
      }
    } catch (err) {
      if ((err as Error).message.startsWith('Another roset-mount')) throw err;
    }
    await fs.rm(file, { force: true });
  }

  private async clearStaleMount(): Promise<void> {
    if (!isFuseMounted(this.cfg.mountpoint)) return;
    this.log.warn({ mountpoint: this.cfg.mountpoint }, 'clearing a stale FUSE mount left by a previous run');
    await forceUnmount(this.cfg.mountpoint);
  }

  private async ensureApiKey(cp: ControlPlane): Promise<void> {
    const file = path.join(this.cfg.stateDir, STATE_FILES.apiKey);
    let token: string | null = null;
    try {
      token = (await fs.readFile(file, 'utf8')).trim() || null;
    } catch {
      // First start: no key yet.
    }
    if (token) {
      const known = await cp.lookupApiKey(token);
      // Metadata rebuilt or recovered while the key file survived: keep the key valid.
      if (!known) {
        await this.meta!.insertApiKey({ id: `key_${randomBytes(8).toString('hex')}`, name: 'default', hash: hashToken(token), createdAt: new Date().toISOString(), revokedAt: null });
      }
      if (!known?.revokedAt) {
        await fs.chmod(file, 0o600);
        return;
      }
      // A revoked key stays revoked: this node gets a new one.
      this.log.warn({ file, keyId: known.id }, 'the API key in the state dir was revoked: making a new one');
    }
    const created = await cp.createApiKey('default');
    await writeFileAtomic(file, `${created.token}\n`, 0o600);
    this.log.info({ file }, 'created the API key');
  }

  /** This node's agent id: made at the first start, the same at every later one. */
  private async agentId(): Promise<string> {
    const file = path.join(this.cfg.stateDir, STATE_FILES.agentId);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const id = `agt_${randomBytes(8).toString('hex')}`;
      await writeFileAtomic(file, `${id}\n`, 0o644);
      return id;
    }
    const id = text.trim();
    // Never replaced silently: staged files and upload tags are this agent's by its id.
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id)) throw new Error(`${file} does not hold an agent id (1-128 characters of [A-Za-z0-9._-]): fix or remove it`);
    return id;
  }

  /**
   * Aborts the multipart uploads this agent started and did not finish (a crash, or an
   * abort that failed): nothing of this agent is uploading yet. Uploads of other agents
   * sharing the prefix, and untagged ones, are left alone.
   */
  private async abortAbandonedUploads(agentId: string): Promise<void> {
    if (!this.store!.capabilities.multipart) return;
    for (const u of await this.store!.abortOwnUploads()) {
      this.log.info({ key: u.key, uploadId: u.uploadId, agentId }, 'aborted an abandoned multipart upload of this agent');
    }
  }

  stop(reason: string): Promise<void> {
    this.stopping ??= this.doStop(reason);
    return this.stopping;
  }

  private async doStop(reason: string): Promise<void> {
    const { log } = this;
    log.info({ reason, inFlightCommits: this.cp?.engine.inFlight ?? 0 }, 'stopping: draining in-flight commits');
    if (this.cp && !(await this.cp.engine.drain(this.cfg.drainTimeoutMs))) {
      log.warn({ inFlight: this.cp.engine.inFlight }, 'drain limit reached; unfinished commits resume at next start');
    }
    // Background uploads are an optimisation (a commit uploads whatever they did not),
    // so they get what is left of the limit and no more.
    if (this.core) {
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<void>((r) => { timer = setTimeout(r, Math.min(30_000, this.cfg.drainTimeoutMs)); });
      await Promise.race([Promise.all([this.core.uploader.drained(), this.core.settle()]), limit]);
      clearTimeout(timer);
    }
    if (this.fuse) {
      try {
        await this.fuse.unmount();
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'clean unmount failed; unmounting lazily');
        await forceUnmount(this.cfg.mountpoint).catch(() => undefined);
      }
    }
    await this.api?.close();
    // Only the daemon that wrote daemon.json (it mounted) may remove it.
    if (this.fuse) await fs.rm(path.join(this.cfg.stateDir, STATE_FILES.daemon), { force: true });
    this.index?.close();
    await this.meta?.close();
    await this.store?.close();
    log.info('stopped');
  }
}

async function writeFileAtomic(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, text, { mode });
  await fs.chmod(tmp, mode);
  await fs.rename(tmp, file);
}
