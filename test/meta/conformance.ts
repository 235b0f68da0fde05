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

    it('soft-deletes a committed folder as a whole, but not while a ref points at its commit or one inside it', async () => {
      const ref = (name: string, commitId: string) => meta.setRef({ mountId: 'mnt_1', name, commitId, updatedAt: now(), updatedBy: 't' }, undefined);
      const c1 = await completed('/ck1');
      const c2 = await completed('/ck2');
      await ref('latest', c2);
      const ck2 = (await at('/ck2'))!;
      await expect(meta.softDeleteNode(ck2.id, now())).rejects.toMatchObject({ rosetCode: 'REFERENCED_BY_REF' });
      expect((await at('/ck2'))!.deletedAt).toBeNull();
      // A staging folder that holds a ref'd commit is held too.
      const outer = await folder('/', 'outer');
      const inner = await folder('/outer', 'inner');
      const c3 = await meta.beginCommit(commitOf(inner.id, '/outer/inner'));
      await meta.markManifested(c3.id, c3.stats, []);
      await meta.completeCommits([c3.id], now());
      await ref('best', c3.id);
      await expect(meta.softDeleteNode(outer.id, now())).rejects.toMatchObject({ rosetCode: 'REFERENCED_BY_REF' });
      expect(await at('/outer/inner')).not.toBeNull();
      // Nothing inside a committed folder may go.
      await folder('/', 'ck3');
      const sub = await folder('/ck3', 'sub');
      const c4 = await meta.beginCommit(commitOf((await at('/ck3'))!.id, '/ck3'));
      await meta.markManifested(c4.id, c4.stats, []);
      await meta.completeCommits([c4.id], now());
      await expect(meta.softDeleteNode(sub.id, now())).rejects.toMatchObject({ rosetCode: 'COMMITTED' });
      // Without a ref: gone from the namespace, the commit stays.
      const ck1 = (await at('/ck1'))!;
      await meta.softDeleteNode(ck1.id, now());
      expect(await at('/ck1')).toBeNull();
      expect((await meta.getCommit(c1))!.phase).toBe('completed');
      // A ref cannot move onto the commit of a deleted folder.
      await expect(ref('latest', c1)).rejects.toMatchObject({ rosetCode: 'COMMIT_FOLDER_DELETED' });
      expect((await meta.getRef('mnt_1', 'latest'))!.commitId).toBe(c2);
      // Once the ref moves away, the folder it held may go.
      const c5 = await completed('/ck5');
      await ref('latest', c5);
      await meta.softDeleteNode(ck2.id, now());
      expect(await at('/ck2')).toBeNull();
      expect((await meta.refLog('mnt_1', 'latest')).map((e) => e.toCommitId)).toEqual([c2, c5]);
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

    it('leases a commit to one driver at a time; an expired lease passes to another', async () => {
      const f = await folder('/', 'ck');
      const c = await meta.beginCommit(commitOf(f.id, '/ck'));
      const t0 = new Date('2030-01-01T00:00:00.000Z');
      const iso = (ms: number) => new Date(t0.getTime() + ms).toISOString();
      expect(await meta.acquireCommitLease(c.id, 'srv_a', iso(10_000), iso(0))).toBe(true);
      expect(await meta.acquireCommitLease(c.id, 'srv_b', iso(15_000), iso(5_000))).toBe(false);
      // The holder renews its own lease.
      expect(await meta.acquireCommitLease(c.id, 'srv_a', iso(20_000), iso(5_000))).toBe(true);
      expect(await meta.acquireCommitLease(c.id, 'srv_b', iso(30_000), iso(15_000))).toBe(false);
      expect(await meta.acquireCommitLease(c.id, 'srv_b', iso(30_000), iso(20_001))).toBe(true);
      expect(await meta.acquireCommitLease(c.id, 'srv_a', iso(40_000), iso(25_000))).toBe(false);
      expect(await meta.acquireCommitLease('cmt_none', 'srv_a', iso(40_000), iso(25_000))).toBe(false);
    });

    it('registers agents, keeps their heartbeat monotonic, and delivers each task once per id', async () => {
      const a = await meta.upsertAgent({ id: 'agt_1', mountId: 'mnt_1', mountpoint: '/mnt/a', hostname: 'n1', registeredAt: '2030-01-01T00:00:00.000Z', lastSeenAt: '2030-01-01T00:00:00.000Z' });
      expect(a.hostname).toBe('n1');
      expect(await meta.touchAgent('agt_1', '2030-01-01T00:00:05.000Z')).toBe(true);
      expect(await meta.touchAgent('agt_1', '2030-01-01T00:00:02.000Z')).toBe(true);
      expect((await meta.getAgent('agt_1'))!.lastSeenAt).toBe('2030-01-01T00:00:05.000Z');
      expect(await meta.touchAgent('agt_none', '2030-01-01T00:00:05.000Z')).toBe(false);
      // Re-registering keeps the first registration time.
      await meta.upsertAgent({ id: 'agt_1', mountId: 'mnt_1', mountpoint: '/mnt/b', hostname: 'n1', registeredAt: '2031-01-01T00:00:00.000Z', lastSeenAt: '2030-01-01T00:00:06.000Z' });
      expect(await meta.listAgents('mnt_1')).toEqual([{ id: 'agt_1', mountId: 'mnt_1', mountpoint: '/mnt/b', hostname: 'n1', registeredAt: '2030-01-01T00:00:00.000Z', lastSeenAt: '2030-01-01T00:00:06.000Z' }]);
      expect(await meta.listAgents('mnt_other')).toEqual([]);

      const task = (kind: 'seal' | 'upload', commitId: string) => ({
        id: `${commitId}.${kind}.agt_1`, agentId: 'agt_1', commitId, kind, args: { folderId: 'n', timeoutMs: 5 }, status: 'pending' as const,
        result: null, error: null, createdAt: now(), finishedAt: null,
      });
      await meta.addAgentTask(task('seal', 'cmt_a'));
      await meta.addAgentTask(task('upload', 'cmt_a'));
      await meta.addAgentTask(task('seal', 'cmt_b'));
      // A second driver adding the same task gets the stored one.
      const again = await meta.addAgentTask({ ...task('seal', 'cmt_a'), args: { other: true } });
      expect(again.args).toEqual({ folderId: 'n', timeoutMs: 5 });
      expect((await meta.pendingAgentTasks('agt_1')).map((t) => t.id)).toEqual(['cmt_a.seal.agt_1', 'cmt_a.upload.agt_1', 'cmt_b.seal.agt_1']);
      expect(await meta.finishAgentTask('cmt_a.seal.agt_1', { status: 'done', result: { files: [1, 2] } }, now())).toBe(true);
      expect(await meta.finishAgentTask('cmt_a.seal.agt_1', { status: 'failed', error: { code: 'X', message: 'late' } }, now())).toBe(false);
      expect(await meta.finishAgentTask('cmt_a.upload.agt_1', { status: 'failed', error: { code: 'OPEN_HANDLES', message: 'm', details: { paths: ['a'] } } }, now())).toBe(true);
      expect(await meta.getAgentTask('cmt_a.seal.agt_1')).toMatchObject({ status: 'done', result: { files: [1, 2] }, error: null });
      expect(await meta.getAgentTask('cmt_a.upload.agt_1')).toMatchObject({ status: 'failed', error: { code: 'OPEN_HANDLES', message: 'm', details: { paths: ['a'] } } });
      expect((await meta.pendingAgentTasks('agt_1')).map((t) => t.id)).toEqual(['cmt_b.seal.agt_1']);
      await meta.addAgentTask({ ...task('seal', 'cmt_a'), id: 'cmt_a.seal.agt_2', agentId: 'agt_2' });
      expect(await meta.commitTaskAgents('cmt_a')).toEqual(['agt_1', 'agt_2']);
      await meta.dropAgentTasks('cmt_a', 'agt_2');
      expect(await meta.commitTaskAgents('cmt_a')).toEqual(['agt_1']);
      await meta.dropAgentTasks('cmt_a');
      expect(await meta.getAgentTask('cmt_a.seal.agt_1')).toBeNull();
      expect(await meta.commitTaskAgents('cmt_a')).toEqual([]);
      expect(await meta.getAgentTask('cmt_b.seal.agt_1')).not.toBeNull();
    });

    it('records the progress of a pending commit and of a pending agent task, and keeps it once they end', async () => {
      const f = await folder('/', 'ck');
      const c = await meta.beginCommit(commitOf(f.id, '/ck'));
      expect((await meta.getCommit(c.id))!.progress).toBeNull();
      const p = { phase: 'uploading' as const, filesTotal: 10_000, filesDone: 3, bytesTotal: 2 ** 40, bytesUploaded: 2 ** 33 };
      await meta.setCommitProgress(c.id, p);
      expect((await meta.getCommit(c.id))!.progress).toEqual(p);
      expect((await meta.listCommits('mnt_1', {}, { limit: 10 }))[0]!.progress).toEqual(p);
      await meta.markManifested(c.id, c.stats, []);
      await meta.setCommitProgress(c.id, { ...p, phase: 'manifest', filesDone: 10_000 });
      await meta.completeCommits([c.id], now());
      // A finished commit is not moved by a late report.
      await meta.setCommitProgress(c.id, { ...p, filesDone: 1 });
      expect((await meta.getCommit(c.id))!.progress).toEqual({ ...p, phase: 'manifest', filesDone: 10_000 });

      await meta.addAgentTask({ id: 'cmt_p.upload.agt_1', agentId: 'agt_1', commitId: 'cmt_p', kind: 'upload', args: {}, status: 'pending', result: null, error: null, createdAt: now(), finishedAt: null });
      expect((await meta.getAgentTask('cmt_p.upload.agt_1'))!.progress).toBeNull();
      await meta.setAgentTaskProgress('cmt_p.upload.agt_1', { filesDone: 2, bytesUploaded: 7 });
      expect((await meta.pendingAgentTasks('agt_1'))[0]!.progress).toEqual({ filesDone: 2, bytesUploaded: 7 });
      await meta.finishAgentTask('cmt_p.upload.agt_1', { status: 'done', result: null }, now());
      await meta.setAgentTaskProgress('cmt_p.upload.agt_1', { filesDone: 0 });
      expect((await meta.getAgentTask('cmt_p.upload.agt_1'))!.progress).toEqual({ filesDone: 2, bytesUploaded: 7 });
    });

    it('revokes an API key once, and still lists it', async () => {
      await meta.insertApiKey({ id: 'key_1', name: 'node-1', hash: 'a'.repeat(64), createdAt: '2030-01-01T00:00:00.000Z', revokedAt: null });
      await meta.insertApiKey({ id: 'key_2', name: 'alice', hash: 'b'.repeat(64), createdAt: '2030-01-01T00:00:01.000Z', revokedAt: null });
      expect(await meta.revokeApiKey('key_1', '2030-01-02T00:00:00.000Z')).toBe(true);
      expect(await meta.revokeApiKey('key_1', '2030-01-03T00:00:00.000Z')).toBe(false);
      expect(await meta.revokeApiKey('key_none', '2030-01-03T00:00:00.000Z')).toBe(false);
      expect((await meta.listApiKeys()).map((k) => [k.id, k.revokedAt])).toEqual([['key_1', '2030-01-02T00:00:00.000Z'], ['key_2', null]]);
    });

    it('purges a soft-deleted, unreferenced commit: its folder leaves the metadata, and only once', async () => {
      const id = await completed('/ckpt');
      const f = (await at('/ckpt'))!;
      await meta.createNode({ mountId: 'mnt_1', parentId: f.id, name: 'x', type: 'file', mode: 0o100644, uid: 0, gid: 0, ownerAgent: null })
        .catch(() => undefined); // refused inside a committed folder: the subtree is the folder alone then
      expect(await meta.purgeCommit(id, now(), now())).toEqual({ purged: false, reason: 'live' });
      expect((await meta.listCommittedFolders('mnt_1')).map((c) => c.commitId)).toEqual([id]);
      expect(await meta.purgeCommit(id, now(), now(), { dryRun: true, assumeDeleted: true })).toEqual({ purged: true, nodes: 1 });
      await meta.softDeleteNode(f.id, now());
      expect((await meta.listPurgeCandidates('mnt_1')).map((c) => c.commitId)).toEqual([id]);
      expect(await meta.purgeCommit(id, now(), now(), { dryRun: true })).toEqual({ purged: true, nodes: 1 });
      expect((await meta.getCommit(id))!.purgedAt).toBeNull();
      expect(await meta.purgeCommit(id, now(), now())).toEqual({ purged: true, nodes: 1 });
      expect(await meta.getNode(f.id)).toBeNull();
      expect((await meta.getCommit(id))!.purgedAt).not.toBeNull();
      expect(await meta.purgeCommit(id, now(), now())).toEqual({ purged: true, nodes: 0 });
      expect(await meta.listPurgeCandidates('mnt_1')).toEqual([]);
      expect(await meta.listPurgedWithManifest()).toEqual([id]);
      await meta.markManifestDeleted(id, now());
      expect(await meta.listPurgedWithManifest()).toEqual([]);
      expect(await meta.purgeCommit('cmt_none', now(), now())).toEqual({ purged: false, reason: 'not-found' });
    });

    it('keeps a commit a ref points at, or a recent ref-log entry names; refuses a ref to a purged commit', async () => {
      const a = await completed('/a');
      const b = await completed('/b');
      const t0 = now();
      await meta.setRef({ mountId: 'mnt_1', name: 'best', commitId: a, updatedAt: t0, updatedBy: 't' }, undefined);
      // A folder a ref points at is never deleted, so never purged.
      await expect(meta.softDeleteNode((await at('/a'))!.id, now())).rejects.toMatchObject({ rosetCode: 'REFERENCED_BY_REF' });
      expect(await meta.purgeCommit(a, '2000-01-01T00:00:00.000Z', now())).toEqual({ purged: false, reason: 'live' });
      await meta.setRef({ mountId: 'mnt_1', name: 'best', commitId: b, updatedAt: now(), updatedBy: 't' }, undefined);
      await meta.softDeleteNode((await at('/a'))!.id, now());
      // a left the ref just now: the ref log keeps it within the window, not before it.
      expect(await meta.purgeCommit(a, t0, now())).toEqual({ purged: false, reason: 'in-ref-log' });
      expect(await meta.purgeCommit(b, '2000-01-01T00:00:00.000Z', now())).toEqual({ purged: false, reason: 'live' });
      expect(await meta.purgeCommit(a, '2999-01-01T00:00:00.000Z', now())).toMatchObject({ purged: true });
      await expect(meta.setRef({ mountId: 'mnt_1', name: 'best', commitId: a, updatedAt: now(), updatedBy: 't' }, undefined))
        .rejects.toMatchObject({ rosetCode: 'COMMIT_PURGED' });
      expect((await meta.getRef('mnt_1', 'best'))!.commitId).toBe(b);
    });

    it('keeps a commit whose folder holds another unpurged commit, and one not completed', async () => {
      const outer = await folder('/', 'outer');
      const inner = await folder('/outer', 'inner');
      const ci = await meta.beginCommit(commitOf(inner.id, '/outer/inner'));
      await meta.markManifested(ci.id, ci.stats, []);
      await meta.completeCommits([ci.id], now());
      const co = await meta.beginCommit(commitOf(outer.id, '/outer'));
      expect(await meta.purgeCommit(co.id, now(), now())).toEqual({ purged: false, reason: 'not-completed' });
      await meta.markManifested(co.id, co.stats, []);
      await meta.completeCommits([co.id], now());
      await meta.softDeleteNode(outer.id, now());
      expect(await meta.purgeCommit(co.id, now(), now())).toEqual({ purged: false, reason: 'holds-commits' });
      expect(await meta.purgeCommit(ci.id, now(), now())).toEqual({ purged: true, nodes: 1 });
      expect(await meta.purgeCommit(co.id, now(), now())).toEqual({ purged: true, nodes: 1 });
    });

    it('never leaves a ref on a purged commit when setRef and purge race', async () => {
      for (let i = 0; i < 20; i++) {
        const id = await completed(`/race${i}`);
        await meta.softDeleteNode((await at(`/race${i}`))!.id, now());
        const [set, purge] = await Promise.allSettled([
          meta.setRef({ mountId: 'mnt_1', name: `r${i}`, commitId: id, updatedAt: now(), updatedBy: 't' }, undefined),
          meta.purgeCommit(id, '2999-01-01T00:00:00.000Z', now()),
        ]);
        const ref = await meta.getRef('mnt_1', `r${i}`);
        const purged = (await meta.getCommit(id))!.purgedAt != null;
        expect(ref !== null && purged).toBe(false);
        // The folder is deleted: no ref may move onto its commit, whichever runs first.
        expect(ref).toBeNull();
        expect(purged).toBe(true);
        expect(set.status).toBe('rejected');
        expect(['COMMIT_PURGED', 'COMMIT_FOLDER_DELETED']).toContain((set as PromiseRejectedResult).reason.rosetCode);
        expect(purge).toMatchObject({ status: 'fulfilled', value: { purged: true } });
      }
    });

    it('pins and tombstones: a tombstone refuses a pin, a pin or a recorded node refuses a tombstone', async () => {
      const sha = 'a'.repeat(64);
      const other = 'b'.repeat(64);
      expect(await meta.pinObject({ agentId: 'agt_1', nodeId: 'nod_1', sha256: sha, at: now() })).toBe(true);
      expect(await meta.tombstoneObject(sha, now())).toBe(false);
      // A new upload of the node replaces its pin.
      expect(await meta.pinObject({ agentId: 'agt_1', nodeId: 'nod_1', sha256: other, at: now() })).toBe(true);
      expect(await meta.tombstoneObject(sha, now())).toBe(true);
      expect(await meta.listTombstones()).toEqual([sha]);
      expect(await meta.pinObject({ agentId: 'agt_2', nodeId: 'nod_2', sha256: sha, at: now() })).toBe(false);
      await meta.removeTombstone(sha);
      expect(await meta.pinObject({ agentId: 'agt_2', nodeId: 'nod_2', sha256: sha, at: now() })).toBe(true);
      await meta.unpinNode('nod_2');
      await meta.unpinNode('nod_1');
      expect(await meta.tombstoneObject(other, now())).toBe(true);
      await meta.removeTombstone(other);

      // A committed file records its object: no tombstone while its commit is kept; the pin goes at completion.
      const f = await folder('/', 'ck');
      const file = await meta.createNode({ mountId: 'mnt_1', parentId: f.id, name: 'w.bin', type: 'file', mode: 0o100644, uid: 0, gid: 0, ownerAgent: 'agt_1' });
      expect(await meta.pinObject({ agentId: 'agt_1', nodeId: file.id, sha256: sha, at: now() })).toBe(true);
      const c = await meta.beginCommit(commitOf(f.id, '/ck'));
      await meta.markManifested(c.id, c.stats, [{ nodeId: file.id, size: 1, sha256: sha }]);
      await meta.completeCommits([c.id], now());
      expect(await meta.referencedObjects()).toEqual(new Set([sha]));
      expect(await meta.tombstoneObject(sha, now())).toBe(false);
      await meta.softDeleteNode(f.id, now());
      expect(await meta.tombstoneObject(sha, now())).toBe(false);
      expect(await meta.purgeCommit(c.id, now(), now())).toEqual({ purged: true, nodes: 2 });
      expect(await meta.referencedObjects()).toEqual(new Set());
      expect(await meta.tombstoneObject(sha, now())).toBe(true);
    });

    it('never lets a racing pin and tombstone of one object both win', async () => {
      for (let i = 0; i < 30; i++) {
        const sha = i.toString(16).padStart(64, '0');
        const calls = [() => meta.pinObject({ agentId: 'agt_1', nodeId: `nod_${i}`, sha256: sha, at: now() }), () => meta.tombstoneObject(sha, now())];
        if (i % 2) calls.reverse();
        const got = await Promise.all(calls.map((call) => call()));
        expect(got.filter(Boolean), `round ${i}`).toHaveLength(1);
      }
    });

    it('expires the pins of an agent not heard from since the bound, deregistering it; keeps a heard, a busy and an unregistered agent\'s', async () => {
      const sha = (c: string) => c.repeat(64);
      const old = '2030-01-01T00:00:00.000Z';
      const recent = '2030-01-08T00:00:00.000Z';
      const before = '2030-01-07T00:00:00.000Z';
      const agent = (id: string, lastSeenAt: string) => meta.upsertAgent({ id, mountId: 'mnt_1', mountpoint: null, hostname: 'h', registeredAt: old, lastSeenAt });
      await agent('agt_gone', old);
      await agent('agt_live', recent);
      await agent('agt_busy', old);
      await agent('agt_idle', old); // silent, but holds no pin: nothing to expire
      // agt_local is never registered: the in-process agent of roset-mount.
      for (const [a, n, c] of [['agt_gone', 'nod_1', 'a'], ['agt_gone', 'nod_2', 'b'], ['agt_live', 'nod_3', 'c'], ['agt_busy', 'nod_4', 'd'], ['agt_local', 'nod_5', 'e']] as const) {
        expect(await meta.pinObject({ agentId: a, nodeId: n, sha256: sha(c), at: old })).toBe(true);
      }
      // agt_busy has a task of a pending commit: the commit may still name its objects.
      const f = await folder('/', 'busy');
      const c = await meta.beginCommit(commitOf(f.id, '/busy'));
      await meta.addAgentTask({ id: `${c.id}.seal.agt_busy`, agentId: 'agt_busy', commitId: c.id, kind: 'seal', args: {}, status: 'done', result: null, error: null, createdAt: old, finishedAt: old });
      // agt_gone's task of a failed commit does not keep it.
      const g = await folder('/', 'failed');
      const cf = await meta.beginCommit(commitOf(g.id, '/failed'));
      await meta.addAgentTask({ id: `${cf.id}.release.agt_gone`, agentId: 'agt_gone', commitId: cf.id, kind: 'release', args: {}, status: 'pending', result: null, error: null, createdAt: old, finishedAt: null });
      await meta.failCommits([cf.id], { code: 'AGENT_UNAVAILABLE', message: 'gone' });

      // A dry run reads the same and changes nothing.
      expect(await meta.expireAgentPins(before, { dryRun: true })).toEqual({ agents: ['agt_gone'], pins: 2 });
      expect(await meta.tombstoneObject(sha('a'), now())).toBe(false);
      expect(await meta.getAgent('agt_gone')).not.toBeNull();

      expect(await meta.expireAgentPins(before)).toEqual({ agents: ['agt_gone'], pins: 2 });
      // Deregistered: its next heartbeat is refused (it must register again).
      expect(await meta.getAgent('agt_gone')).toBeNull();
      expect(await meta.touchAgent('agt_gone', now())).toBe(false);
      expect(await meta.tombstoneObject(sha('a'), now())).toBe(true);
      expect(await meta.tombstoneObject(sha('b'), now())).toBe(true);
      for (const k of ['c', 'd', 'e']) expect(await meta.tombstoneObject(sha(k), now()), k).toBe(false);
      expect((await meta.listAgents('mnt_1')).map((a) => a.id)).toEqual(['agt_busy', 'agt_idle', 'agt_live']);
      // A rerun finds nothing; once the busy agent's commit is over, its pins expire too.
      expect(await meta.expireAgentPins(before)).toEqual({ agents: [], pins: 0 });
      await meta.failCommits([c.id], { code: 'AGENT_UNAVAILABLE', message: 'gone' });
      expect(await meta.expireAgentPins(before)).toEqual({ agents: ['agt_busy'], pins: 1 });
      // A heartbeat after the bound keeps an agent: the bound is read in the transaction.
      await meta.touchAgent('agt_live', '2030-01-09T00:00:00.000Z');
      expect(await meta.expireAgentPins('2030-01-08T12:00:00.000Z')).toEqual({ agents: [], pins: 0 });
      // A re-registered agent pins afresh.
      await agent('agt_gone', recent);
      expect(await meta.pinObject({ agentId: 'agt_gone', nodeId: 'nod_1', sha256: sha('f'), at: recent })).toBe(true);
      expect(await meta.tombstoneObject(sha('f'), now())).toBe(false);
    });

    it('never lets a racing heartbeat and pin expiry both win: a heard agent keeps its pins, an expired one is told to register again', async () => {
      for (let i = 0; i < 20; i++) {
        const id = `agt_race${i}`;
        await meta.upsertAgent({ id, mountId: 'mnt_1', mountpoint: null, hostname: 'h', registeredAt: '2030-01-01T00:00:00.000Z', lastSeenAt: '2030-01-01T00:00:00.000Z' });
        expect(await meta.pinObject({ agentId: id, nodeId: `nod_race${i}`, sha256: (i + 100).toString(16).padStart(64, '0'), at: now() })).toBe(true);
        const heard = () => meta.touchAgent(id, '2030-01-09T00:00:00.000Z');
        const expire = () => meta.expireAgentPins('2030-01-07T00:00:00.000Z');
        // Which one starts first alternates.
        const first = i % 2 ? heard() : null;
        const expiring = expire();
        const [touched, expired] = await Promise.all([first ?? heard(), expiring]);
        const gone = expired.agents.includes(id);
        expect({ touched, gone, registered: (await meta.getAgent(id)) !== null }, `round ${i}`).toEqual(gone ? { touched: false, gone, registered: false } : { touched: true, gone, registered: true });
      }
    });

    it('grants the gc lease to one holder at a time; an expired one passes', async () => {
      expect(await meta.acquireGcLease('a', '2030-01-01T00:01:00.000Z', '2030-01-01T00:00:00.000Z')).toBe(true);
      expect(await meta.acquireGcLease('b', '2030-01-01T00:01:30.000Z', '2030-01-01T00:00:30.000Z')).toBe(false);
      expect(await meta.acquireGcLease('a', '2030-01-01T00:02:00.000Z', '2030-01-01T00:00:30.000Z')).toBe(true);
      expect(await meta.acquireGcLease('b', '2030-01-01T00:04:00.000Z', '2030-01-01T00:03:00.000Z')).toBe(true);
      await meta.releaseGcLease('a');
      expect(await meta.acquireGcLease('a', '2030-01-01T00:04:00.000Z', '2030-01-01T00:03:01.000Z')).toBe(false);
      await meta.releaseGcLease('b');
      expect(await meta.acquireGcLease('a', '2030-01-01T00:04:00.000Z', '2030-01-01T00:03:01.000Z')).toBe(true);
    });

    it('keeps auto-commit rules per mount, in order, with a version moved on by every set', async () => {
      await meta.createMount({ id: 'mnt_2', name: 'other', store: 'file:///x', createdAt: now() });
      expect(await meta.getAutoCommitRules('mnt_1')).toEqual({ mountId: 'mnt_1', rules: [], version: 0, updatedAt: null, updatedBy: null });
      const set = await meta.setAutoCommitRules('mnt_1', ['b/*:@dcp:latest', 'a/**:DONE'], undefined, '2030-01-01T00:00:00.000Z', 'key:ci');
      expect(set).toEqual({ mountId: 'mnt_1', rules: ['b/*:@dcp:latest', 'a/**:DONE'], version: 1, updatedAt: '2030-01-01T00:00:00.000Z', updatedBy: 'key:ci' });
      expect(await meta.getAutoCommitRules('mnt_1')).toEqual(set);
      expect((await meta.getAutoCommitRules('mnt_2')).rules).toEqual([]);
      // Compare-and-swap: a stale version changes nothing.
      expect(await meta.setAutoCommitRules('mnt_1', [], 0, now(), 'key:ci')).toBeNull();
      expect((await meta.getAutoCommitRules('mnt_1')).rules).toEqual(['b/*:@dcp:latest', 'a/**:DONE']);
      expect(await meta.setAutoCommitRules('mnt_2', ['x:y'], 1, now(), 'key:ci')).toBeNull();
      expect((await meta.getAutoCommitRules('mnt_2')).version).toBe(0);
      const cleared = await meta.setAutoCommitRules('mnt_1', [], 1, now(), 'key:ci');
      expect(cleared).toMatchObject({ rules: [], version: 2 });
      expect(await meta.getAutoCommitRules('mnt_1')).toMatchObject({ rules: [], version: 2 });
    });

    it('lets one of two racing compare-and-swaps of the auto-commit rules win, first set included', async () => {
      for (let i = 0; i < 10; i++) {
        const got = await Promise.all(['a', 'b'].map((r) => meta.setAutoCommitRules('mnt_1', [`${r}${i}:M`], 2 * i, now(), 'key:t')));
        expect(got.filter((g) => g !== null), `round ${i}`).toHaveLength(1);
        const won = got.find((g) => g !== null)!;
        expect(await meta.getAutoCommitRules('mnt_1')).toMatchObject({ rules: won.rules, version: 2 * i + 1 });
        await meta.setAutoCommitRules('mnt_1', won.rules, undefined, now(), 'key:t');
      }
    });
  });
}
