/**
 * Local-directory object store: the embedded default, and the reference backend the
 * S3 store is held to by the conformance suite.
 *
 * Owns: the files under `root`. Keys map to paths under `root/`; work in progress lives
 * under `root/.roset/` (temporary files, and multipart uploads with their owner in
 * `upload.json`), which `list` never shows.
 *
 * Invariants:
 * - Every write lands in a temporary file first and is published with rename (put) or
 *   link (put-if-absent, which the kernel makes create-only), so a reader never sees a
 *   partial object.
 * - put-if-match is atomic within this process (a per-key lock); one daemon owns a
 *   local store, so that is the whole contract. Across processes the check and rename
 *   race, which is why `capabilities.conditionalWrites` is still true only for keys
 *   written by this process; see docs/STORAGE.md.
 * - ETags are derived from (inode, mtime, size): every publish creates a new inode, so
 *   an ETag changes whenever the content does, without hashing gigabytes.
 * - Only file-system errors become StoreErrors; an error a caller's hook threw (a file
 *   changed under its upload) comes back as it is, so the retry layer never retries it.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { RosetError, StoreError } from '../errors/index.js';
import { assertValidKey, WORK_DIR } from './keys.js';
import {
  checkUploadOwner,
  runOnce,
  type ByteRange, type FileUpload, type FileUploadOptions, type ListPage, type MultipartUploadInfo, type ObjectInfo, type ObjectStore, type PartResult,
  type PutFileOptions, type PutResult, type RequestRunner, type StoreCapabilities,
} from './types.js';
import { DeferredFileUpload } from './deferred-file-upload.js';

/** Bytes per read and write when copying a file into the store. */
const COPY_CHUNK = 1 << 20;

const DEFAULT_LIST_LIMIT = 1000;

export class LocalStore implements ObjectStore {
  readonly capabilities: StoreCapabilities = { conditionalWrites: true, multipart: true };
  readonly description: string;
  private readonly tmpDir: string;
  private readonly mpDir: string;
  private readonly keyLocks = new Map<string, Promise<void>>();
  /** Tag of the multipart uploads this store starts. */
  readonly uploadOwner: string | undefined;

  constructor(private readonly root: string, options: { uploadOwner?: string } = {}) {
    this.root = path.resolve(root);
    this.uploadOwner = checkUploadOwner(options.uploadOwner);
    this.description = `file://${this.root}`;
    this.tmpDir = path.join(this.root, WORK_DIR, 'tmp');
    this.mpDir = path.join(this.root, WORK_DIR, 'multipart');
  }

  static async open(root: string, options: { uploadOwner?: string } = {}): Promise<LocalStore> {
    const store = new LocalStore(root, options);
    await fs.mkdir(store.tmpDir, { recursive: true });
    await fs.mkdir(store.mpDir, { recursive: true });
    // Temporary files are never referenced once their writer is gone.
    for (const f of await fs.readdir(store.tmpDir)) await fs.rm(path.join(store.tmpDir, f), { force: true });
    return store;
  }

  private pathOf(key: string): string {
    assertValidKey(key);
    return path.join(this.root, key);
  }

  private async etagOf(p: string): Promise<{ etag: string; size: number; mtime: Date }> {
    const st = await fs.stat(p, { bigint: true });
    const etag = `${st.ino.toString(16)}-${st.mtimeNs.toString(16)}-${st.size.toString(16)}`;
    return { etag, size: Number(st.size), mtime: new Date(Number(st.mtimeMs)) };
  }

  private async writeTemp(body: Buffer | string): Promise<string> {
    const tmp = path.join(this.tmpDir, randomUUID());
    const fh = await fs.open(tmp, 'wx');
    try {
      await fh.writeFile(body);
      await fh.sync();
    } finally {
      await fh.close();
    }
    return tmp;
  }

  private async publish(tmp: string, key: string, mode: 'replace' | 'create'): Promise<PutResult> {
    const dest = this.pathOf(key);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    try {
      if (mode === 'replace') {
        await fs.rename(tmp, dest);
      } else {
        try {
          await fs.link(tmp, dest);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
            throw new StoreError('PRECONDITION_FAILED', `Object already exists: ${key}`, { key });
          }
          throw err;
        }
      }
      return { etag: (await this.etagOf(dest)).etag };
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  private async withKeyLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.keyLocks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => { release = r; });
    const chained = prev.then(() => mine);
    this.keyLocks.set(key, chained);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.keyLocks.get(key) === chained) this.keyLocks.delete(key);
    }
  }

  async put(key: string, body: Buffer | string): Promise<PutResult> {
    this.pathOf(key);
    return this.wrap(key, () => this.withKeyLock(key, async () => this.publish(await this.writeTemp(body), key, 'replace')));
  }

  async putIfAbsent(key: string, body: Buffer | string): Promise<PutResult> {
    this.pathOf(key);
    return this.wrap(key, async () => this.publish(await this.writeTemp(body), key, 'create'));
  }

  async putIfMatch(key: string, body: Buffer | string, etag: string): Promise<PutResult> {
    this.pathOf(key);
    return this.wrap(key, () => this.withKeyLock(key, async () => {
      const current = await this.head(key);
      if (!current || current.etag !== etag.replace(/"/g, '')) {
        throw new StoreError('PRECONDITION_FAILED', `ETag does not match for ${key}`, { key });
      }
      return this.publish(await this.writeTemp(body), key, 'replace');
    }));
  }

  startFileUpload(filePath: string, options: FileUploadOptions = {}): FileUpload {
    return new DeferredFileUpload(this, filePath, options);
  }

  async putFile(key: string, filePath: string, options: PutFileOptions = {}): Promise<PutResult> {
    this.pathOf(key);
    const run: RequestRunner = options.request ?? runOnce;
    // The whole file is this store's one part.
    options.beforePart?.();
    // Copying and syncing the bytes is this store's one request (what a retry sends again).
    const tmp = await run('upload', key, () => this.wrap(key, async () => {
      const out = path.join(this.tmpDir, randomUUID());
      try {
        // A stream copy, not fs.copyFile: libuv's copyfile (Node 20) spins at 100% CPU
        // forever when the source shrinks while it copies, which a file truncated or
        // rewritten during its background upload does. A short copy is caught by the
        // uploader's version check and never published.
        await pipeline(createReadStream(filePath, { highWaterMark: COPY_CHUNK }), createWriteStream(out, { highWaterMark: COPY_CHUNK }));
        const fh = await fs.open(out, 'r+');
        try { await fh.sync(); } finally { await fh.close(); }
        return out;
      } catch (err) {
        await fs.rm(out, { force: true });
        throw err;
      }
    }));
    try {
      options.onProgress?.((await fs.stat(tmp)).size);
      // The caller's check (its file did not change) runs once, outside any retry.
      await options.beforeComplete?.();
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    return this.wrap(key, () => (options.ifAbsent ? this.publish(tmp, key, 'create') : this.withKeyLock(key, () => this.publish(tmp, key, 'replace'))));
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    const p = this.pathOf(key);
    return this.wrap(key, async () => {
      if (!range) return fs.readFile(p);
      const fh = await fs.open(p, 'r');
      try {
        const buf = range.into && range.into.length >= range.length ? range.into.subarray(0, Math.max(0, range.length)) : Buffer.allocUnsafe(Math.max(0, range.length));
        const { bytesRead } = await fh.read(buf, 0, buf.length, range.offset);
        return buf.subarray(0, bytesRead);
      } finally {
        await fh.close();
      }
    });
  }

  /** Streams an object (used for whole-object downloads with bounded memory). */
  createReadStream(key: string): NodeJS.ReadableStream {
    return createReadStream(this.pathOf(key));
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const p = this.pathOf(key);
    try {
      const { etag, size, mtime } = await this.etagOf(p);
      if ((await fs.stat(p)).isDirectory()) return null;
      return { key, size, etag, lastModified: mtime };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
      throw new StoreError('STORAGE_ERROR', `head ${key} failed: ${(err as Error).message}`, { key }, { cause: err });
    }
  }

  async list(prefix: string, options: { cursor?: string; limit?: number } = {}): Promise<ListPage> {
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    const keys: string[] = [];
    // Only descend into directories that can hold keys with this prefix.
    const walk = async (dirKey: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await fs.readdir(dirKey ? path.join(this.root, dirKey) : this.root, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
        throw err;
      }
      for (const e of entries) {
        const k = dirKey ? `${dirKey}/${e.name}` : e.name;
        if (!dirKey && e.name === WORK_DIR) continue;
        if (e.isDirectory()) {
          const asDir = `${k}/`;
          if (asDir.startsWith(prefix) || prefix.startsWith(asDir)) await walk(k);
        } else if (k.startsWith(prefix)) {
          keys.push(k);
        }
      }
    };
    await this.wrap(prefix, () => walk(''));
    keys.sort();
    const start = options.cursor ? keys.findIndex((k) => k > options.cursor!) : 0;
    const slice = start < 0 ? [] : keys.slice(start, start + limit);
    const objects: ObjectInfo[] = [];
    for (const k of slice) {
      const info = await this.head(k);
      if (info) objects.push(info);
    }
    const more = start >= 0 && start + limit < keys.length;
    return more ? { objects, cursor: slice[slice.length - 1] } : { objects };
  }

  async delete(key: string): Promise<void> {
    const p = this.pathOf(key);
    await this.wrap(key, () => fs.rm(p, { force: true }));
  }

  async createMultipartUpload(key: string): Promise<string> {
    this.pathOf(key);
    const uploadId = randomUUID();
    const dir = path.join(this.mpDir, uploadId);
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'upload.json'), JSON.stringify({ key, owner: this.uploadOwner ?? null, initiated: new Date().toISOString() }));
    return uploadId;
  }

  private async uploadDir(key: string, uploadId: string): Promise<string> {
    if (!/^[0-9a-f-]{36}$/.test(uploadId)) throw new StoreError('OBJECT_NOT_FOUND', `No such upload: ${uploadId}`, { key });
    const dir = path.join(this.mpDir, uploadId);
    try {
      const meta = JSON.parse(await fs.readFile(path.join(dir, 'upload.json'), 'utf8')) as { key: string };
      if (meta.key !== key) throw new Error('key mismatch');
    } catch {
      throw new StoreError('OBJECT_NOT_FOUND', `No such upload: ${uploadId} for ${key}`, { key, uploadId });
    }
    return dir;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<PartResult> {
    const dir = await this.uploadDir(key, uploadId);
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10000) {
      throw new StoreError('BAD_REQUEST', `Invalid part number ${partNumber}`);
    }
    const part = path.join(dir, `part-${String(partNumber).padStart(5, '0')}`);
    await fs.writeFile(`${part}.tmp`, body);
    await fs.rename(`${part}.tmp`, part);
    return { partNumber, etag: (await this.etagOf(part)).etag };
  }

  async completeMultipartUpload(key: string, uploadId: string, parts: PartResult[], options: { ifAbsent?: boolean } = {}): Promise<PutResult> {
    const dir = await this.uploadDir(key, uploadId);
    const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber);
    const tmp = path.join(this.tmpDir, randomUUID());
    const out = await fs.open(tmp, 'wx');
    try {
      for (const p of sorted) {
        const partPath = path.join(dir, `part-${String(p.partNumber).padStart(5, '0')}`);
        const { etag } = await this.etagOf(partPath).catch(() => ({ etag: '' }));
        if (etag !== p.etag) throw new StoreError('BAD_REQUEST', `Part ${p.partNumber} is missing or its ETag differs`, { key, uploadId });
        const src = await fs.open(partPath, 'r');
        try {
          const { size } = await src.stat();
          const buf = Buffer.allocUnsafe(Math.min(size, 8 << 20));
          let pos = 0;
          while (pos < size) {
            const { bytesRead } = await src.read(buf, 0, buf.length, pos);
            await out.write(buf, 0, bytesRead);
            pos += bytesRead;
          }
        } finally {
          await src.close();
        }
      }
      await out.sync();
    } catch (err) {
      await out.close();
      await fs.rm(tmp, { force: true });
      throw err;
    }
    await out.close();
    const result = await (options.ifAbsent ? this.publish(tmp, key, 'create') : this.withKeyLock(key, () => this.publish(tmp, key, 'replace')));
    await fs.rm(dir, { recursive: true, force: true });
    return result;
  }

  async abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    const dir = await this.uploadDir(key, uploadId);
    await fs.rm(dir, { recursive: true, force: true });
  }

  async listMultipartUploads(prefix: string): Promise<MultipartUploadInfo[]> {
    const out: MultipartUploadInfo[] = [];
    for (const id of await fs.readdir(this.mpDir)) {
      try {
        const meta = JSON.parse(await fs.readFile(path.join(this.mpDir, id, 'upload.json'), 'utf8')) as { key: string; owner?: string | null; initiated: string };
        if (meta.key.startsWith(prefix)) out.push({ key: meta.key, uploadId: id, initiated: new Date(meta.initiated), owner: meta.owner ?? null });
      } catch {
        // An upload directory without its metadata was never handed out: ignore it.
      }
    }
    return out.sort((a, b) => a.key.localeCompare(b.key));
  }

  async abortOwnUploads(options: { request?: RequestRunner } = {}): Promise<MultipartUploadInfo[]> {
    if (!this.uploadOwner) return [];
    const run = options.request ?? runOnce;
    const mine = (await run('list multipart uploads', '', () => this.listMultipartUploads(''))).filter((u) => u.owner === this.uploadOwner);
    for (const u of mine) await run('abort multipart upload', u.key, () => this.wrap(u.key, () => fs.rm(path.join(this.mpDir, u.uploadId), { recursive: true, force: true })));
    return mine;
  }

  async close(): Promise<void> {}

  private async wrap<T>(key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      // Ours (a StoreError) or the caller's (a hook's error): as it is.
      if (err instanceof RosetError) throw err;
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') throw new StoreError('OBJECT_NOT_FOUND', `No such object: ${key}`, { key }, { cause: err });
      if (e.code === 'ENOSPC') throw new StoreError('NO_SPACE', `Store disk is full writing ${key}`, { key }, { cause: err });
      throw new StoreError('STORAGE_ERROR', `Store operation on ${key} failed: ${e.message}`, { key }, { cause: err });
    }
  }
}
