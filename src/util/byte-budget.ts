/**
 * A budget of bytes shared by concurrent tasks (a weighted semaphore): a task takes
 * the bytes it will hold in memory and gives them back when done.
 *
 * Invariants: the bytes taken never exceed the budget, except that one request larger
 * than the whole budget is let through alone (so it cannot wait forever); waiters are
 * served first come, first served, so a large request is not starved by small ones.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: Array<{ bytes: number; go: () => void }> = [];

  constructor(readonly total: number) {}

  /** Resolves once `bytes` are taken; call the returned function exactly once to give them back. */
  async take(bytes: number): Promise<() => void> {
    const want = Math.min(bytes, this.total);
    if (this.waiting.length === 0 && this.used + want <= this.total) {
      this.used += want;
    } else {
      await new Promise<void>((go) => this.waiting.push({ bytes: want, go }));
    }
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.used -= want;
      this.admit();
    };
  }

  private admit(): void {
    while (this.waiting.length > 0 && this.used + this.waiting[0]!.bytes <= this.total) {
      const w = this.waiting.shift()!;
      this.used += w.bytes;
      w.go();
    }
  }

  get inUse(): number {
    return this.used;
  }
}
