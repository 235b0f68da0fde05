/**
 * ObjectStore.startFileUpload for a store that gains nothing from sending parts before
 * the key is known (a local directory: its "upload" is a copy on the same machine):
 * nothing happens until `publish`, which is one `putFile`.
 *
 * Invariant: as for every FileUpload, nothing is visible under the key before
 * `publish`, and an aborted upload publishes nothing.
 */
import { StoreError } from '../errors/index.js';
import type { FileUpload, FileUploadOptions, ObjectStore, PutResult } from './types.js';

export class DeferredFileUpload implements FileUpload {
  private aborted = false;
  sentBytes = 0;

  constructor(private readonly store: Pick<ObjectStore, 'putFile'>, private readonly filePath: string, private readonly options: FileUploadOptions = {}) {}

  grow(): void {
    // Nothing to send before the key is known.
  }

  async publish(key: string, size: number, options: { beforeComplete?: () => void | Promise<void> } = {}): Promise<PutResult> {
    if (this.aborted) throw new StoreError('STORAGE_ERROR', `Upload of ${key} was aborted`, { key });
    const result = await this.store.putFile(key, this.filePath, {
      beforePart: this.options.beforePart, request: this.options.request, beforeComplete: options.beforeComplete,
    });
    this.sentBytes = size;
    return result;
  }

  async abort(): Promise<void> {
    this.aborted = true;
  }
}
