/**
 * `roset serve`: runs the control plane alone (src/daemon/serve.ts) in the foreground,
 * for several nodes whose `roset-mount --api-url` agents share one namespace.
 * Flags beat `ROSET_*` variables, which beat the defaults; SIGTERM/SIGINT stop it
 * cleanly.
 */
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import { ServiceNotifier } from '../../daemon/sd-notify.js';
import { ControlServer, type ServeConfig } from '../../daemon/serve.js';
import { createLogger, resolveLogFormat, type LogLevel } from '../../util/log.js';
import { defaultStateDir } from '../../util/state-dir.js';
import { duration, seconds } from '../../util/cli-args.js';
import { globalsOf } from '../context.js';
import { addStoreOptions, envFlag, storeConfig } from '../store-options.js';
import { listen, tlsFiles } from '../listen-options.js';
import { checkListenPolicy } from '../../api/listen-policy.js';

const env = process.env;


const secs = (flag: unknown, envValue: string | undefined, dflt: number): number =>
  1000 * ((flag as number | undefined) ?? (envValue ? seconds(envValue) : dflt));

export function registerServe(program: Command): void {
  addStoreOptions(program
    .command('serve')
    .description('Run the control plane alone (stays in the foreground): the /v1 API, metadata, and commits across the roset-mount agents of many nodes'))
    .option('--database <url>', 'metadata: postgres://USER:PASS@HOST:PORT/DB, or sqlite:PATH [env ROSET_DATABASE] (default: sqlite: in the state directory)')
    .option('--listen <host:port>', 'where the API listens; port 0 picks a free one; an address other than loopback needs --tls-cert/--tls-key or --insecure-listen [env ROSET_LISTEN] (default: 127.0.0.1:7070)', listen)
    .option('--tls-cert <file>', 'serve the API over HTTPS with this PEM certificate chain [env ROSET_TLS_CERT]')
    .option('--tls-key <file>', 'the PEM private key of --tls-cert [env ROSET_TLS_KEY]')
    .option('--insecure-listen', 'allow plain HTTP on an address other than loopback: API keys and all metadata cross the network in clear text; only for a trusted network [env ROSET_INSECURE_LISTEN]')
    .option('--agent-timeout <seconds>', 'an agent silent this long while it holds files of a sealing folder fails the commit (AGENT_UNAVAILABLE) [env ROSET_AGENT_TIMEOUT] (default: 30)', seconds)
    .option('--seal-timeout <seconds>', 'how long a seal waits for files open for writing on every node [env ROSET_SEAL_TIMEOUT] (default: 60)', seconds)
    .option('--drain-timeout <seconds>', 'how long SIGTERM waits for commits driven here [env ROSET_DRAIN_TIMEOUT] (default: 300)', seconds)
    .option('--commit-lease <seconds>', 'how long a commit\'s driver may go unheard before another serve takes the commit over [env ROSET_COMMIT_LEASE] (default: 15)', seconds)
    .option('--gc-interval <duration>', 'run garbage collection (roset gc, with its defaults) this often, such as 6h; one run at a time across every serve of the database [env ROSET_GC_INTERVAL] (default: never)', duration)
    .option('--mount-name <name>', 'the default mount, created at first start [env ROSET_MOUNT_NAME] (default: default)')
    .addOption(new Option('--log-level <level>', 'log level [env ROSET_LOG_LEVEL]').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .addOption(new Option('--log-format <format>', 'log lines: json, or text for people (default: text when stderr is a terminal, else json) [env ROSET_LOG_FORMAT]').choices(['json', 'text']))
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const stateDir = path.resolve(globalsOf(cmd).stateDir ?? defaultStateDir(env));
      const l = (o.listen as { host: string; port: number } | undefined) ?? (env.ROSET_LISTEN ? listen(env.ROSET_LISTEN) : { host: '127.0.0.1', port: 7070 });
      const tls = tlsFiles((o.tlsCert as string | undefined) ?? (env.ROSET_TLS_CERT || undefined), (o.tlsKey as string | undefined) ?? (env.ROSET_TLS_KEY || undefined));
      const insecureListen = (o.insecureListen as boolean | undefined) ?? envFlag(env.ROSET_INSECURE_LISTEN) ?? false;
      // Before anything starts: a refused listener must not leave a half-started server.
      checkListenPolicy({ host: l.host, tls, insecureListen });
      const cfg: ServeConfig = {
        stateDir,
        database: (o.database as string | undefined) ?? env.ROSET_DATABASE ?? 'sqlite:',
        ...storeConfig(o, env, stateDir),
        listenHost: l.host,
        listenPort: l.port,
        tls,
        insecureListen,
        mountName: (o.mountName as string | undefined) ?? env.ROSET_MOUNT_NAME ?? 'default',
        agentTimeoutMs: secs(o.agentTimeout, env.ROSET_AGENT_TIMEOUT, 30),
        sealTimeoutMs: secs(o.sealTimeout, env.ROSET_SEAL_TIMEOUT, 60),
        drainTimeoutMs: secs(o.drainTimeout, env.ROSET_DRAIN_TIMEOUT, 300),
        leaseMs: secs(o.commitLease, env.ROSET_COMMIT_LEASE, 15),
        gcIntervalMs: (o.gcInterval as number | undefined) ?? (env.ROSET_GC_INTERVAL ? duration(env.ROSET_GC_INTERVAL) : 0),
      };
      const log = createLogger(((o.logLevel as string | undefined) ?? env.ROSET_LOG_LEVEL ?? 'info') as LogLevel,
        resolveLogFormat(o.logFormat as string | undefined, env.ROSET_LOG_FORMAT));
      const server = new ControlServer(cfg, log);
      // Under systemd (Type=notify): READY=1 once the API listens, STOPPING=1 on a signal.
      const notifier = ServiceNotifier.fromEnv(env, log);
      // Resolves when a signal has stopped the server: the command ends then.
      await new Promise<void>((resolve, reject) => {
        const shutdown = (signal: string): void => {
          notifier?.stopping(`Stopping (${signal}): draining the commits driven here`);
          server.stop(signal).then(resolve, reject);
        };
        process.once('SIGTERM', () => shutdown('SIGTERM'));
        process.once('SIGINT', () => shutdown('SIGINT'));
        server.start().then(() => notifier?.ready(`Serving the API at ${server.endpoint}`)).catch(async (err: unknown) => {
          log.fatal({ err: (err as Error).message }, 'roset serve could not start');
          await server.stop('start failed').catch(() => undefined);
          reject(err);
        });
      });
    });
}
