/**
 * Proves how many control-plane metadata queries (SQL statements) each hot FUSE
 * request costs in the core, addressed by node id as the native binding addresses it:
 * LOOKUP, GETATTR, OPEN for reading and OPEN for writing each cost exactly one. Before
 * nodes were keyed by id (release 0.1.0) the same requests cost 2, 2, 2 and 3: the
 * binding turned the inode's node id back into a path, and the core looked the path up
 * again (and read the ancestors for the barrier).
 */
import * as fsSync from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteMetadataStore } from '../../src/meta/sqlite.js';
import { startCore, type CoreHarness } from '../support/core.js';

const caller = { uid: 0, gid: 0 };

describe('metadata queries per FUSE request', () => {
  let h: CoreHarness;
  let meta: SqliteMetadataStore;
  let folder: string;
  let file: string;

  beforeEach(async () => {
    h = await startCore();
    meta = h.cp.meta as SqliteMetadataStore;
    const root = await h.core.root();
    folder = (await h.core.mkdir(root, 'ck', 0o755, caller)).nodeId;
    const c = await h.core.create(folder, 'model.pt', 0o644, fsSync.constants.O_WRONLY, caller);
    file = c.entry.nodeId;
    h.core.write(c.fh, Buffer.from('weights'), 7, 0);
    await h.core.flush(c.fh);
    await h.core.release(c.fh);
    // Its background upload pins the object (a query of its own): done before counting.
    await h.core.uploader.drained();
  });
  afterEach(async () => {
    await h.close();
  });

  const count = async (fn: () => Promise<unknown>): Promise<number> => {
    const before = meta.queries;
    await fn();
    return meta.queries - before;
  };

  it('LOOKUP costs one query, for a file and for a folder (its link count included)', async () => {
    expect(await count(() => h.core.lookup(folder, 'model.pt'))).toBe(1);
    const root = await h.core.root();
    expect(await count(() => h.core.lookup(root, 'ck'))).toBe(1);
  });

  it('GETATTR costs one query', async () => {
    expect(await count(() => h.core.getattr(file))).toBe(1);
    expect(await count(() => h.core.getattr(folder))).toBe(1);
  });

  it('OPEN for reading costs one query, and OPEN for writing one (the node and the barrier read together)', async () => {
    let fh = 0;
    expect(await count(async () => { fh = await h.core.open(file, fsSync.constants.O_RDONLY); })).toBe(1);
    await h.core.release(fh);
    expect(await count(async () => { fh = await h.core.open(file, fsSync.constants.O_WRONLY); })).toBe(1);
    await h.core.release(fh);
  });
});
