/**
 * Committed objects in the local cache: fetched from the store on first read.
 *
 * Owns: `<cacheDir>/objects/<sha256>`.
 * Invariants: a cached object is published by rename only after its bytes hashed to
 * the manifest's sha256, so a reader never gets wrong bytes; a mismatch is INTEGRITY_ERROR
 * (EIO) and an error log. Concurrent reads of one object share one download.
 */
import { createHash, randomUUID } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { objectKey } from '../commit/layout.js';
import { CacheError } from '../errors/index.js';
import { cacheTmpDir, objectCachePath, type CoreContext } from './context.js';

const CHUNK = 8 << 20;

export class ObjectCache {
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(private readonly ctx: CoreContext) {}

  /** Local path of a committed object, downloading and verifying it if needed. */
  async localPath(sha256: string, size: number): Promise<string> {
    const p = objectCachePath(this.ctx, sha256);
    try {
      const st = await fs.stat(p);
      if (st.size === size) {
        this.ctx.index.touchCachedObject(sha256, size);
        return p;
      }
    } catch {
      // Not cached yet.
    }
    let pending = this.inflight.get(sha256);
    if (!pending) {
      pending = this.fetch(sha256, size, p).finally(() => this.inflight.delete(sha256));
      this.inflight.set(sha256, pending);
    }
    return pending;
  }

  private async fetch(sha256: string, size: number, dest: string): Promise<string> {
    const key = objectKey(sha256);
    const tmp = path.join(cacheTmpDir(this.ctx), randomUUID());
    const fh = await fs.open(tmp, 'w');
    const hash = createHash('sha256');
    let total = 0;
    try {
      // Ranged chunks keep memory bounded for multi-GiB checkpoints.
      for (let off = 0; off < size || (size === 0 && off === 0); off += CHUNK) {
        if (size === 0) break;
        const buf = await this.ctx.store.get(key, { offset: off, length: Math.min(CHUNK, size - off) });
        hash.update(buf);
        await fh.write(buf, 0, buf.length, off);
        total += buf.length;
        if (buf.length === 0) break;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    const got = hash.digest('hex');
    if (got !== sha256 || total !== size) {
      await fs.rm(tmp, { force: true });
      this.ctx.log.error({ key, expected: sha256, got, size, received: total }, 'object failed its integrity check');
      throw new CacheError('INTEGRITY_ERROR', `Object ${key} does not match its sha256 (got ${total} of ${size} bytes)`);
    }
    await fs.rename(tmp, dest);
    this.ctx.index.touchCachedObject(sha256, size);
    return dest;
  }
}
