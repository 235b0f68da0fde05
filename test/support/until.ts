/**
 * `until`: polls a probe until it answers (a truthy value), with a deadline, so that a
 * test waits on state, never on a fixed time. The poll interval only bounds how late
 * the test notices; a slow machine makes it wait longer, not fail.
 */
import { sleep } from '../../src/util/sleep.js';

export async function until<T>(what: string, f: () => Promise<T | null | undefined> | T | null | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
