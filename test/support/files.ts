/** Small helpers for writing and checking files in tests. */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, writeFileSync } from 'node:fs';

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

export async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Writes `size` random bytes and returns their sha256. */
export function writeRandom(file: string, size: number): string {
  const buf = randomBytes(size);
  writeFileSync(file, buf);
  return sha256(buf);
}

/** Runs `fn` and returns the errno code it threw (e.g. 'EROFS'), or null. */
export function errnoOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}
