/**
 * `roset serve`: runs the control plane alone (src/daemon/serve.ts) in the foreground,
 * for several nodes whose `roset-mount --api-url` agents share one namespace.
 * Flags beat `ROSET_*` variables, which beat the defaults; SIGTERM/SIGINT stop it
 * cleanly.
 */
import * as path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ControlServer, type ServeConfig } from '../../daemon/serve.js';
import { createLogger, type LogLevel } from '../../util/log.js';
import { defaultStateDir } from '../../util/state-dir.js';
import { globalsOf } from '../context.js';
import { addStoreOptions, storeConfig } from '../store-options.js';

const env = process.env;

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number of seconds');
  return n;
}

export function listenAddress(v: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) throw new InvalidArgumentError('expected HOST:PORT, e.g. 127.0.0.1:7070');
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

const secs = (flag: unknown, envValue: string | undefined, dflt: number): number =>
  1000 * ((flag as number | undefined) ?? (envValue ? seconds(envValue) : dflt));

export function registerServe(program: Command): void {
  addStoreOptions(program
    .command('serve')
    .description('Run the control plane alone (stays in the foreground): the /v1 API, metadata, and commits across the roset-mount agents of many nodes'))
    .option('--database <url>', 'metadata: postgres://USER:PASS@HOST:PORT/DB, or sqlite:PATH [env ROSET_DATABASE] (default: sqlite: in the state directory)')
    .option('--listen <host:port>', 'where the API listens; port 0 picks a free one [env ROSET_LISTEN] (default: 127.0.0.1:7070)', listenAddress)
    .option('--agent-timeout <seconds>', 'an agent silent this long while it holds files of a sealing folder fails the commit (AGENT_UNAVAILABLE) [env ROSET_AGENT_TIMEOUT] (default: 30)', seconds)
    .option('--seal-timeout <seconds>', 'how long a seal waits for files open for writing on every node [env ROSET_SEAL_TIMEOUT] (default: 60)', seconds)
    .option('--drain-timeout <seconds>', 'how long SIGTERM waits for commits driven here [env ROSET_DRAIN_TIMEOUT] (default: 300)', seconds)
    .option('--commit-lease <seconds>', 'how long a commit\'s driver may go unheard before another serve takes the commit over [env ROSET_COMMIT_LEASE] (default: 15)', seconds)
    .option('--mount-name <name>', 'the default mount, created at first start [env ROSET_MOUNT_NAME] (default: default)')
    .addOption(new Option('--log-level <level>', 'log level [env ROSET_LOG_LEVEL]').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const stateDir = path.resolve(globalsOf(cmd).stateDir ?? defaultStateDir(env));
      const l = (o.listen as { host: string; port: number } | undefined) ?? (env.ROSET_LISTEN ? listenAddress(env.ROSET_LISTEN) : { host: '127.0.0.1', port: 7070 });
      const cfg: ServeConfig = {
        stateDir,
        database: (o.database as string | undefined) ?? env.ROSET_DATABASE ?? 'sqlite:',
        ...storeConfig(o, env, stateDir),
        listenHost: l.host,
        listenPort: l.port,
        mountName: (o.mountName as string | undefined) ?? env.ROSET_MOUNT_NAME ?? 'default',
        agentTimeoutMs: secs(o.agentTimeout, env.ROSET_AGENT_TIMEOUT, 30),
        sealTimeoutMs: secs(o.sealTimeout, env.ROSET_SEAL_TIMEOUT, 60),
        drainTimeoutMs: secs(o.drainTimeout, env.ROSET_DRAIN_TIMEOUT, 300),
        leaseMs: secs(o.commitLease, env.ROSET_COMMIT_LEASE, 15),
      };
      const log = createLogger(((o.logLevel as string | undefined) ?? env.ROSET_LOG_LEVEL ?? 'info') as LogLevel);
      const server = new ControlServer(cfg, log);
      // Resolves when a signal has stopped the server: the command ends then.
      await new Promise<void>((resolve, reject) => {
        const shutdown = (signal: string): void => {
          server.stop(signal).then(resolve, reject);
        };
        process.once('SIGTERM', () => shutdown('SIGTERM'));
        process.once('SIGINT', () => shutdown('SIGINT'));
        server.start().catch(async (err: unknown) => {
          log.fatal({ err: (err as Error).message }, 'roset serve could not start');
          await server.stop('start failed').catch(() => undefined);
          reject(err);
        });
      });
    });
}
