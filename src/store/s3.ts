/**
 * S3 object store. Not yet implemented: selecting `s3://` fails with a clear error
 * until the S3 store lands.
 */
import { StoreError } from '../errors/index.js';
import type { ObjectStore } from './types.js';
import type { StoreOptions } from './index.js';

export class S3Store {
  static async fromUrl(_url: string, _options: StoreOptions): Promise<ObjectStore> {
    throw new StoreError('BAD_REQUEST', 'The s3:// store is not available in this build');
  }
}
