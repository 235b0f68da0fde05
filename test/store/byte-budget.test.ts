/**
 * The byte budget that bounds S3 part buffers across concurrent uploads: never more
 * taken than the budget, first come first served, and an oversized request still runs.
 */
import { describe, expect, it } from 'vitest';
import { ByteBudget } from '../../src/util/byte-budget.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('ByteBudget', () => {
  it('never lets more than the budget be taken at once, and serves waiters in order', async () => {
    const b = new ByteBudget(100);
    const order: string[] = [];
    const g1 = await b.take(60);
    const p2 = b.take(60).then((g) => { order.push('second'); return g; });
    const p3 = b.take(10).then((g) => { order.push('third'); return g; });
    await tick();
    // The small request waits behind the large one: no starvation.
    expect(order).toEqual([]);
    expect(b.inUse).toBe(60);
    g1();
    const g2 = await p2;
    const g3 = await p3;
    expect(order).toEqual(['second', 'third']);
    expect(b.inUse).toBe(70);
    g2();
    g2(); // giving back twice is harmless
    g3();
    expect(b.inUse).toBe(0);
  });

  it('lets a request larger than the whole budget through, alone', async () => {
    const b = new ByteBudget(10);
    const big = await b.take(1000);
    expect(b.inUse).toBe(10);
    let small = false;
    const p = b.take(1).then((g) => { small = true; return g; });
    await tick();
    expect(small).toBe(false);
    big();
    (await p)();
    expect(small).toBe(true);
  });
});
