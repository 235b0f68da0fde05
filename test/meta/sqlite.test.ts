import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteMetadataStore } from '../../src/meta/sqlite.js';
import { metadataConformance } from './conformance.js';

metadataConformance('sqlite', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-meta-'));
  const meta = new SqliteMetadataStore(path.join(dir, 'metadata.db'));
  return { meta, cleanup: async () => { await meta.close(); rmSync(dir, { recursive: true, force: true }); } };
});
