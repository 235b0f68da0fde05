/**
 * A throttled writer of the latest value: progress reports that may come thousands of
 * times a second reach a database or a connection at most once per interval.
 *
 * Invariants:
 * - Only the latest value pushed is written; at most one write is in flight, and two
 *   writes start at least `intervalMs` apart (`flush` excepted).
 * - The last value pushed is written eventually (a trailing write), unless `stop`
 *   drops it. A failed write is reported to `onError` and never thrown.
 */
export class LatestThrottle<T> {
  private pending: { value: T } | null = null;
  private lastStart = -Infinity;
  private inflight: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly write: (value: T) => Promise<void>, private readonly intervalMs: number,
    private readonly onError: (err: unknown) => void = () => undefined) {}

  /** Remembers `value` and writes it now if the interval allows, later otherwise. */
  push(value: T): void {
    if (this.stopped) return;
    this.pending = { value };
    this.schedule();
  }

  private schedule(): void {
    if (this.inflight || this.timer || !this.pending || this.stopped) return;
    const wait = this.lastStart + this.intervalMs - Date.now();
    if (wait > 0) {
      this.timer = setTimeout(() => { this.timer = null; this.schedule(); }, wait);
      this.timer.unref?.();
      return;
    }
    this.start();
  }

  private start(): Promise<void> {
    const { value } = this.pending!;
    this.pending = null;
    this.lastStart = Date.now();
    const p = this.write(value).catch((err: unknown) => this.onError(err)).finally(() => {
      this.inflight = null;
      this.schedule();
    });
    this.inflight = p;
    return p;
  }

  /** Writes the latest value now (after a write in flight), whatever the interval. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.timer) { clearTimeout(this.timer); this.timer = null; }
      if (this.inflight) await this.inflight;
      else if (this.pending && !this.stopped) await this.start();
      else return;
    }
  }

  /** Drops what was not written and writes nothing more. */
  stop(): void {
    this.stopped = true;
    this.pending = null;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
  }
}
