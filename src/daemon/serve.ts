/**
 * `roset serve`: the control plane on its own, for many nodes. It holds the metadata
 * (PostgreSQL, or SQLite for one machine), writes manifests, group records and ref
 * mirrors to the bucket, and drives commits; it never carries file bytes (agents
 * upload straight to the bucket).
 *
 * Start: state dir (one `serve` per state dir) → server id → metadata (migrated) →
 * store → control plane → default mount and API key → API → state files → take over
 * commits whose driver is gone, now and every few seconds.
 * Stop (SIGTERM/SIGINT): stop taking commits over, finish the ones driven here up to
 * the drain limit (the rest pass to another `serve` by lease, or resume at restart),
 * close the API and the databases.
 *
 * Invariants: the server id (`server-id`) is made once and kept, so a restarted
 * `serve` takes back its own commits at once; several `serve` processes may share a
 * database (each with its own state dir), and the commit leases decide which drives
 * each commit.
 */
import * as fs from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { ApiServer } from '../api/server.js';
import type { TlsFiles } from '../api/listen-policy.js';
import { ControlPlane } from '../control/service.js';
import { openMetadata, redactDatabaseUrl } from '../meta/index.js';
import type { MetadataStore } from '../meta/types.js';
import { openStore, type StoreOptions } from '../store/index.js';
import type { ObjectStore } from '../store/types.js';
import { processAlive } from '../util/mounts.js';
import { STATE_FILES } from '../util/state-dir.js';
import { ensureApiKey, stableId, writeFileAtomic } from './state-files.js';

export interface ServeConfig {
  stateDir: string;
  /** `sqlite:` (the state dir's metadata.db), `sqlite:/path`, or `postgres://…`. */
  database: string;
  store: string;
  storeOptions: StoreOptions;
  listenHost: string;
  listenPort: number;
  /** Serve HTTPS with this certificate (agents on other nodes reach the API over the network). */
  tls: TlsFiles | null;
  /** Serve plain HTTP on a non-loopback address (a trusted network). */
  insecureListen: boolean;
  mountName: string;
  sealTimeoutMs: number;
  agentTimeoutMs: number;
  drainTimeoutMs: number;
  /** How long a commit lease lasts without renewal (a dead `serve`'s commits wait this long). */
  /** Run garbage collection this often (`--gc-interval`); absent or 0: never on its own. */
  gcIntervalMs?: number;
  leaseMs: number;
}

export interface ServeInfo {
  pid: number;
  endpoint: string;
  serverId: string;
}

export class ControlServer {
  private meta?: MetadataStore;
  private store?: ObjectStore;
  private api?: ApiServer;
  private cp?: ControlPlane;
  private stopping: Promise<void> | null = null;
  endpoint = '';

  constructor(private readonly cfg: ServeConfig, private readonly log: Logger) {}

  async start(): Promise<void> {
    const { cfg, log } = this;
    await fs.mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
    await this.claimStateDir();
    const serverId = await stableId(path.join(cfg.stateDir, STATE_FILES.serverId), 'srv');
    this.meta = await this.openMetadata();
    this.store = await openStore(cfg.store, {
      ...cfg.storeOptions,
      uploadOwner: serverId,
      onRetry: (info) => log.warn({ component: 'store', ...info }, 'retrying a storage operation'),
    });
    const cp = new ControlPlane(this.meta, this.store, log.child({ component: 'control' }), {
      sealTimeoutMs: cfg.sealTimeoutMs, agentTimeoutMs: cfg.agentTimeoutMs, leaseMs: cfg.leaseMs, holder: serverId, onSealing: 'resume',
      agentStore: { url: cfg.store, s3Endpoint: cfg.storeOptions.s3Endpoint, s3Region: cfg.storeOptions.s3Region, s3ForcePathStyle: cfg.storeOptions.s3ForcePathStyle },
    });
    this.cp = cp;
    const mountId = await cp.ensureMount(cfg.mountName);
    await ensureApiKey(cp, this.meta, cfg.stateDir, log);
    this.api = new ApiServer(cp, log.child({ component: 'api' }));
    this.endpoint = await this.api.listen(cfg.listenHost, cfg.listenPort, { tls: cfg.tls, insecureListen: cfg.insecureListen });
    await writeFileAtomic(path.join(cfg.stateDir, STATE_FILES.endpoint), `${this.endpoint}\n`, 0o644);
    const info: ServeInfo = { pid: process.pid, endpoint: this.endpoint, serverId };
    await writeFileAtomic(path.join(cfg.stateDir, STATE_FILES.server), `${JSON.stringify(info)}\n`, 0o644);
    // Agents can reach us now, so commits whose driver is gone can be taken over.
    await cp.engine.recover();
    cp.engine.watch(Math.max(100, Math.floor(cfg.leaseMs / 3)));
    if (cfg.gcIntervalMs) cp.startGcSchedule(cfg.gcIntervalMs);
    await cp.resyncRefMirrors(mountId);
    log.info({ endpoint: this.endpoint, serverId, database: redactDatabaseUrl(cfg.database), store: this.store.description, stateDir: cfg.stateDir, mountId }, 'roset serve ready');
  }

  private async openMetadata(): Promise<MetadataStore> {
    return openMetadata(this.cfg.database, this.cfg.stateDir, { log: this.log.child({ component: 'metadata' }) });
  }

  /** One `serve` per state dir: its key, server id and endpoint are its own. */
  private async claimStateDir(): Promise<void> {
    const file = path.join(this.cfg.stateDir, STATE_FILES.server);
    if (!existsSync(file)) return;
    let info: ServeInfo | null = null;
    try {
      info = JSON.parse(readFileSync(file, 'utf8')) as ServeInfo;
    } catch {
      // Unreadable: left by a crash mid-write; take over.
    }
    if (info && info.pid !== process.pid && processAlive(info.pid)) {
      throw new Error(`Another roset serve (pid ${info.pid}) is using state dir ${this.cfg.stateDir}; give each serve its own --state-dir`);
    }
    await fs.rm(file, { force: true });
  }

  stop(reason: string): Promise<void> {
    this.stopping ??= this.doStop(reason);
    return this.stopping;
  }

  private async doStop(reason: string): Promise<void> {
    const { log } = this;
    log.info({ reason, inFlightCommits: this.cp?.engine.inFlight ?? 0 }, 'stopping: draining commits driven here');
    this.cp?.engine.stopWatching();
    this.cp?.stopGcSchedule();
    if (this.cp && !(await this.cp.engine.drain(this.cfg.drainTimeoutMs))) {
      log.warn({ inFlight: this.cp.engine.inFlight }, 'drain limit reached; unfinished commits pass to another serve or resume at restart');
    }
    await this.api?.close();
    if (this.api) await fs.rm(path.join(this.cfg.stateDir, STATE_FILES.server), { force: true });
    await this.meta?.close();
    await this.store?.close();
    log.info('stopped');
  }
}
