/**
 * RosetClient: the TypeScript SDK for the `/v1` HTTP API (design §4).
 *
 * Owns: one typed method per route, retries, error mapping, and the waits that turn
 * the API's asynchronous commits and groups into awaitable results.
 *
 * Retry policy. Transient failures (network errors, 5xx, 429) are retried up to
 * `maxRetries` times with jittered exponential backoff, or after `Retry-After` when the
 * server sends one. A 4xx other than 429 is never retried. What may be retried depends
 * on whether the server may already have acted:
 *   - 429, 503 and connection-phase errors (refused, DNS) mean it did not: every
 *     request is retried;
 *   - other 5xx, resets and timeouts are ambiguous: only requests that are safe to
 *     send twice are retried. A `POST` that creates something (node, commit, mount,
 *     group) is not, since a second copy would be a different object or a spurious
 *     COMMIT_IN_PROGRESS.
 * A TLS failure (an untrusted, mismatched or expired certificate, a server without
 * TLS) is never retried: it is SdkTlsError (TLS_ERROR) at once, naming the URL and
 * the cause. `caFile` (or ROSET_CA_FILE) names the CA an https:// API is checked
 * against (src/sdk/tls.ts).
 * Some safe-to-resend requests can still fail on the resend *because* the first one
 * succeeded (a compare-and-swap ref update answers REF_CONFLICT, a ref delete
 * REF_NOT_FOUND, a seal GROUP_NOT_PENDING). After an ambiguous attempt those methods check the current state and
 * report success when it shows their own effect; a training job must not crash on a
 * ref move that happened.
 *
 * Invariants: the API key only ever goes into the Authorization header; every error
 * thrown is an SdkError (see errors.ts).
 */
import { readFileSync } from 'node:fs';
import type {
  AgentInfo,
  ApiKey,
  AutoCommitRules,
  Commit,
  CommitGroup,
  CommitRequest,
  CommitStatus,
  CreatedApiKey,
  CreateNodeRequest,
  GcReport,
  GcRequest,
  GcStatus,
  Health,
  Manifest,
  Mount,
  Node,
  NodeType,
  Page,
  Ref,
  RefLogEntry,
  ResolveResponse,
  UpdateRefRequest,
} from '../api/types.js';
import { sleep } from '../util/sleep.js';
import { resolveConfig, type ConfigOptions, type ResolvedConfig } from './config.js';
import {
  SdkCommitFailedError,
  SdkError,
  SdkGroupFailedError,
  SdkNetworkError,
  SdkTimeoutError,
  SdkTlsError,
  errorFromResponse,
} from './errors.js';
import { fetchTrusting, tlsFailure } from './tls.js';

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export const SDK_VERSION = readVersion();

export interface RosetClientOptions extends ConfigOptions {
  /** Per-request limit, including reading the body. Default 30 s. */
  timeoutMs?: number;
  /** Retries after the first attempt for transient failures. Default 3. */
  maxRetries?: number;
  /** First backoff step; doubles per retry. Default 250 ms. */
  retryBaseMs?: number;
  /** Upper bound on one backoff, Retry-After included. Default 30 s. */
  retryMaxDelayMs?: number;
  /** Injected for tests; defaults to the global fetch, or one trusting `caFile`. */
  fetch?: typeof globalThis.fetch;
  userAgent?: string;
}

export interface ListOptions {
  cursor?: string;
  limit?: number;
}

export interface ListCommitsOptions extends ListOptions {
  nodeId?: string;
  status?: CommitStatus;
}

export interface WaitOptions {
  /** Give up (SdkTimeoutError) after this long; 0 or Infinity waits for ever. Default 60 s. */
  timeoutMs?: number;
  /** Delay between polls. Default 250 ms. */
  pollMs?: number;
  signal?: AbortSignal;
}

export interface WaitForCommitOptions extends WaitOptions {
  /** Called with every polled state, e.g. to show upload progress. */
  onPoll?: (commit: Commit) => void;
}

export interface WaitForGroupOptions extends WaitOptions {
  onPoll?: (group: CommitGroup) => void;
}

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

interface RequestSpec<T> {
  method: Method;
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /** Safe to send twice; see the retry policy above. */
  resendable: boolean;
  /** Routes without auth (GET /health) don't get the key. */
  auth?: boolean;
  /** After an ambiguous attempt, may turn the final error into the result it stands for. */
  recover?: (err: SdkError) => Promise<{ value: T } | undefined>;
  /** This request's timeout, where it may take longer than the client's. */
  timeoutMs?: number;
}

/** The server takes up to 1000 paths and 1 MiB per resolve; batches stay well below both. */
const RESOLVE_BATCH_PATHS = 500;
const RESOLVE_BATCH_BYTES = 256 * 1024;

/** Errno codes that mean the connection was never made, so the server cannot have acted. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

function networkCode(err: unknown): string | undefined {
  // fetch wraps the socket error: TypeError('fetch failed', {cause}), and the cause
  // can itself be an AggregateError when several addresses were tried.
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const inner = (e as { errors?: unknown[] }).errors?.[0];
    e = (e as { cause?: unknown }).cause ?? inner;
  }
  return undefined;
}

function parseRetryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/**
 * A path segment for the URL. encodeURIComponent leaves "." and "..", which URL
 * parsing would then resolve into a different route, so those never leave here.
 */
function seg(value: string, what: string, code = 'BAD_REQUEST'): string {
  if (value === '' || value === '.' || value === '..') {
    throw new SdkError(code, `Invalid ${what}: ${JSON.stringify(value)}`, 0);
  }
  return encodeURIComponent(value);
}

export class RosetClient {
  readonly config: ResolvedConfig;
  /** Options less the key, which lives only in `config` (see below). */
  private readonly options: Omit<RosetClientOptions, 'apiKey'>;
  private readonly fetchImpl: typeof globalThis.fetch;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxDelayMs: number;
  private readonly userAgent: string;

  constructor(options: RosetClientOptions = {}) {
    const { apiKey: _key, ...rest } = options;
    this.options = rest;
    this.config = resolveConfig(options);
    // Logging a client (console.log, pino, JSON.stringify) must not print the key.
    Object.defineProperty(this.config, 'apiKey', { enumerable: false });
    this.fetchImpl = options.fetch ?? fetchTrusting(this.config.caFile);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.maxRetries = Math.max(0, options.maxRetries ?? 3);
    this.retryBaseMs = options.retryBaseMs ?? 250;
    this.retryMaxDelayMs = options.retryMaxDelayMs ?? 30_000;
    this.userAgent = options.userAgent ?? `roset-sdk-typescript/${SDK_VERSION}`;
  }

  get apiUrl(): string {
    return this.config.apiUrl;
  }

  get mountId(): string | undefined {
    return this.config.mountId;
  }

  /** The same client, addressing another mount (X-Roset-Mount-Id). */
  withMountId(mountId: string | undefined): RosetClient {
    return new RosetClient({
      ...this.options,
      apiUrl: this.config.apiUrl,
      apiKey: this.config.apiKey,
      stateDir: this.config.stateDir,
      mountId,
      // An explicit undefined must not fall back to ROSET_MOUNT_ID.
      env: mountId === undefined ? { ...(this.options.env ?? process.env), ROSET_MOUNT_ID: '' } : this.options.env,
    });
  }

  // ---- health and mounts ------------------------------------------------------------

  async getHealth(): Promise<Health> {
    return this.request({ method: 'GET', path: '/health', resendable: true, auth: false });
  }

  async listMounts(opts: ListOptions = {}): Promise<Page<Mount>> {
    return this.request({ method: 'GET', path: '/v1/mounts', query: { ...opts }, resendable: true });
  }

  /** The agents (nodes running `roset-mount --api-url`) of this client's mount, with whether each is connected. */
  async listAgents(opts: ListOptions = {}): Promise<Page<AgentInfo>> {
    return this.request({ method: 'GET', path: '/v1/agents', query: { ...opts }, resendable: true });
  }

  async createMount(name: string): Promise<Mount> {
    return this.request({ method: 'POST', path: '/v1/mounts', body: { name }, resendable: false });
  }

  // ---- auto-commit rules of a mount -------------------------------------------------

  /** The mount's auto-commit rules (this client's mount, else the server's default one). */
  async getAutoCommitRules(opts: { mountId?: string } = {}): Promise<AutoCommitRules> {
    const m = await this.rulesMount(opts.mountId);
    return this.request({ method: 'GET', path: `/v1/mounts/${seg(m, 'mount id')}/auto-commit`, resendable: true });
  }

  /**
   * Replaces the mount's auto-commit rules. With `expectedVersion`, only if they are at
   * that version (409 AUTO_COMMIT_CONFLICT otherwise); a resend after an answer that was
   * lost is recognised by the rules it left.
   */
  async setAutoCommitRules(rules: readonly string[], opts: { mountId?: string; expectedVersion?: number } = {}): Promise<AutoCommitRules> {
    const m = await this.rulesMount(opts.mountId);
    const body: { rules: string[]; expectedVersion?: number } = { rules: [...rules] };
    if (opts.expectedVersion !== undefined) body.expectedVersion = opts.expectedVersion;
    return this.request<AutoCommitRules>({
      method: 'PUT', path: `/v1/mounts/${seg(m, 'mount id')}/auto-commit`, body, resendable: true,
      recover: async (err) => {
        if (err.wireCode !== 'AUTO_COMMIT_CONFLICT' || opts.expectedVersion === undefined) return undefined;
        const cur = await this.getAutoCommitRules({ mountId: m }).catch(() => null);
        const same = cur !== null && cur.version === opts.expectedVersion + 1 && cur.rules.map((r) => r.rule).join('\n') === rules.join('\n');
        return same ? { value: cur } : undefined;
      },
    });
  }

  /** Adds one rule to the mount's (nothing if it is there), by compare-and-swap, again while another change wins. */
  async addAutoCommitRule(rule: string, opts: { mountId?: string } = {}): Promise<AutoCommitRules> {
    return this.editAutoCommitRules((rules) => (rules.includes(rule) ? null : [...rules, rule]), opts.mountId);
  }

  /** Removes one rule from the mount's (nothing if it is not there), as `addAutoCommitRule`. */
  async removeAutoCommitRule(rule: string, opts: { mountId?: string } = {}): Promise<AutoCommitRules> {
    return this.editAutoCommitRules((rules) => (rules.includes(rule) ? rules.filter((r) => r !== rule) : null), opts.mountId);
  }

  /** Read, change, compare-and-swap; `change` answers null for "nothing to do". */
  private async editAutoCommitRules(change: (rules: string[]) => string[] | null, mountId: string | undefined): Promise<AutoCommitRules> {
    const m = await this.rulesMount(mountId);
    for (let attempt = 1; ; attempt++) {
      const cur = await this.getAutoCommitRules({ mountId: m });
      const next = change(cur.rules.map((r) => r.rule));
      if (next === null) return cur;
      try {
        return await this.setAutoCommitRules(next, { mountId: m, expectedVersion: cur.version });
      } catch (err) {
        if (!(err instanceof SdkError) || err.wireCode !== 'AUTO_COMMIT_CONFLICT' || attempt >= 10) throw err;
      }
    }
  }

  /** The mount a rules call addresses: named, this client's, or the server's default (the mount of its root `/`). */
  private async rulesMount(mountId: string | undefined): Promise<string> {
    const m = mountId ?? this.config.mountId;
    if (m) return m;
    const root = await this.resolvePath('/');
    if (!root) throw new SdkError('MOUNT_NOT_FOUND', 'The server has no default mount: name one with mountId', 404);
    return root.mountId;
  }

  // ---- nodes ------------------------------------------------------------------------

  /** Looks up mount-relative absolute paths; a missing path maps to null. */
  async resolve(paths: readonly string[]): Promise<Record<string, Node | null>> {
    const out: Record<string, Node | null> = {};
    let batch: string[] = [];
    let bytes = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      const res = await this.request<ResolveResponse>({ method: 'POST', path: '/v1/resolve', body: { paths: batch }, resendable: true });
      Object.assign(out, res.nodes);
      batch = [];
      bytes = 0;
    };
    for (const p of paths) {
      const size = Buffer.byteLength(p) + 8;
      if (bytes + size > RESOLVE_BATCH_BYTES || batch.length >= RESOLVE_BATCH_PATHS) await flush();
      batch.push(p);
      bytes += size;
    }
    await flush();
    return out;
  }

  /** The node at a mount-relative path, or null when there is none. */
  async resolvePath(path: string): Promise<Node | null> {
    const nodes = await this.resolve([path]);
    return nodes[path] ?? null;
  }

  async getNode(id: string): Promise<Node> {
    return this.request({ method: 'GET', path: `/v1/nodes/${seg(id, 'node id')}`, resendable: true });
  }

  async listChildren(id: string, opts: ListOptions = {}): Promise<Page<Node>> {
    return this.request({ method: 'GET', path: `/v1/nodes/${seg(id, 'node id')}/children`, query: { ...opts }, resendable: true });
  }

  async createNode(req: CreateNodeRequest): Promise<Node> {
    return this.request({ method: 'POST', path: '/v1/nodes', body: req, resendable: false });
  }

  /**
   * Creates a folder. `parent` is a mount-relative path ("/checkpoints") when it starts
   * with "/", else a node id, as in the Python SDK's `create_folder(parent, name)`. A
   * parent given by path is created first if missing, as `mkdir -p` does; an existing
   * `name` is NODE_EXISTS.
   */
  async createFolder(parent: string, name: string): Promise<Node> {
    return this.createChild(parent, name, 'folder');
  }

  async createChild(parent: string, name: string, type: NodeType): Promise<Node> {
    const where = parent.startsWith('/') ? { parentPath: parent } : { parentId: parent };
    return this.createNode({ ...where, name, type });
  }

  /** Soft-deletes a node and returns it with `deletedAt` set (again: deleting twice is a no-op). */
  async deleteNode(id: string): Promise<Node> {
    return this.request({ method: 'DELETE', path: `/v1/nodes/${seg(id, 'node id')}`, resendable: true });
  }

  // ---- commits ----------------------------------------------------------------------

  /** Seals the folder and starts its commit; returns at once with a `pending` commit. */
  async commit(nodeId: string, opts: { message?: string; groupId?: string } = {}): Promise<Commit> {
    const body: CommitRequest = {};
    if (opts.message !== undefined) body.message = opts.message;
    if (opts.groupId !== undefined) body.groupId = opts.groupId;
    return this.request({ method: 'POST', path: `/v1/nodes/${seg(nodeId, 'node id')}/commit`, body, resendable: false });
  }

  async getCommit(id: string): Promise<Commit> {
    return this.request({ method: 'GET', path: `/v1/commits/${seg(id, 'commit id')}`, resendable: true });
  }

  /** Commits, newest first. */
  async listCommits(opts: ListCommitsOptions = {}): Promise<Page<Commit>> {
    return this.request({ method: 'GET', path: '/v1/commits', query: { ...opts }, resendable: true });
  }

  /** The manifest of a completed commit (COMMIT_NOT_COMPLETED before that). */
  async getManifest(id: string): Promise<Manifest> {
    return this.request({ method: 'GET', path: `/v1/commits/${seg(id, 'commit id')}/manifest`, resendable: true });
  }

  /**
   * Polls until the commit completes. Rejects with SdkCommitFailedError (carrying the
   * commit's own error code) when it fails, and with SdkTimeoutError when it is still
   * pending at the deadline: the commit then goes on, it just was not waited for.
   */
  async waitForCommit(id: string, opts: WaitForCommitOptions = {}): Promise<Commit> {
    return this.poll(
      () => this.getCommit(id),
      (c) => {
        opts.onPoll?.(c);
        if (c.status === 'completed') return c;
        if (c.status === 'failed') throw new SdkCommitFailedError(c);
        return undefined;
      },
      (c, ms) => new SdkTimeoutError(`Commit ${id} is still ${c.status} after ${ms} ms`, { commitId: id, path: c.path }),
      opts,
    );
  }

  // ---- refs -------------------------------------------------------------------------

  async listRefs(opts: ListOptions = {}): Promise<Page<Ref>> {
    return this.request({ method: 'GET', path: '/v1/refs', query: { ...opts }, resendable: true });
  }

  /** The ref, or null when it does not exist (like the Python SDK's `get_ref`). */
  async getRef(name: string): Promise<Ref | null> {
    try {
      return await this.request<Ref>({ method: 'GET', path: `/v1/refs/${seg(name, 'ref name', 'INVALID_REF_NAME')}`, resendable: true });
    } catch (err) {
      if (err instanceof SdkError && err.wireCode === 'REF_NOT_FOUND') return null;
      throw err;
    }
  }

  /**
   * Points a ref at a completed commit. With `expectedCommitId` it is a compare-and-swap
   * (409 REF_CONFLICT on mismatch); `expectedCommitId: null` requires that the ref does
   * not exist yet.
   */
  /**
   * Runs garbage collection on the control plane and answers its report once it is done
   * (GC_RUNNING while another runs). Safe to send again: a rerun converges.
   */
  async gc(req: GcRequest = {}, opts: { timeoutMs?: number } = {}): Promise<GcReport> {
    return this.request<GcReport>({ method: 'POST', path: '/v1/gc', body: req, resendable: true, timeoutMs: opts.timeoutMs ?? 24 * 3600_000 });
  }

  /** Where the garbage collection of the answering process is (`running: false` when none runs there). */
  async gcStatus(): Promise<GcStatus> {
    return this.request<GcStatus>({ method: 'GET', path: '/v1/gc', resendable: true });
  }

  async updateRef(name: string, commitId: string, opts: { expectedCommitId?: string | null } = {}): Promise<Ref> {
    const body: UpdateRefRequest = { commitId };
    if (opts.expectedCommitId !== undefined) body.expectedCommitId = opts.expectedCommitId;
    return this.request<Ref>({
      method: 'PUT',
      path: `/v1/refs/${seg(name, 'ref name', 'INVALID_REF_NAME')}`,
      body,
      resendable: true,
      recover: async (err) => {
        if (err.wireCode !== 'REF_CONFLICT') return undefined;
        const ref = await this.getRef(name).catch(() => null);
        return ref?.commitId === commitId ? { value: ref } : undefined;
      },
    });
  }

  async deleteRef(name: string): Promise<void> {
    await this.request<undefined>({
      method: 'DELETE',
      path: `/v1/refs/${seg(name, 'ref name', 'INVALID_REF_NAME')}`,
      resendable: true,
      recover: async (err) => (err.wireCode === 'REF_NOT_FOUND' ? { value: undefined } : undefined),
    });
  }

  /** Every move of the ref, oldest first. */
  async getRefLog(name: string, opts: ListOptions = {}): Promise<Page<RefLogEntry>> {
    return this.request({ method: 'GET', path: `/v1/refs/${seg(name, 'ref name', 'INVALID_REF_NAME')}/log`, query: { ...opts }, resendable: true });
  }

  // ---- commit groups ----------------------------------------------------------------

  async createCommitGroup(opts: { message?: string } = {}): Promise<CommitGroup> {
    const body = opts.message !== undefined ? { message: opts.message } : {};
    return this.request({ method: 'POST', path: '/v1/commit-groups', body, resendable: false });
  }

  async getCommitGroup(id: string): Promise<CommitGroup> {
    return this.request({ method: 'GET', path: `/v1/commit-groups/${seg(id, 'group id')}`, resendable: true });
  }

  /**
   * Seals the group; it stays `pending` until its commits finish. Resent after an
   * ambiguous failure, a seal answers GROUP_NOT_PENDING: then `sealedAt` tells whether
   * the first one took.
   */
  async sealCommitGroup(id: string): Promise<CommitGroup> {
    return this.request<CommitGroup>({
      method: 'POST',
      path: `/v1/commit-groups/${seg(id, 'group id')}/seal`,
      resendable: true,
      recover: async (err) => {
        if (err.wireCode !== 'GROUP_NOT_PENDING') return undefined;
        const group = await this.getCommitGroup(id).catch(() => undefined);
        return group?.sealedAt ? { value: group } : undefined;
      },
    });
  }

  /** Polls a sealed group until `committed`; SdkGroupFailedError when it failed. */
  async waitForCommitGroup(id: string, opts: WaitForGroupOptions = {}): Promise<CommitGroup> {
    const group = await this.poll(
      () => this.getCommitGroup(id),
      (g) => {
        opts.onPoll?.(g);
        if (g.status === 'committed' || g.status === 'failed') return g;
        return undefined;
      },
      (g, ms) => new SdkTimeoutError(`Commit group ${id} is still ${g.status} after ${ms} ms`, { groupId: id }),
      opts,
    );
    if (group.status === 'failed') {
      let failed: Commit | undefined;
      for (const cid of group.commitIds) {
        const c = await this.getCommit(cid).catch(() => undefined);
        if (c?.status === 'failed') {
          failed = c;
          break;
        }
      }
      throw new SdkGroupFailedError(group, failed);
    }
    return group;
  }

  // ---- API keys ---------------------------------------------------------------------

  /**
   * Creates an API key for a node or a person. The token is in this reply only: the
   * server keeps its hash. Not resent after an ambiguous failure (a second key).
   */
  async createKey(name: string): Promise<CreatedApiKey> {
    return this.request({ method: 'POST', path: '/v1/keys', body: { name }, resendable: false });
  }

  /** Keys, revoked ones included, oldest first; never their tokens or hashes. */
  async listKeys(opts: ListOptions = {}): Promise<Page<ApiKey>> {
    return this.request({ method: 'GET', path: '/v1/keys', query: { ...opts }, resendable: true });
  }

  /** Revokes a key: it is refused from the next request on. Revoking it again changes nothing. */
  async revokeKey(id: string): Promise<ApiKey> {
    return this.request({ method: 'DELETE', path: `/v1/keys/${seg(id, 'key id')}`, resendable: true });
  }

  // ---- helpers ----------------------------------------------------------------------

  /** Iterates over every item of a paged list, e.g. `client.paginate((o) => client.listRefs(o))`. */
  async *paginate<T>(list: (opts: ListOptions) => Promise<Page<T>>, opts: ListOptions = {}): AsyncGenerator<T> {
    let cursor = opts.cursor;
    for (;;) {
      const page = await list({ ...opts, cursor });
      yield* page.items;
      if (!page.nextCursor) return;
      if (page.nextCursor === cursor) throw new SdkError('INTERNAL', 'The server returned the same page cursor twice', 0);
      cursor = page.nextCursor;
    }
  }

  /** Collects every item of a paged list. */
  async listAll<T>(list: (opts: ListOptions) => Promise<Page<T>>, opts: ListOptions = {}): Promise<T[]> {
    const out: T[] = [];
    for await (const item of this.paginate(list, opts)) out.push(item);
    return out;
  }

  private async poll<S, R>(
    fetchState: () => Promise<S>,
    settle: (state: S) => R | undefined,
    onTimeout: (state: S, ms: number) => SdkTimeoutError,
    opts: WaitOptions,
  ): Promise<R> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const deadline = timeoutMs > 0 && Number.isFinite(timeoutMs) ? Date.now() + timeoutMs : Infinity;
    const pollMs = Math.max(1, opts.pollMs ?? 250);
    for (;;) {
      opts.signal?.throwIfAborted();
      const state = await fetchState();
      const done = settle(state);
      if (done !== undefined) return done;
      const left = deadline - Date.now();
      if (left <= 0) throw onTimeout(state, timeoutMs);
      await sleep(Math.min(pollMs, left), opts.signal);
    }
  }

  private url(path: string, query?: Record<string, string | number | undefined>): string {
    // Plain concatenation keeps a path prefix in the API URL (https://host/roset).
    let url = this.config.apiUrl + path;
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null) params.set(k, String(v));
    const qs = params.toString();
    if (qs) url += `?${qs}`;
    return url;
  }

  private backoff(retry: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, this.retryMaxDelayMs);
    const step = Math.min(this.retryMaxDelayMs, this.retryBaseMs * 2 ** retry);
    // Half fixed, half random: spreads clients out without ever retrying at once.
    return step / 2 + Math.random() * (step / 2);
  }

  private async request<T>(spec: RequestSpec<T>): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': this.userAgent };
    if (spec.auth !== false && this.config.apiKey) headers.authorization = `Bearer ${this.config.apiKey}`;
    if (spec.auth !== false && this.config.mountId) headers['x-roset-mount-id'] = this.config.mountId;
    let body: string | undefined;
    if (spec.body !== undefined) {
      body = JSON.stringify(spec.body);
      headers['content-type'] = 'application/json';
    }
    const url = this.url(spec.path, spec.query);
    const what = `${spec.method} ${spec.path}`;

    let ambiguous = false;
    for (let attempt = 0; ; attempt++) {
      let err: SdkError;
      let retryable: boolean;
      let retryAfterMs: number | undefined;
      try {
        const res = await this.fetchImpl(url, { method: spec.method, headers, body, signal: AbortSignal.timeout(spec.timeoutMs ?? this.timeoutMs) });
        const text = await res.text();
        let parsed: unknown;
        if (text !== '') {
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
            if (res.ok) throw new SdkError('INTERNAL', `${what}: the response is not JSON`, res.status);
          }
        }
        if (res.ok) return parsed as T;
        err = errorFromResponse(res.status, parsed, res.statusText);
        retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
        const unprocessed = res.status === 429 || res.status === 503;
        retryable = unprocessed || (res.status >= 500 && spec.resendable);
        if (!unprocessed && res.status >= 500) ambiguous = true;
      } catch (e) {
        if (e instanceof SdkError) throw e;
        const name = (e as { name?: string } | null)?.name;
        if (name === 'TimeoutError' || name === 'AbortError') {
          err = new SdkTimeoutError(`${what}: no answer from ${this.config.apiUrl} within ${spec.timeoutMs ?? this.timeoutMs} ms`, {}, { cause: e });
          retryable = spec.resendable;
          ambiguous = true;
        } else {
          const tls = tlsFailure(e, this.config.apiUrl, this.config.caFile);
          // An answer about the certificate, not an accident: never retried.
          if (tls) throw new SdkTlsError(`${what}: ${tls.message}`, { url: this.config.apiUrl, tlsCode: tls.code }, { cause: e });
          const code = networkCode(e);
          const cause = (e as { cause?: { message?: unknown } } | null)?.cause?.message;
          const why = code ?? (typeof cause === 'string' && cause !== '' ? cause : (e as Error)?.message);
          err = new SdkNetworkError(`${what}: cannot reach ${this.config.apiUrl}${why ? `: ${why}` : ''}`, code ? { errno: code } : {}, { cause: e });
          const neverSent = code !== undefined && CONNECT_CODES.has(code);
          retryable = neverSent || spec.resendable;
          if (!neverSent) ambiguous = true;
        }
      }
      if (!retryable || attempt >= this.maxRetries) {
        if (ambiguous && attempt > 0 && spec.recover) {
          const recovered = await spec.recover(err);
          if (recovered) return recovered.value;
        }
        throw err;
      }
      await sleep(this.backoff(attempt, retryAfterMs));
    }
  }
}
