/**
 * The store conformance suite against LocalStore, in a temporary directory.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalStore } from '../../src/store/local.js';
import { storeConformance } from './conformance.js';

storeConformance('LocalStore', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'roset-localstore-'));
  return {
    store: await LocalStore.open(dir),
    withOwner: (owner) => LocalStore.open(dir, { uploadOwner: owner }),
    cleanup: () => fs.rm(dir, { recursive: true, force: true }),
  };
});
