/**
 * Metadata-store conformance: the same assertions for every MetadataStore backend
 * (SQLite today; a PostgreSQL backend must pass this suite unchanged). Includes a
 * property test of ref compare-and-swap against a model.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CommitRecord, MetadataStore } from '../../src/meta/types.js';

export function metadataConformance(name: string, open: () => Promise<{ meta: MetadataStore; cleanup: () => Promise<void> }>): void {
  describe(`metadata conformance: ${name}`, () => {
    let meta: MetadataStore;
    let cleanup: () => Promise<void>;
    const now = () => new Date().toISOString();
    let seq = 0;

    beforeEach(async () => {
      ({ meta, cleanup } = await open());
      await meta.createMount({ id: 'mnt_1', name: 'default', store: 'file:///x', createdAt: now() });
    });
    afterEach(async () => { await cleanup(); });

    const root = async () => meta.root('mnt_1');
    const at = async (path: string) => meta.resolvePath('mnt_1', path);
    const folder = async (parentPath: string, name: string) => {
      const parent = (await at(parentPath))!;
      return meta.createNode({ mountId: 'mnt_1', parentId: parent.id, name, type: 'folder', mode: 0o40755, uid: 0, gid: 0, ownerAgent: null });
    };
    const commitOf = (nodeId: string, path: string, groupId: string | null = null): CommitRecord => ({
      id: `cmt_${++seq}`, mountId: 'mnt_1', nodeId, path, message: '', groupId, parentCommitId: null, phase: 'sealing', error: null,
      stats: { files: 0, bytes: 0, uploadedBytes: 0, dedupedBytes: 0 }, createdAt: now(), completedAt: null,
    });
    const completed = async (path: string) => {
      const f = await folder('/', path.slice(1));
      const c = await meta.beginCommit(commitOf(f.id, path));
      await meta.markManifested(c.id, c.stats, []);
      await meta.completeCommits([c.id], now());
      return c.id;
    };

    it('creates a root folder per mount and keeps one live node per path', async () => {
      expect((await root()).type).toBe('folder');
      await folder('/', 'a');
      await expect(folder('/', 'a')).rejects.toMatchObject({ rosetCode: 'NODE_EXISTS' });
      const a = (await at('/a'))!;
      await meta.softDeleteNode(a.id, now());
      expect(await at('/a')).toBeNull();
      await folder('/', 'a');
    });

    it('keeps names apart byte for byte: case, LIKE wildcards, multi-byte and astral names', async () => {
      const names = ['run1', 'RUN1', 'a_b', 'aXb', '50%', '50x', '\u00e9', 'e\u0301', '😀', '😁'];
      for (const n of names) await folder('/', n);
      for (const n of names) {
        await folder(`/${n}`, 'inner');
        expect((await at(`/${n}`))!.name).toBe(n);
      }
      expect((await meta.listSubtree((await at('/run1'))!.id)).map((n) => n.relPath)).toEqual(['inner']);
      expect((await meta.listSubtree((await at('/a_b'))!.id)).map((n) => n.relPath)).toEqual(['inner']);
    });

    it('moves a folder with its whole subtree by changing one edge', async () => {
      await folder('/', '😀');
      await folder('/😀', 'b');
      const b = (await at('/😀/b'))!;
      const file = await meta.createNode({ mountId: 'mnt_1', parentId: b.id, name: 'f', type: 'file', mode: 0o100644, uid: 0, gid: 0, ownerAgent: 'agt' });
      const c = await folder('/', 'c');
      const src = (await at('/😀'))!;
      await meta.moveNode({ mountId: 'mnt_1', srcParentId: (await root()).id, srcName: '😀', dstParentId: c.id, dstName: 'moved', noReplace: false });
      expect(await meta.pathOf(file.id)).toBe('/c/moved/b/f');
      expect((await meta.getNode(src.id))!.parentId).toBe(c.id);
      expect((await meta.listSubtree(c.id)).map((n) => n.relPath)).toEqual(['moved', 'moved/b', 'moved/b/f']);
      await expect(meta.moveNode({ mountId: 'mnt_1', srcParentId: c.id, srcName: 'moved', dstParentId: b.id, dstName: 'x', noReplace: false }))
        .rejects.toMatchObject({ rosetCode: 'INVALID_MOVE' });
    });

    it('checks the barrier inside each change: nothing is created, moved, removed or changed in a sealing folder', async () => {
      const f = await folder('/', 'ck');
      await folder('/ck', 'sub');
      const file = await meta.createNode({ mountId: 'mnt_1', parentId: f.id, name: 'x', type: 'file', mode: 0o100644, uid: 0, gid: 0, ownerAgent: 'agt' });
      await meta.beginCommit(commitOf(f.id, '/ck'));
      await expect(folder('/ck', 'new')).rejects.toMatchObject({ rosetCode: 'SEALED' });
      await expect(folder('/ck/sub', 'new')).rejects.toMatchObject({ rosetCode: 'SEALED' });
      await expect(meta.removeNode('mnt_1', f.id, 'x', 'file')).rejects.toMatchObject({ rosetCode: 'SEALED' });
      await expect(meta.moveNode({ mountId: 'mnt_1', srcParentId: f.id, srcName: 'x', dstParentId: (await root()).id, dstName: 'y', noReplace: false }))
        .rejects.toMatchObject({ rosetCode: 'SEALED' });
      await expect(meta.setAttrs('mnt_1', file.id, { mode: 0o100600 }, 'writable')).rejects.toMatchObject({ rosetCode: 'SEALED' });
      // A handle opened before the seal may still publish its size.
      expect((await meta.setAttrs('mnt_1', file.id, { size: 3 }, 'not-committed')).size).toBe(3);
      expect((await meta.barrierOf(file.id))).toMatchObject({ code: 'SEALED', nodeId: f.id });
    });

    it('lets exactly one commit begin on a staging folder', async () => {
      const f = await folder('/', 'ck');
      await meta.beginCommit(commitOf(f.id, '/ck'));
      await expect(meta.beginCommit(commitOf(f.id, '/ck'))).rejects.toMatchObject({ rosetCode: 'COMMIT_IN_PROGRESS' });
      expect((await meta.getNode(f.id))!.state).toBe('sealing');
    });

    it('completes a commit with its whole subtree, and a failure returns the folder to staging', async () => {
      const f = await folder('/', 'ck');
      await folder('/ck', 'inner');
      const c = await meta.beginCommit(commitOf(f.id, '/ck'));
      await meta.markManifested(c.id, { files: 0, bytes: 0, uploadedBytes: 0, dedupedBytes: 0 }, []);
      await meta.completeCommits([c.id], now());
      expect((await at('/ck/inner'))!.state).toBe('committed');
      await expect(folder('/ck', 'late')).rejects.toMatchObject({ rosetCode: 'COMMITTED' });
      expect((await meta.getCommit(c.id))!.phase).toBe('completed');

      const g = await folder('/', 'other');
      const c2 = await meta.beginCommit(commitOf(g.id, '/other'));
      await meta.failCommits([c2.id], { code: 'OPEN_HANDLES', message: 'x' });
      expect((await meta.getNode(g.id))!.state).toBe('staging');
      expect((await meta.getCommit(c2.id))!.error).toEqual({ code: 'OPEN_HANDLES', message: 'x' });
    });

    it('completes or fails a group together', async () => {
      await meta.createGroup({ id: 'grp_1', mountId: 'mnt_1', message: '', status: 'pending', createdAt: now(), sealedAt: null, committedAt: null });
      const a = await folder('/', 'a');
      const b = await folder('/', 'b');
      const ca = await meta.beginCommit(commitOf(a.id, '/a', 'grp_1'));
      const cb = await meta.beginCommit(commitOf(b.id, '/b', 'grp_1'));
      await meta.markManifested(ca.id, ca.stats, []);
      // One not manifested yet: completing all must not half-happen.
      await expect(meta.completeCommits([ca.id, cb.id], now(), { id: 'grp_1' })).rejects.toThrow();
      expect((await meta.getCommit(ca.id))!.phase).toBe('manifested');
      await meta.markManifested(cb.id, cb.stats, []);
      expect(await meta.markGroupSealed('grp_1', now())).not.toBeNull();
      expect(await meta.markGroupSealed('grp_1', now())).toBeNull();
      await meta.completeCommits([ca.id, cb.id], now(), { id: 'grp_1' });
      expect((await meta.getGroup('grp_1'))!.status).toBe('committed');
      expect((await meta.listGroupCommits('grp_1')).map((c) => c.phase)).toEqual(['completed', 'completed']);
    });

    it('moves refs by compare-and-swap exactly as a model says, logging every move (property)', async () => {
      const commits = [await completed('/c1'), await completed('/c2'), await completed('/c3')];
      await fc.assert(fc.asyncProperty(
        fc.array(fc.record({ to: fc.nat(2), expect: fc.option(fc.option(fc.nat(2), { nil: null }), { nil: undefined }), del: fc.boolean() }), { maxLength: 30 }),
        async (ops) => {
          const name = `r${++seq}`;
          let model: string | null = null;
          const log: Array<[string | null, string | null]> = [];
          for (const op of ops) {
            if (op.del) {
              const ok = await meta.deleteRef('mnt_1', name, 't', now());
              expect(ok).toBe(model !== null);
              if (model !== null) log.push([model, null]);
              model = null;
              continue;
            }
            const expected = op.expect === undefined ? undefined : op.expect === null ? null : commits[op.expect]!;
            const res = await meta.setRef({ mountId: 'mnt_1', name, commitId: commits[op.to]!, updatedAt: now(), updatedBy: 't' }, expected);
            const wins = expected === undefined || expected === model;
            expect(res !== null).toBe(wins);
            if (wins) { log.push([model, commits[op.to]!]); model = commits[op.to]!; }
          }
          expect((await meta.getRef('mnt_1', name))?.commitId ?? null).toBe(model);
          expect((await meta.refLog('mnt_1', name)).map((e) => [e.fromCommitId, e.toCommitId])).toEqual(log);
        },
      ), { numRuns: 50 });
    });
  });
}
