/**
 * Human-readable output for the CLI: sizes, commit summaries, and the one-line progress
 * display used while waiting on a terminal.
 *
 * Invariant: the progress line is drawn only when stderr is a TTY, so piped output
 * never contains escapes or carriage returns; before anything else is printed it is
 * either cleared or ended with a newline (a completed commit's last frame, at 100 %,
 * stays on screen).
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

/** What share of a pending commit is done: its progress's bytes (files when it has no bytes), or undefined before totals are known. */
export function commitProgress(c: Commit): number | undefined {
  const p = c.progress;
  if (!p) return undefined;
  if (p.phase === 'manifest') return 1;
  if (p.bytesTotal > 0) return Math.min(1, p.bytesUploaded / p.bytesTotal);
  if (p.filesTotal > 0) return Math.min(1, p.filesDone / p.filesTotal);
  return p.phase === 'uploading' ? 1 : undefined;
}

/** A pending commit's progress in words, for `roset status`: phase, share, files and bytes. */
export function describeProgress(c: Commit): string {
  const p = c.progress;
  if (!p) return c.status;
  if (p.phase === 'sealing') return 'sealing (waiting for writers)';
  if (p.phase === 'manifest') return `writing the manifest, ${plural(p.filesTotal, 'file')}, ${formatBytes(p.bytesTotal)}`;
  const share = commitProgress(c);
  return `uploading ${share === undefined ? '' : `${Math.floor(share * 100)}% `}${p.filesDone}/${p.filesTotal} files, ${formatBytes(p.bytesUploaded)} / ${formatBytes(p.bytesTotal)}`;
}

export function formatDuration(s: number): string {
  const t = Math.max(0, Math.round(s));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** How many samples of (time, bytes) the rate is averaged over: the last RATE_WINDOW_MS. */
const RATE_WINDOW_MS = 5000;
const BAR_WIDTH = 16;

export class ProgressLine {
  readonly enabled: boolean;
  private readonly started = Date.now();
  private readonly samples: Array<{ at: number; bytes: number }> = [];
  private drawn = false;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.enabled = Boolean(stream.isTTY);
  }

  /**
   * Draws a commit as it is now: its phase, and while uploading a bar with rate and ETA.
   * The path comes last, so a narrow terminal cuts it rather than the numbers.
   */
  commit(c: Commit): void {
    const secs = (Date.now() - this.started) / 1000;
    if (c.status === 'completed') {
      // The last frame stays on screen: the bar full, the whole time taken.
      this.draw(`${bar(1)} 100% ${plural(c.stats.files, 'file')}, ${formatBytes(c.stats.bytes)} in ${formatDuration(secs)}  ${c.path}`);
      this.finish();
      return;
    }
    const p = c.progress;
    if (c.status !== 'pending' || !p) {
      this.draw(`${c.status} ${formatDuration(secs)}  ${c.path} ${c.id}`);
      return;
    }
    if (p.phase === 'sealing') {
      this.draw(`sealing (waiting for writers) ${formatDuration(secs)}  ${c.path} ${c.id}`);
      return;
    }
    const share = commitProgress(c) ?? 0;
    const rate = this.rate(p.bytesUploaded);
    const left = p.bytesTotal - p.bytesUploaded;
    const eta = p.phase === 'manifest' ? 'manifest' : rate > 0 ? `ETA ${formatDuration(left / rate)}` : 'ETA -:--';
    this.draw(`${bar(share)} ${String(Math.floor(share * 100)).padStart(3)}% ${p.filesDone}/${p.filesTotal} files `
      + `${formatBytes(p.bytesUploaded)}/${formatBytes(p.bytesTotal)} ${rate > 0 ? `${formatBytes(rate)}/s` : '- B/s'} ${eta}  ${c.path}`);
  }

  /** Bytes per second over the last RATE_WINDOW_MS. */
  private rate(bytes: number): number {
    const now = Date.now();
    this.samples.push({ at: now, bytes });
    while (this.samples.length > 2 && now - this.samples[0]!.at > RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0]!;
    const dt = (now - first.at) / 1000;
    return dt > 0.2 ? Math.max(0, (bytes - first.bytes) / dt) : 0;
  }

  draw(text: string): void {
    if (!this.enabled) return;
    const width = this.stream.columns ? this.stream.columns - 1 : 100;
    this.stream.write(`\r\x1b[K${text.slice(0, width)}`);
    this.drawn = true;
  }

  /** Ends the line where it is: what was drawn last stays visible. */
  finish(): void {
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }

  clear(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}

function bar(share: number): string {
  const full = Math.round(Math.min(1, Math.max(0, share)) * BAR_WIDTH);
  return `[${'#'.repeat(full)}${'.'.repeat(BAR_WIDTH - full)}]`;
}
