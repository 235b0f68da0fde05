/**
 * `roset-mount`: wires the embedded control plane, the API, the data plane and the
 * FUSE adapter together, and owns start-up and shutdown. With `--api-url` it is an
 * agent of a remote control plane (`roset serve`) instead: no metadata, no API of its
 * own; the namespace is reached over HTTP and the bucket directly.
 *
 * Start (embedded): state dir → agent id → metadata → store → abort this agent's
 * abandoned multipart uploads → control plane → staging index and core → the mount's
 * auto-commit rules (then every change, told in process) → reconcile
 * staged files → recover in-flight commits → API → state files → mount.
 * Start (agent): state dir → agent id → register with the control plane (which names
 * the mount and the bucket) → store, with this node's own credentials → abort this
 * agent's abandoned uploads → staging index and core → the mount's auto-commit rules
 * (then every change, learnt from the poll) → reconcile → answer tasks →
 * state files naming the control plane → mount.
 * Stop (SIGTERM/SIGINT, or a `umount` from outside with the native binding): stop
 * accepting work, drain in-flight commits up to the drain limit, unmount, close the API
 * and the databases.
 *
 * Invariants: the daemon owns its state dir exclusively (a second daemon on the same
 * state dir refuses to start); `daemon.json` exists only while the mount is up. The
 * agent id (`agent-id` in the state dir) is made once and kept across restarts; the
 * store tags every multipart upload with it. The start-up sweep aborts only uploads
 * with this agent's tag (never another node's on a shared prefix), and runs before
 * anything can start an upload: before commits resume and before background uploads.
 */
import * as fs from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { ApiServer } from '../api/server.js';
import type { TlsFiles } from '../api/listen-policy.js';
import { SqliteMetadataStore } from '../meta/sqlite.js';
import { ControlPlane } from '../control/service.js';
import { HandleTable } from '../core/handles.js';
import { RosetFilesystem } from '../core/filesystem.js';
import { StagingIndex } from '../core/staging-index.js';
import { hostname } from 'node:os';
import type { ControlApi } from '../control/service.js';
import { ControlLink } from '../remote/http.js';
import { RemoteControl } from '../remote/control-client.js';
import { AgentLink } from '../remote/agent-link.js';
import { MetricsListener } from './metrics-listener.js';
import { AutoCommitter, type AutoCommitRule, type CommitPort } from './auto-commit.js';
import { toCommit } from '../control/service.js';
import type { AutoCommitRules } from '../api/types.js';
import { codeOf } from '../errors/index.js';
import type { CoreContext } from '../core/context.js';
import { mountFuseBinding, type FuseBinding, type FuseMount } from '../fuse/index.js';
import { openStore, type StoreOptions } from '../store/index.js';
import type { ObjectStore } from '../store/types.js';
import { blockHashImplementation } from '../util/block-hash.js';
import { forceUnmount, isFuseMounted, processAlive } from '../util/mounts.js';
import { STATE_FILES, type DaemonInfo } from '../util/state-dir.js';
import { ensureApiKey, stableId, writeFileAtomic } from './state-files.js';

export interface DaemonConfig {
  mountpoint: string;
  stateDir: string;
  cacheDir: string;
  /** Bytes of committed data the read cache may keep; 0: no limit. */
  cacheMaxBytes: number;
  /** A cold read of a committed file prefetches the other files of its folder (`--no-prefetch-siblings` turns it off). */
  prefetchSiblings: boolean;
  /** A large file written in order uploads while it is written (`--upload-while-writing`; off by default). */
  uploadWhileWriting: boolean;
  /** The bucket; null for an agent, which learns it from its control plane. */
  store: string | null;
  storeOptions: StoreOptions;
  /** Set: serve a mount of this remote control plane (an agent) instead of embedding one. */
  remote?: RemoteConfig;
  listenHost: string;
  listenPort: number;
  /** `--auto-commit` rules: commit a folder when a framework's last file lands in it. */
  autoCommit?: AutoCommitRule[];
  /** An agent: where to answer GET /health and GET /metrics (it has no API); null: nowhere. */
  metricsListen?: { host: string; port: number } | null;
  /** Serve the API over HTTPS with this certificate. */
  tls?: TlsFiles | null;
  /** Serve plain HTTP on a non-loopback address (a trusted network). */
  insecureListen?: boolean;
  readOnly: boolean;
  allowOther: boolean;
  sealTimeoutMs: number;
  /** How long an agent on another node may stay silent (this embedded control plane accepts agents too). */
  agentTimeoutMs: number;
  drainTimeoutMs: number;
  mountName: string;
  /** `native` (libfuse3, C data path, writeback cache) or `fuse-native` (libfuse 2). */
  fuseBinding: FuseBinding;
  /** Run garbage collection this often (`--gc-interval`); absent or 0: never on its own. */
  gcIntervalMs?: number;
}

export interface RemoteConfig {
  apiUrl: string;
  apiKey: string;
  /** The mount to serve: by id, or by name (created if missing); neither: the control plane's default. */
  mountId?: string;
  mountName?: string;
  /** The CA that signed the control plane's certificate, for an https URL. */
  caFile?: string;
}

export class Daemon {
  private link?: AgentLink;
  private controlLink?: ControlLink;
  private autoCommitter?: AutoCommitter;
  private unsubscribeRules?: () => void;
  private metrics?: MetricsListener;
  private meta?: SqliteMetadataStore;
  private store?: ObjectStore;
  private index?: StagingIndex;
  private api?: ApiServer;
  private fuse?: FuseMount;
  private cp?: ControlPlane;
  private core?: RosetFilesystem;
  private stopping: Promise<void> | null = null;
  endpoint = '';
  /** Called when the mount was unmounted from outside (native binding): the owner stops the daemon. */
  onUnmounted?: () => void;

  constructor(private readonly cfg: DaemonConfig, private readonly log: Logger) {}

  async start(): Promise<void> {
    const { cfg } = this;
    await fs.mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
    await this.claimStateDir();
    await this.clearStaleMount();
    const agentId = await this.agentId();
    const { mountId, control } = cfg.remote ? await this.startAgent(agentId, cfg.remote) : await this.startEmbedded(agentId);
    await this.startDataPlane(agentId, mountId, control);
  }

  private async openStoreAs(agentId: string, url: string, options: StoreOptions): Promise<ObjectStore> {
    const { log } = this;
    this.store = await openStore(url, {
      ...options,
      uploadOwner: agentId,
      onRetry: (info) => log.warn({ component: 'store', ...info }, 'retrying a storage operation'),
    });
    // Before anything can upload: what this agent left unfinished is dead, and a resumed
    // commit starts its uploads afresh.
    await this.abortAbandonedUploads(agentId);
    return this.store;
  }

  /** The embedded control plane: metadata in SQLite here, the API on loopback. */
  private async startEmbedded(agentId: string): Promise<{ mountId: string; control: ControlApi }> {
    const { cfg, log } = this;
    if (!cfg.store) throw new Error('No store configured');
    this.meta = new SqliteMetadataStore(path.join(cfg.stateDir, STATE_FILES.metadata));
    const store = await this.openStoreAs(agentId, cfg.store, cfg.storeOptions);
    const cp = new ControlPlane(this.meta, store, log.child({ component: 'control' }), {
      sealTimeoutMs: cfg.sealTimeoutMs, agentTimeoutMs: cfg.agentTimeoutMs, holder: agentId,
      agentStore: { url: cfg.store, s3Endpoint: cfg.storeOptions.s3Endpoint, s3Region: cfg.storeOptions.s3Region, s3ForcePathStyle: cfg.storeOptions.s3ForcePathStyle },
    });
    this.cp = cp;
    const mountId = await cp.ensureMount(cfg.mountName);
    await this.ensureApiKey(cp);
    return { mountId, control: cp };
  }

  /** An agent of a remote control plane: register, then the bucket it names. */
  private async startAgent(agentId: string, remote: RemoteConfig): Promise<{ mountId: string; control: ControlApi }> {
    const { cfg, log } = this;
    const link = new ControlLink({
      apiUrl: remote.apiUrl, apiKey: remote.apiKey, mountId: remote.mountId, caFile: remote.caFile,
      onRetry: (info) => log.warn({ component: 'control-link', ...info }, 'retrying a call to the control plane'),
    });
    if (!remote.mountId && remote.mountName) link.mountId = await mountByName(link, remote.mountName);
    this.controlLink = link;
    this.link = new AgentLink(link, { agentId, mountpoint: cfg.mountpoint, hostname: hostname() }, log.child({ component: 'agent-link' }));
    const reg = await this.link.register();
    // The control plane names the bucket; this node's flags may override how to reach it.
    const o = cfg.storeOptions;
    await this.openStoreAs(agentId, cfg.store ?? reg.store.url, {
      ...o,
      s3Endpoint: o.s3Endpoint ?? reg.store.s3Endpoint,
      s3Region: o.s3Region ?? reg.store.s3Region,
      s3ForcePathStyle: o.s3ForcePathStyle ?? reg.store.s3ForcePathStyle,
    });
    // `roset` and the SDKs on this node talk to the control plane, with this key.
    await writeFileAtomic(path.join(cfg.stateDir, STATE_FILES.apiKey), `${remote.apiKey}\n`, 0o600);
    this.endpoint = link.apiUrl;
    log.info({ apiUrl: link.apiUrl, mountId: reg.mountId, agentId, store: reg.store.url }, 'registered with the control plane');
    return { mountId: reg.mountId, control: new RemoteControl(link, agentId) };
  }

  private async startDataPlane(agentId: string, mountId: string, control: ControlApi): Promise<void> {
    const { cfg, log } = this;
    await fs.mkdir(cfg.cacheDir, { recursive: true, mode: 0o700 });
    await RosetFilesystem.prepareCacheDir(cfg.cacheDir);
    this.index = new StagingIndex(path.join(cfg.cacheDir, 'index.db'));
    const ctx: CoreContext = {
      mountId, agentId, control, store: this.store!, index: this.index, handles: new HandleTable(),
      cacheDir: cfg.cacheDir, cacheMaxBytes: cfg.cacheMaxBytes, prefetchSiblings: cfg.prefetchSiblings, uploadWhileWriting: cfg.uploadWhileWriting, readOnly: cfg.readOnly, log: log.child({ component: 'fs' }),
    };
    const core = new RosetFilesystem(ctx, cfg.mountpoint);
    this.core = core;
    if (this.link) {
      // An agent of another node registered before its uploader existed, and registers
      // again whenever the control plane forgot it: each time, gc may have expired its
      // pins (it was not heard from), so upload records made before are checked again
      // before use (src/commit/gc.ts, pin expiry). An embedded daemon's pins never expire.
      core.uploader.distrust();
      this.link.onRegistered = () => core.uploader.distrust();
    }
    // Always there: the mount's rules may be set through the API at any time.
    const autoCommitter = new AutoCommitter(cfg.autoCommit ?? [], mountId, control, this.commitPort(mountId), cfg.stateDir, log.child({ component: 'auto-commit' }));
    this.autoCommitter = autoCommitter;
    ctx.onFileReady = autoCommitter.onFileReady;
    if (cfg.autoCommit?.length) log.info({ rules: cfg.autoCommit.map((r) => r.text) }, 'auto-commit rules of this daemon');
    if (this.cp) {
      // Embedded: the API runs in this process, so a change is applied before its PUT answers.
      this.unsubscribeRules = this.cp.onAutoCommitRules((r) => { if (r.mountId === mountId) autoCommitter.setMountRules(r); });
    }
    const mountRules = await this.initialMountRules(control, mountId);
    if (mountRules) autoCommitter.setMountRules(mountRules);
    await autoCommitter.save();
    const { lost } = await core.reconcile();
    const cp = this.cp;
    if (cp) {
      cp.registerAgent(core.agent);
      await cp.engine.recover();
      // A commit whose run stopped without an outcome (its metadata write failed) is
      // picked up again rather than left pending.
      cp.engine.watch(5000);
      if (cfg.gcIntervalMs) cp.startGcSchedule(cfg.gcIntervalMs);
      await cp.resyncRefMirrors(mountId);
      this.api = new ApiServer(cp, log.child({ component: 'api' }));
      this.endpoint = await this.api.listen(cfg.listenHost, cfg.listenPort, { tls: cfg.tls, insecureListen: cfg.insecureListen });
    } else {
      // Tasks left pending while this node was down (a seal, an upload) run now.
      this.link!.start(core.agent, {
        version: () => autoCommitter.appliedMountVersion,
        refresh: async () => { autoCommitter.setMountRules(await control.autoCommitRules(mountId)); },
      });
      if (cfg.metricsListen) {
        this.metrics = new MetricsListener(log.child({ component: 'metrics' }));
        log.info({ url: await this.metrics.listen(cfg.metricsListen.host, cfg.metricsListen.port) }, 'serving /health and /metrics');
      }
    }
    await writeFileAtomic(path.join(cfg.stateDir, STATE_FILES.endpoint), `${this.endpoint}\n`, 0o644);

    this.fuse = await mountFuseBinding(cfg.fuseBinding, core, cfg.mountpoint, {
      allowOther: cfg.allowOther, log: log.child({ component: 'fuse', binding: cfg.fuseBinding }),
      // A `umount` (or an fstab mount's unmount) ends the daemon as SIGTERM would.
      onUnmountedOutside: () => this.onUnmounted?.(),
    });
    // With the native binding the kernel may hold written pages: the seal flushes them.
    if (this.fuse.flushKernelCache) ctx.flushKernelCache = this.fuse.flushKernelCache.bind(this.fuse);
    const info: DaemonInfo = { pid: process.pid, mountpoint: cfg.mountpoint, endpoint: this.endpoint, cacheMaxBytes: cfg.cacheMaxBytes };
    await writeFileAtomic(path.join(cfg.stateDir, STATE_FILES.daemon), `${JSON.stringify(info)}\n`, 0o644);
    log.info({ mountpoint: cfg.mountpoint, fuseBinding: cfg.fuseBinding, endpoint: this.endpoint, role: cp ? 'embedded' : 'agent', store: this.store!.description, storeCapabilities: this.store!.capabilities, stateDir: cfg.stateDir, cacheDir: cfg.cacheDir, cacheMaxBytes: cfg.cacheMaxBytes, prefetchSiblings: cfg.prefetchSiblings, uploadWhileWriting: cfg.uploadWhileWriting, blockHash: blockHashImplementation, mountId, lostStagedFiles: lost.length }, 'roset-mount ready');
  }

  /**
   * The mount's auto-commit rules at start. null from a control plane of an earlier
   * release, which keeps none (its rpc does not know the call): an agent may be upgraded
   * before its `roset serve`, and then applies its own rules only, as that release did.
   */
  private async initialMountRules(control: ControlApi, mountId: string): Promise<AutoCommitRules | null> {
    try {
      return await control.autoCommitRules(mountId);
    } catch (err) {
      if (!this.cp && codeOf(err) === 'BAD_REQUEST' && /Unknown rpc method "autoCommitRules"/.test((err as Error).message)) {
        this.log.warn('the control plane keeps no auto-commit rules per mount (an earlier release): only this daemon\'s --auto-commit rules apply');
        return null;
      }
      throw err;
    }
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

  /** How auto-commit commits: in this process (embedded) or through the control plane's API (agent). */
  private commitPort(mountId: string): CommitPort {
    const cp = this.cp;
    if (cp) {
      return {
        commit: async (folderId, message) => (await cp.commit(mountId, folderId, { message })).id,
        outcome: async (id) => {
          const c = toCommit(await cp.getCommit(mountId, id));
          return { status: c.status, error: c.error };
        },
        setRef: async (name, commitId) => { await cp.setRef(mountId, name, { commitId }, 'auto-commit'); },
      };
    }
    const link = this.controlLink!;
    return {
      commit: async (folderId, message) => (await link.call<{ id: string }>('POST', `/v1/nodes/${encodeURIComponent(folderId)}/commit`, { message }, { idempotent: false })).id,
      outcome: async (id) => link.call('GET', `/v1/commits/${encodeURIComponent(id)}`, undefined, { idempotent: true }),
      setRef: async (name, commitId) => { await link.call('PUT', `/v1/refs/${encodeURIComponent(name)}`, { commitId }, { idempotent: true }); },
    };
  }

  private async ensureApiKey(cp: ControlPlane): Promise<void> {
    await ensureApiKey(cp, this.meta!, this.cfg.stateDir, this.log);
  }

  /** This node's agent id: made at the first start, the same at every later one. */
  private async agentId(): Promise<string> {
    return stableId(path.join(this.cfg.stateDir, STATE_FILES.agentId), 'agt');
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
    this.unsubscribeRules?.();
    await this.autoCommitter?.settle();
    if (this.link) {
      // An agent finishes the tasks it is running (an upload of a commit) within the drain limit.
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<void>((r) => { timer = setTimeout(r, this.cfg.drainTimeoutMs); });
      await Promise.race([this.link.stop(), limit]);
      clearTimeout(timer);
    }
    this.cp?.engine.stopWatching();
    this.cp?.stopGcSchedule();
    if (this.cp && !(await this.cp.engine.drain(this.cfg.drainTimeoutMs))) {
      log.warn({ inFlight: this.cp.engine.inFlight }, 'drain limit reached; unfinished commits resume at next start');
    }
    // Background uploads are an optimisation (a commit uploads whatever they did not),
    // so they get what is left of the limit and no more. So is sibling prefetch: none
    // starts from now on, and those running end (or are recorded) within the limit.
    if (this.core) {
      const core = this.core;
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<void>((r) => { timer = setTimeout(r, Math.min(30_000, this.cfg.drainTimeoutMs)); });
      await Promise.race([Promise.all([core.uploader.drained(), core.stopPrefetch().then(() => core.settle())]), limit]);
      clearTimeout(timer);
      // Files still uploading while written: their parts go (the commit that needs them
      // uploads them whole after the restart).
      await this.core.uploader.close();
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
    await this.metrics?.close();
    // Only the daemon that wrote daemon.json (it mounted) may remove it.
    if (this.fuse) await fs.rm(path.join(this.cfg.stateDir, STATE_FILES.daemon), { force: true });
    // Upload records still waiting for their batch: kept, so a restart trusts them.
    this.core?.uploader.flushRecords();
    this.index?.close();
    await this.meta?.close();
    await this.store?.close();
    log.info('stopped');
  }
}

/** The id of the mount named `name`, created if the control plane has none by that name. */
async function mountByName(link: ControlLink, name: string): Promise<string> {
  const find = async (): Promise<string | undefined> =>
    (await link.call<{ items: Array<{ id: string; name: string }> }>('GET', '/v1/mounts', undefined, { idempotent: true })).items.find((m) => m.name === name)?.id;
  const found = await find();
  if (found) return found;
  try {
    return (await link.call<{ id: string }>('POST', '/v1/mounts', { name }, { idempotent: false })).id;
  } catch (err) {
    // Another node created it meanwhile.
    const again = await find();
    if (again) return again;
    throw err;
  }
}
