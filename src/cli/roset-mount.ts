/**
 * `roset-mount MOUNTPOINT`: parses flags and environment (flag beats variable beats
 * the embedded default), runs the daemon in the foreground, and turns SIGTERM/SIGINT
 * into a drained, clean unmount.
 */
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { checkListenPolicy } from '../api/listen-policy.js';
import { listen, tlsFiles } from './listen-options.js';
import { Daemon, type DaemonConfig } from '../daemon/daemon.js';
import { parseAutoCommitRule, type AutoCommitRule } from '../daemon/auto-commit.js';
import { ServiceNotifier } from '../daemon/sd-notify.js';
import { DEFAULT_FUSE_BINDING, FUSE_BINDINGS, type FuseBinding } from '../fuse/types.js';
import { createLogger, resolveLogFormat, type LogLevel } from '../util/log.js';
import { defaultStateDir } from '../util/state-dir.js';
import { addStoreOptions, envFlag, storeConfig } from './store-options.js';
import { duration, seconds, size } from '../util/cli-args.js';

const env = process.env;

function autoCommitRules(texts: string[]): AutoCommitRule[] {
  return texts.map((t) => {
    try {
      return parseAutoCommitRule(t);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  });
}

function fuseBindingFromEnv(v: string | undefined): FuseBinding | undefined {
  if (!v) return undefined;
  if (!(FUSE_BINDINGS as readonly string[]).includes(v)) throw new InvalidArgumentError(`ROSET_FUSE_BINDING must be one of ${FUSE_BINDINGS.join(', ')}`);
  return v as FuseBinding;
}

const program = addStoreOptions(new Command())
  .name('roset-mount')
  .description('Mount object storage with atomic, committed checkpoints (stays in the foreground)')
  .argument('<mountpoint>', 'directory to mount on (created if missing)')
  .option('--cache-size <size>', 'committed data kept in the read cache, e.g. 50G; least recently used goes first; staged data is never evicted [env ROSET_CACHE_SIZE] (default: no limit)', size)
  .option('--upload-while-writing', 'send the parts of a large file (64 MiB or more, written in order by one writer) while it is written, not from its close: the data is in the bucket sooner, but the upload takes CPU from the writer; worth it with spare cores and a remote store (docs/STORAGE.md) [env ROSET_UPLOAD_WHILE_WRITING=1]')
  .option('--no-prefetch-siblings', 'do not prefetch the other files of a folder into the read cache when one of its committed files is read cold (prefetch starts only what fits in --cache-size without evicting) [env ROSET_PREFETCH_SIBLINGS=0]')
  .option('--cache-dir <dir>', 'local staging and read cache [env ROSET_CACHE_DIR] (default: STATE_DIR/cache)')
  .option('--state-dir <dir>', 'state directory [env ROSET_STATE_DIR] (default: /var/lib/roset as root, else ~/.local/state/roset)')
  .option('--listen <host:port>', 'where the embedded API listens; port 0 picks a free one; an address other than loopback needs --tls-cert/--tls-key or --insecure-listen. With --api-url (an agent, no API): where GET /health and GET /metrics answer, plain HTTP [env ROSET_LISTEN]', listen)
  .option('--tls-cert <file>', 'serve the API over HTTPS with this PEM certificate chain [env ROSET_TLS_CERT]')
  .option('--tls-key <file>', 'the PEM private key of --tls-cert [env ROSET_TLS_KEY]')
  .option('--insecure-listen', 'allow plain HTTP on an address other than loopback: the API key and all metadata cross the network in clear text; only for a trusted network [env ROSET_INSECURE_LISTEN]')
  .option('--read-only', 'refuse all writes [env ROSET_READ_ONLY]')
  .option('--allow-other', 'let other users access the mount (needs user_allow_other) [env ROSET_ALLOW_OTHER]')
  .option('--seal-timeout <seconds>', 'how long a seal waits for open files to close [env ROSET_SEAL_TIMEOUT]', seconds)
  .option('--agent-timeout <seconds>', 'agents on other nodes may use this embedded control plane too: one silent this long while it holds files of a sealing folder fails the commit (AGENT_UNAVAILABLE) [env ROSET_AGENT_TIMEOUT] (default: 30)', seconds)
  .option('--drain-timeout <seconds>', 'how long SIGTERM waits for in-flight commits [env ROSET_DRAIN_TIMEOUT]', seconds)
  .option('--gc-interval <duration>', 'run garbage collection (roset gc, with its defaults) this often, such as 6h [env ROSET_GC_INTERVAL] (default: never)', duration)
  .option('--mount-name <name>', 'name of the mount in the control plane [env ROSET_MOUNT_NAME]')
  .option('--api-url <url>', 'serve a mount of this remote control plane (roset serve) instead of embedding one [env ROSET_API_URL]')
  .option('--api-key <key>', 'API key for --api-url [env ROSET_API_KEY]')
  .option('--mount <name>', 'with --api-url: the mount to serve, by name (created if missing) [env ROSET_MOUNT_NAME]')
  .option('--mount-id <id>', 'with --api-url: the mount to serve, by id [env ROSET_MOUNT_ID]')
  .option('--auto-commit <rule>', 'commit a folder when a framework\'s last file lands in it, then move a ref: FOLDERS:MARKER[:REF], e.g. \'checkpoints/*:@dcp:latest\' (FOLDERS a glob of mount-relative paths, * within a segment, ** across; MARKER a file name or a preset: @dcp); repeatable; the mount\'s rules (roset auto-commit) apply too [env ROSET_AUTO_COMMIT, rules separated by ;]', (v: string, prev: string[] = []) => [...prev, v])
  .option('--ca-file <file>', 'with an https:// --api-url: the PEM file of the CA that signed the control plane\'s certificate [env ROSET_CA_FILE]')
  .addOption(new Option('--fuse-binding <binding>', `FUSE binding: native (libfuse3, writeback cache, data path in C) or fuse-native (libfuse 2) [env ROSET_FUSE_BINDING] (default: ${DEFAULT_FUSE_BINDING})`).choices(FUSE_BINDINGS))
  .addOption(new Option('--log-level <level>', 'log level [env ROSET_LOG_LEVEL]').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
  .addOption(new Option('--log-format <format>', 'log lines: json, or text for people (default: text when stderr is a terminal, else json) [env ROSET_LOG_FORMAT]').choices(['json', 'text']))
  .showHelpAfterError()
  .action(async (mountpoint: string, o: Record<string, unknown>, cmd: Command) => {
    const stateDir = path.resolve((o.stateDir as string | undefined) ?? defaultStateDir(env));
    const apiUrl = (o.apiUrl as string | undefined) ?? (env.ROSET_API_URL || undefined);
    const apiKey = (o.apiKey as string | undefined) ?? (env.ROSET_API_KEY || undefined);
    if (apiUrl && !/^https?:\/\/[^/]/.test(apiUrl)) throw new InvalidArgumentError(`--api-url must be an http:// or https:// URL, not ${JSON.stringify(apiUrl)}`);
    if (apiUrl && !apiKey) throw new InvalidArgumentError('--api-url needs --api-key (or ROSET_API_KEY): the key roset serve wrote to its state directory, or one made with `roset key create`');
    if (!apiUrl && (o.mount !== undefined || o.mountId !== undefined)) throw new InvalidArgumentError('--mount and --mount-id choose a mount of a remote control plane: use them with --api-url');
    const stores = storeConfig(o, env, stateDir);
    if (apiUrl) {
      // An agent runs no API and no commits: these belong to `roset serve`.
      const serveFlags = ([['tlsCert', '--tls-cert'], ['tlsKey', '--tls-key'], ['insecureListen', '--insecure-listen'], ['sealTimeout', '--seal-timeout'], ['agentTimeout', '--agent-timeout'], ['gcInterval', '--gc-interval']] as const)
        .filter(([k]) => o[k] !== undefined).map(([, f]) => f);
      if (serveFlags.length > 0) throw new InvalidArgumentError(`${serveFlags.join(', ')} configure an embedded control plane; with --api-url the control plane is roset serve: set them there`);
    }
    const l = (o.listen as { host: string; port: number } | undefined) ?? (env.ROSET_LISTEN ? listen(env.ROSET_LISTEN) : { host: '127.0.0.1', port: 7070 });
    const tls = apiUrl ? null : tlsFiles((o.tlsCert as string | undefined) ?? (env.ROSET_TLS_CERT || undefined), (o.tlsKey as string | undefined) ?? (env.ROSET_TLS_KEY || undefined));
    const insecureListen = (o.insecureListen as boolean | undefined) ?? envFlag(env.ROSET_INSECURE_LISTEN) ?? false;
    // Before anything starts: a refused listen address must not leave a mount behind.
    if (!apiUrl) checkListenPolicy({ host: l.host, tls, insecureListen });
    const cfg: DaemonConfig = {
      mountpoint: path.resolve(mountpoint),
      stateDir,
      cacheMaxBytes: (o.cacheSize as number | undefined) ?? (env.ROSET_CACHE_SIZE ? size(env.ROSET_CACHE_SIZE) : 0),
      // Commander sets `prefetchSiblings` to true unless --no-prefetch-siblings: the flag is
      // told from the default by where its value came from.
      prefetchSiblings: cmd.getOptionValueSource('prefetchSiblings') === 'cli' ? (o.prefetchSiblings as boolean) : envFlag(env.ROSET_PREFETCH_SIBLINGS) ?? true,
      uploadWhileWriting: o.uploadWhileWriting === true || (envFlag(env.ROSET_UPLOAD_WHILE_WRITING) ?? false),
      cacheDir: path.resolve((o.cacheDir as string | undefined) ?? env.ROSET_CACHE_DIR ?? path.join(stateDir, 'cache')),
      ...stores,
      // An agent learns the bucket from its control plane unless told otherwise.
      store: apiUrl ? ((o.store as string | undefined) ?? (env.ROSET_STORE || null)) : stores.store,
      ...(apiUrl ? {
        remote: {
          apiUrl, apiKey: apiKey!,
          mountId: (o.mountId as string | undefined) ?? (env.ROSET_MOUNT_ID || undefined),
          mountName: (o.mount as string | undefined) ?? (o.mountName as string | undefined) ?? (env.ROSET_MOUNT_NAME || undefined),
          caFile: ((o.caFile as string | undefined) ?? (env.ROSET_CA_FILE || undefined)),
        },
      } : {}),
      listenHost: l.host,
      listenPort: l.port,
      // An agent's --listen answers /health and /metrics only (nothing secret: plain HTTP).
      metricsListen: apiUrl ? (o.listen as { host: string; port: number } | undefined) ?? (env.ROSET_LISTEN ? listen(env.ROSET_LISTEN) : null) : null,
      tls,
      insecureListen,
      readOnly: (o.readOnly as boolean | undefined) ?? envFlag(env.ROSET_READ_ONLY) ?? false,
      allowOther: (o.allowOther as boolean | undefined) ?? envFlag(env.ROSET_ALLOW_OTHER) ?? false,
      sealTimeoutMs: 1000 * ((o.sealTimeout as number | undefined) ?? (env.ROSET_SEAL_TIMEOUT ? seconds(env.ROSET_SEAL_TIMEOUT) : 60)),
      agentTimeoutMs: 1000 * ((o.agentTimeout as number | undefined) ?? (env.ROSET_AGENT_TIMEOUT ? seconds(env.ROSET_AGENT_TIMEOUT) : 30)),
      drainTimeoutMs: 1000 * ((o.drainTimeout as number | undefined) ?? (env.ROSET_DRAIN_TIMEOUT ? seconds(env.ROSET_DRAIN_TIMEOUT) : 300)),
      mountName: (o.mountName as string | undefined) ?? env.ROSET_MOUNT_NAME ?? 'default',
      autoCommit: autoCommitRules((o.autoCommit as string[] | undefined) ?? (env.ROSET_AUTO_COMMIT ? env.ROSET_AUTO_COMMIT.split(';').map((r) => r.trim()).filter(Boolean) : [])),
      fuseBinding: (o.fuseBinding as FuseBinding | undefined) ?? fuseBindingFromEnv(env.ROSET_FUSE_BINDING) ?? DEFAULT_FUSE_BINDING,
      gcIntervalMs: apiUrl ? 0 : (o.gcInterval as number | undefined) ?? (env.ROSET_GC_INTERVAL ? duration(env.ROSET_GC_INTERVAL) : 0),
    };
    const log = createLogger(((o.logLevel as string | undefined) ?? env.ROSET_LOG_LEVEL ?? 'info') as LogLevel,
      resolveLogFormat(o.logFormat as string | undefined, env.ROSET_LOG_FORMAT));
    const daemon = new Daemon(cfg, log);
    // Under systemd (Type=notify): READY=1 once the mount answers, STOPPING=1 on a signal.
    let notifier: ServiceNotifier | null = null;
    const shutdown = (signal: string): void => {
      notifier?.stopping(signal === 'unmounted' ? `Stopping: ${cfg.mountpoint} was unmounted; draining in-flight commits` : `Stopping (${signal}): draining in-flight commits, then unmounting ${cfg.mountpoint}`);
      daemon.stop(signal).then(() => process.exit(0), (err: unknown) => {
        log.error({ err: (err as Error).message }, 'shutdown failed');
        process.exit(1);
      });
    };
    daemon.onUnmounted = () => shutdown('unmounted');
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));
    try {
      notifier = ServiceNotifier.fromEnv(env, log);
      await daemon.start();
      // daemon.json is written: the mount is up and answers.
      notifier?.ready(`Mounted ${cfg.mountpoint} (${cfg.remote ? `agent of ${cfg.remote.apiUrl}` : `API at ${daemon.endpoint}`})`);
    } catch (err) {
      log.fatal({ err: (err as Error).message }, 'roset-mount could not start');
      await daemon.stop('start failed').catch(() => undefined);
      // Let pino flush before exiting.
      setTimeout(() => process.exit(1), 50);
    }
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`roset-mount: ${(err as Error).message}\n`);
  process.exit(1);
});
