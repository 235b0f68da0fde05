/**
 * sha256 of local files, streamed so memory stays bounded whatever the file size.
 * Invariant: one read buffer of at most 4 MiB per file being hashed, and no bigger
 * than the file needs (the uploader hashes many small files at once).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

const MAX_CHUNK = 4 << 20;
const MIN_CHUNK = 64 << 10;

/** `sizeHint`: the file's size when known, so a small file gets a small read buffer. */
export async function sha256File(path: string, sizeHint?: number): Promise<string> {
  const h = createHash('sha256');
  const highWaterMark = sizeHint === undefined ? MAX_CHUNK : Math.max(MIN_CHUNK, Math.min(MAX_CHUNK, sizeHint + 1));
  for await (const chunk of createReadStream(path, { highWaterMark })) h.update(chunk as Buffer);
  return h.digest('hex');
}
