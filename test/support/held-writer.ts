/**
 * A writer process that holds one file open and writes only when told: a rank still
 * saving its shard while another node commits. Commands on stdin: `write N` (N random
 * bytes; answers `wrote`), `sync` (fsync: the bytes reach the daemon even through a
 * writeback cache; answers `synced`), `close` (answers `closed <sha256 of everything written>`).
 * It answers `open` once the file is open for writing, or `error CODE` if the open
 * failed, and exits after `close`.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const SCRIPT = `
const fs = require('fs');
const crypto = require('crypto');
const file = process.argv[1];
let fd;
try { fd = fs.openSync(file, 'w'); } catch (e) { process.stdout.write('error ' + e.code + '\\n'); process.exit(3); }
const hash = crypto.createHash('sha256');
process.stdout.write('open\\n');
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1);
    const [cmd, arg] = line.split(' ');
    try {
      if (cmd === 'write') {
        let left = Number(arg);
        while (left > 0) { const b = crypto.randomBytes(Math.min(left, 1 << 20)); fs.writeSync(fd, b); hash.update(b); left -= b.length; }
        process.stdout.write('wrote\\n');
      } else if (cmd === 'sync') {
        fs.fsyncSync(fd);
        process.stdout.write('synced\\n');
      } else if (cmd === 'close') {
        fs.closeSync(fd);
        process.stdout.write('closed ' + hash.digest('hex') + '\\n');
        process.exit(0);
      }
    } catch (e) { process.stdout.write('error ' + e.code + '\\n'); process.exit(3); }
  }
});
`;

export interface HeldWriter {
  proc: ChildProcess;
  /** Resolves with the first line starting with `prefix`. */
  line: (prefix: string) => Promise<string>;
  write: (bytes: number) => Promise<void>;
  /** fsync(2) of the file. */
  sync: () => Promise<void>;
  /** Closes the file; resolves with the sha256 of every byte written. */
  close: () => Promise<string>;
  exited: Promise<number | null>;
}

export function startHeldWriter(file: string): HeldWriter {
  const proc = spawn(process.execPath, ['-e', SCRIPT, file], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let partial = '';
  let consumed = 0;
  let waiter: { prefix: string; resolve: (l: string) => void; reject: (e: Error) => void } | null = null;
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const check = (): void => {
    if (!waiter) return;
    for (let j = consumed; j < lines.length; j++) {
      const l = lines[j]!;
      if (!l.startsWith(waiter.prefix) && !l.startsWith('error')) continue;
      consumed = j + 1;
      const w = waiter;
      waiter = null;
      if (l.startsWith(w.prefix)) w.resolve(l);
      else w.reject(new Error(`writer of ${file}: ${l}`));
      return;
    }
  };
  proc.stdout!.on('data', (d: Buffer) => {
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    check();
  });
  void exited.then(() => setTimeout(() => waiter?.reject(new Error(`writer of ${file} exited: ${lines.join(' | ')}`)), 20));
  const line = (prefix: string): Promise<string> => new Promise((resolve, reject) => {
    waiter = { prefix, resolve, reject };
    check();
  });
  return {
    proc, line, exited,
    write: async (bytes) => {
      const p = line('wrote');
      proc.stdin!.write(`write ${bytes}\n`);
      await p;
    },
    sync: async () => {
      const p = line('synced');
      proc.stdin!.write('sync\n');
      await p;
    },
    close: async () => {
      const p = line('closed');
      proc.stdin!.write('close\n');
      return (await p).split(' ')[1]!;
    },
  };
}
