/**
 * The sd_notify protocol (src/daemon/sd-notify.ts), against a real unix datagram
 * socket of the kind systemd listens on: a python3 helper binds it (Node cannot) and,
 * the moment each datagram arrives, records it together with what the mountpoint looks
 * like then (in /proc/mounts as fuse.roset? does a stat answer, on another device than
 * its parent?). `roset-mount` sends READY=1 only once its mount answers, and
 * STOPPING=1 on SIGTERM (sent first; when it is read the unmount may be done already);
 * `roset serve` sends READY=1 once its API
 * listens (here to a socket in the abstract namespace, NOTIFY_SOCKET=@name).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, tempRoot } from '../support/daemon.js';
import { startServe, stopCluster } from '../support/cluster.js';

/** Binds argv[1] ('@name': abstract) and prints one JSON line per datagram. */
const LISTENER = String.raw`
import json, os, socket, sys
addr, mnt, state = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\0' + addr[1:] if addr.startswith('@') else addr)
print(json.dumps({'listening': True}), flush=True)
def fuse_type():
    for line in open('/proc/mounts'):
        f = line.split(' ')
        if len(f) > 2 and f[1] == mnt:
            return f[2]
    return None
while True:
    msg = s.recv(4096).decode()
    seen = {'msg': msg, 'fstype': fuse_type(), 'stateFile': os.path.exists(state) if state else None}
    if mnt != '-':
        try:
            seen['ownDevice'] = os.stat(mnt).st_dev != os.stat(os.path.dirname(mnt)).st_dev
        except OSError as e:
            seen['statError'] = e.strerror
    print(json.dumps(seen), flush=True)
`;

interface Seen {
  msg: string;
  fstype: string | null;
  stateFile: boolean | null;
  ownDevice?: boolean;
  statError?: string;
}

interface Listener {
  seen: Seen[];
  proc: ChildProcess;
  /** Resolves with the first datagram whose text matches. */
  next: (re: RegExp, ms?: number) => Promise<Seen>;
}

const listeners: ChildProcess[] = [];

async function listen(addr: string, mnt: string, stateFile: string): Promise<Listener> {
  const proc = spawn('python3', ['-c', LISTENER, addr, mnt, stateFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  listeners.push(proc);
  const seen: Seen[] = [];
  let ready!: () => void;
  const listening = new Promise<void>((r) => { ready = r; });
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    const v = JSON.parse(l) as Seen & { listening?: boolean };
    if (v.listening) ready();
    else seen.push(v);
  });
  await listening;
  return {
    seen, proc,
    next: async (re, ms = 30_000) => {
      const end = Date.now() + ms;
      for (;;) {
        const hit = seen.find((s) => re.test(s.msg));
        if (hit) return hit;
        if (Date.now() > end) throw new Error(`no datagram matching ${re} (got ${JSON.stringify(seen)})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

const roots: string[] = [];

afterAll(async () => {
  await stopAll();
  await stopCluster();
  for (const p of listeners) p.kill('SIGKILL');
  for (const r of roots) removeRoot(r);
});

describe('sd_notify', () => {
  it('roset-mount sends READY=1 only once its mount answers, and STOPPING=1 on SIGTERM', async () => {
    const root = tempRoot();
    roots.push(root);
    const mnt = path.join(root, 'mnt');
    const sock = path.join(root, 'notify.sock');
    const l = await listen(sock, mnt, path.join(root, 'state', 'daemon.json'));
    const d = await startDaemon({ root, env: { NOTIFY_SOCKET: sock } });

    const ready = await l.next(/^READY=1$/m);
    expect(ready).toEqual({ msg: `READY=1\nSTATUS=Mounted ${mnt} (API at ${d.endpoint})`, fstype: 'fuse.roset', stateFile: true, ownDevice: true });
    // Nothing came before it that claimed readiness.
    expect(l.seen.indexOf(ready)).toBe(0);

    const pid = d.proc.pid!;
    await d.stop();
    const stopping = await l.next(/^STOPPING=1$/m);
    expect(stopping.msg).toBe(`STOPPING=1\nSTATUS=Stopping (SIGTERM): draining in-flight commits, then unmounting ${mnt}`);
    // (Whether the listener still sees the mount when it reads the message is a race
    // with the daemon's own unmount, an idle one's in milliseconds: not asserted.)
    expect(l.seen.map((s) => s.msg.split('\n')[0])).toEqual(['READY=1', 'STOPPING=1']);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
  });

  it('roset-mount refuses to start when NOTIFY_SOCKET is not a socket address', async () => {
    const root = tempRoot();
    roots.push(root);
    await expect(startDaemon({ root, env: { NOTIFY_SOCKET: 'relative/path' } })).rejects.toThrow(/NOTIFY_SOCKET must be an absolute path or an abstract name/);
  });

  it('roset serve sends READY=1 once its API listens, to a socket in the abstract namespace', async () => {
    const root = tempRoot('roset-serve-');
    roots.push(root);
    const name = `@roset-test-${randomBytes(6).toString('hex')}`;
    const l = await listen(name, '-', path.join(root, 'state', 'serve.json'));
    const s = await startServe({ root, store: `file://${path.join(root, 'store')}`, env: { NOTIFY_SOCKET: name } });
    const ready = await l.next(/^READY=1$/m);
    expect(ready.msg).toBe(`READY=1\nSTATUS=Serving the API at ${s.endpoint}`);
    expect(ready.stateFile).toBe(true);
    expect(JSON.parse(readFileSync(path.join(root, 'state', 'serve.json'), 'utf8')).pid).toBe(s.proc.pid);
    await s.stop();
    expect((await l.next(/^STOPPING=1$/m)).msg).toBe('STOPPING=1\nSTATUS=Stopping (SIGTERM): draining the commits driven here');
  });
});
