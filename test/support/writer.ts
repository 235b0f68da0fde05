/**
 * A separate writer process, as a training job would be: it writes a file through the
 * mount in chunks, forever or for a size, so tests can SIGKILL it (or the daemon)
 * mid-write.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const SCRIPT = `
const fs = require('fs');
const [file, total, chunk] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const buf = require('crypto').randomBytes(chunk);
const fd = fs.openSync(file, 'w');
let written = 0;
process.stdout.write('open\\n');
const tick = () => {
  try {
    fs.writeSync(fd, buf);
  } catch (e) { process.stdout.write('error ' + e.code + '\\n'); process.exit(3); }
  written += buf.length;
  // The first chunk is made durable, so a test can rely on it surviving a daemon crash
  // (with the kernel's writeback cache, unsynced writes may not have reached the daemon).
  if (written === chunk) { fs.fsyncSync(fd); process.stdout.write('writing\\n'); }
  if (total > 0 && written >= total) { fs.closeSync(fd); process.stdout.write('closed\\n'); process.exit(0); }
  setTimeout(tick, 5);
};
tick();
`;

export interface Writer {
  proc: ChildProcess;
  /** Resolves once the given line was printed: 'open', 'writing', 'closed'. */
  reached: (line: string) => Promise<void>;
  exited: Promise<number | null>;
}

export function startWriter(file: string, totalBytes = 0, chunkBytes = 1 << 20): Writer {
  const proc = spawn(process.execPath, ['-e', SCRIPT, file, String(totalBytes), String(chunkBytes)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters: Array<[string, () => void]> = [];
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const [line, resolve] of waiters) if (out.split('\n').includes(line)) resolve();
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return {
    proc,
    exited,
    reached: (line) => new Promise<void>((resolve, reject) => {
      if (out.split('\n').includes(line)) return resolve();
      waiters.push([line, resolve]);
      void exited.then(() => { if (!out.split('\n').includes(line)) reject(new Error(`writer exited before "${line}": ${out}`)); });
    }),
  };
}
