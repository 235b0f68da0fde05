/**
 * Where the state directory is (design §5): `--state-dir`, then `ROSET_STATE_DIR`,
 * then `/var/lib/roset` for root and `~/.local/state/roset` for everyone else. The
 * daemon writes `api-key` (0600), `endpoint` and `daemon.json` there; the CLI and
 * SDKs read them.
 */
import * as os from 'node:os';
import * as path from 'node:path';

export const STATE_FILES = {
  apiKey: 'api-key',
  endpoint: 'endpoint',
  daemon: 'daemon.json',
  metadata: 'metadata.db',
  agentId: 'agent-id',
  /** `roset serve`: its pid while it runs, and its id in commit leases. */
  server: 'serve.json',
  serverId: 'server-id',
} as const;

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ROSET_STATE_DIR) return path.resolve(env.ROSET_STATE_DIR);
  if (process.getuid?.() === 0) return '/var/lib/roset';
  return path.join(os.homedir(), '.local', 'state', 'roset');
}

export interface DaemonInfo {
  pid: number;
  mountpoint: string;
  endpoint: string;
  /**
   * The daemon's `--cache-size` in bytes (0: no limit), for `roset prefetch` and
   * `roset status`; absent in the file of a daemon of an earlier release.
   */
  cacheMaxBytes?: number;
}
