/**
 * Human-readable output for the CLI: sizes, commit summaries, and the one-line progress
 * display used while waiting on a terminal.
 *
 * Invariant: the progress line is drawn only when stderr is a TTY and is always
 * cleared before anything else is printed, so piped output never contains escapes.
 */
import type { Commit } from '../sdk/index.js';

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function commitStats(c: Commit): string {
  const s = c.stats;
  const parts = [plural(s.files, 'file'), formatBytes(s.bytes)];
  if (s.uploadedBytes > 0 || s.dedupedBytes > 0) parts.push(`${formatBytes(s.uploadedBytes)} uploaded`, `${formatBytes(s.dedupedBytes)} deduplicated`);
  return parts.join(', ');
}

/** What share of the commit's bytes are in the store already (uploaded or deduplicated). */
export function commitProgress(c: Commit): number | undefined {
  const { bytes, uploadedBytes, dedupedBytes } = c.stats;
  return bytes > 0 ? Math.min(1, (uploadedBytes + dedupedBytes) / bytes) : undefined;
}

export class ProgressLine {
  readonly enabled: boolean;
  private readonly started = Date.now();
  private drawn = false;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.enabled = Boolean(stream.isTTY);
  }

  commit(c: Commit): void {
    const secs = Math.round((Date.now() - this.started) / 1000);
    const p = commitProgress(c);
    const what = c.stats.bytes > 0
      ? `${formatBytes(c.stats.uploadedBytes + c.stats.dedupedBytes)} / ${formatBytes(c.stats.bytes)}${p === undefined ? '' : ` (${Math.floor(p * 100)}%)`}, ${plural(c.stats.files, 'file')}`
      : c.status;
    this.draw(`committing ${c.path} ${c.id}: ${what}, ${secs}s`);
  }

  draw(text: string): void {
    if (!this.enabled) return;
    const width = this.stream.columns ? this.stream.columns - 1 : 100;
    this.stream.write(`\r\x1b[K${text.slice(0, width)}`);
    this.drawn = true;
  }

  clear(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
