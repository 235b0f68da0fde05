/**
 * The sd_notify protocol: tells a service manager (systemd, `Type=notify`) that this
 * process is ready, what it is doing, and that it is stopping. Each message is one
 * datagram of `KEY=value` lines sent to the unix socket named by NOTIFY_SOCKET (a path,
 * or '@' for the abstract namespace), from this process itself, so the sender is the
 * service's main pid. Node has no unix datagram sockets: the native addon sends it.
 *
 * Invariant: without NOTIFY_SOCKET nothing is sent (and the addon is not loaded).
 * The variable is taken out of the environment when read, so no child process (a
 * fusermount) can answer for this one.
 */
import { constants } from 'node:os';
import type { Logger } from 'pino';
import { loadNativeBinding } from '../fuse/native-binding.js';

export class ServiceNotifier {
  private constructor(private readonly socket: string, private readonly send: (socket: string, state: string) => number, private readonly log: Logger) {}

  /** A notifier for the socket in NOTIFY_SOCKET, or null when no service manager asked for one. */
  static fromEnv(env: NodeJS.ProcessEnv, log: Logger): ServiceNotifier | null {
    const socket = env.NOTIFY_SOCKET;
    delete env.NOTIFY_SOCKET;
    if (!socket) return null;
    if (!/^[/@]./.test(socket)) throw new Error(`NOTIFY_SOCKET must be an absolute path or an abstract name starting with '@', not ${JSON.stringify(socket)}`);
    const native = loadNativeBinding();
    return new ServiceNotifier(socket, (s, state) => native.notify(s, state), log);
  }

  /** The service is up: `READY=1`, with a status line. */
  ready(status: string): void {
    this.send1(`READY=1\nSTATUS=${oneLine(status)}`);
  }

  /** Shutdown has begun (systemd shows the unit as deactivating). */
  stopping(status: string): void {
    this.send1(`STOPPING=1\nSTATUS=${oneLine(status)}`);
  }

  private send1(state: string): void {
    const rc = this.send(this.socket, state);
    if (rc !== 0) {
      const code = Object.entries(constants.errno).find(([, v]) => v === -rc)?.[0] ?? String(rc);
      this.log.warn({ socket: this.socket, code, state: state.split('\n')[0] }, 'could not notify the service manager');
    }
  }
}

/** A status is one line of the datagram. */
function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}
