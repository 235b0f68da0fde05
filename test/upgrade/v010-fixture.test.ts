/**
 * Upgrade from release 0.1.0. Proves that a state directory (metadata.db, api-key,
 * agent-id), a cache directory (index.db, staged bytes, cached objects) and a
 * local-directory store written by 0.1.0 (test/fixtures/v0.1.0/fixture.tar.gz, made by
 * make-fixture.mjs) open under this build's roset-mount with everything intact, as
 * recorded in expected.json by 0.1.0 itself just before it stopped:
 *   - every path, and no other, through a fresh FUSE mount: type, size, bytes (sha256),
 *     mode, and file mtime; the API's node ids, parents, states and commit ids; the
 *     children of every folder; soft-deleted nodes stay deleted;
 *   - committed files and folders stay immutable (EROFS);
 *   - commits (newest first), their status, error, stats, messages, groups and
 *     manifests; refs and the full log of every ref, a deleted one included; commit
 *     groups with their status and commits;
 *   - staged files made by 0.1.0 are still writable, and a staged folder of them commits
 *     (its manifest lists their bytes, modes and mtimes) and a ref moves to it with a
 *     compare-and-swap against the ref as 0.1.0 left it;
 *   - the upgraded directories open again after a clean restart.
 * Run on the 0.1.0 code itself, it is the baseline: 0.1.0 reopening its own directories.
 * Not asserted (another implementation may change them): inode numbers, ctime/atime,
 * node createdAt/updatedAt, folder mtimes, the mount's recorded store URL (the fixture
 * was made under another temporary path), the SQLite schema itself.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommitErrorInfo, CommitStats, ManifestFile } from '../../src/api/types.js';
import { REPO, removeRoot, startDaemon, stopAll, tempRoot, testFuseBinding, waitCommit, type TestDaemon } from '../support/daemon.js';
import { errnoOf, sha256, sha256Of } from '../support/files.js';

interface ExpectedNode {
  path: string;
  id: string;
  parentId: string | null;
  type: 'file' | 'folder';
  state: 'staging' | 'committed';
  commitId: string | null;
  mode: number;
  size?: number;
  sha256?: string;
  mtimeMs?: number;
}

interface ExpectedCommit {
  id: string;
  nodeId: string;
  path: string;
  message: string;
  status: 'completed' | 'failed';
  groupId: string | null;
  error: CommitErrorInfo | null;
  stats: CommitStats;
  createdAt: string;
  completedAt: string | null;
  parentCommitId?: string | null;
  manifestFiles?: ManifestFile[];
}

interface ExpectedLogEntry {
  fromCommitId: string | null;
  toCommitId: string | null;
  updatedAt: string;
  updatedBy: string;
}

interface Expected {
  fixture: { release: string; sourceCommit: string };
  utimesMtimeMs: number;
  mount: { id: string; name: string };
  nodes: ExpectedNode[];
  staged: string[];
  deletedNodes: Array<{ id: string; path: string; type: string }>;
  commits: ExpectedCommit[];
  refs: Array<{ name: string; commitId: string; updatedAt: string; updatedBy: string }>;
  refLogs: Record<string, ExpectedLogEntry[]>;
  groups: Array<{ id: string; message: string; status: string; commitIds: string[]; createdAt: string; sealedAt: string | null; committedAt: string | null }>;
}

const FIXTURE = path.join(REPO, 'test', 'fixtures', 'v0.1.0');
const exp = JSON.parse(readFileSync(path.join(FIXTURE, 'expected.json'), 'utf8')) as Expected;
const byPath = new Map(exp.nodes.map((n) => [n.path, n]));
const files = exp.nodes.filter((n) => n.type === 'file');
const committedFiles = files.filter((n) => n.state === 'committed');
/** The staged folder committed after the upgrade: staged files of every kind. */
const STAGED = '/runs/staged';
/** A staged file rewritten after the upgrade (outside STAGED). */
const REWRITTEN = '/runs/pX1/c.txt';
const AFTER = `${STAGED}/after-upgrade.txt`;
const AFTER_BYTES = Buffer.from('written after the upgrade\n');
const REWRITTEN_BYTES = Buffer.from('rewritten after the upgrade\n');

/** Timestamps are compared as instants: a schema may store them in another form. */
const at = (s: string | null): number | null => (s === null ? null : Date.parse(s));

/** Mount-relative paths under the mount, folders and files, like make-fixture.mjs walks them. */
function walk(mnt: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(path.join(mnt, rel)).sort()) {
    const p = `${rel}/${name}`;
    out.push(p);
    if (lstatSync(path.join(mnt, p)).isDirectory()) out.push(...walk(mnt, p));
  }
  return out;
}

describe('upgrade: a state, cache and store written by 0.1.0', () => {
  let root: string | undefined;
  let d: TestDaemon;
  let newCommitId: string;
  const binding = testFuseBinding() ?? 'native';
  const start = async () => startDaemon({ root, store: path.join(root!, 'store'), binding });
  const m = (p: string) => path.join(d.mnt, p);

  beforeAll(async () => {
    expect(exp.fixture.release).toBe('0.1.0');
    root = tempRoot('roset-upgrade-');
    const tar = spawnSync('tar', ['-xzf', path.join(FIXTURE, 'fixture.tar.gz'), '-C', root], { encoding: 'utf8' });
    if (tar.status !== 0) throw new Error(`tar -xzf failed: ${tar.stderr}`);
    for (const f of ['state/metadata.db', 'state/api-key', 'cache/index.db', 'store/objects']) {
      if (!existsSync(path.join(root, f))) throw new Error(`the fixture has no ${f}`);
    }
    d = await start();
  });

  afterAll(async () => {
    await stopAll();
    if (root) removeRoot(root);
  });

  it('serves the mount 0.1.0 made, with its API key', async () => {
    expect(d.apiKey).toBe(readFileSync(path.join(root!, 'state', 'api-key'), 'utf8').trim());
    const mounts = (await d.client.listMounts()).items;
    expect(mounts.map((x) => [x.id, x.name])).toEqual([[exp.mount.id, exp.mount.name]]);
    expect(mounts[0]!.mountpoints).toEqual([d.mnt]);
  });

  it('has every path, and no other, with the same type, size, bytes, mode and file mtime', async () => {
    expect(walk(d.mnt).sort()).toEqual(exp.nodes.filter((n) => n.path !== '/').map((n) => n.path).sort());
    for (const n of exp.nodes) {
      const st = lstatSync(m(n.path));
      expect(st.isDirectory() ? 'folder' : st.isFile() ? 'file' : 'other', n.path).toBe(n.type);
      expect(st.mode, `mode of ${n.path}`).toBe(n.mode);
      if (n.type !== 'file') continue;
      expect(st.size, `size of ${n.path}`).toBe(n.size);
      // 0.1.0 records a staged file's mtime as the floor of its cache file's, and shows it
      // through the mount as Node's rounded Date: up to 1 ms later. Whole milliseconds
      // (committed files, the utimes'd file) are exact.
      const mtime = Math.floor(st.mtimeMs);
      if (n.state === 'committed' || n.mtimeMs === exp.utimesMtimeMs) expect(mtime, `mtime of ${n.path}`).toBe(n.mtimeMs);
      else expect(mtime - n.mtimeMs!, `mtime of ${n.path} (${mtime}) is ${n.mtimeMs} or 1 ms later`).toBeOneOf([0, 1]);
      expect(await sha256Of(m(n.path)), `bytes of ${n.path}`).toBe(n.sha256);
    }
    // What the fixture is about, spelled out.
    expect(byPath.get(`${STAGED}/secret.bin`)!.mode & 0o7777).toBe(0o600);
    expect(byPath.get(`${STAGED}/dated.txt`)!.mtimeMs).toBe(exp.utimesMtimeMs);
    expect(byPath.get(`${STAGED}/empty.bin`)!.size).toBe(0);
    expect(Math.max(...committedFiles.map((f) => f.size!))).toBeGreaterThan(1 << 20);
  });

  it('reports the same nodes through the API: ids, parents, types, states, commits, sizes, children', async () => {
    const resolved = await d.client.resolve(exp.nodes.map((n) => n.path));
    for (const n of exp.nodes) {
      const got = resolved[n.path];
      expect(got, n.path).toBeTruthy();
      expect({ id: got!.id, parentId: got!.parentId, type: got!.type, state: got!.state, commitId: got!.commitId, deletedAt: got!.deletedAt }, n.path)
        .toEqual({ id: n.id, parentId: n.parentId, type: n.type, state: n.state, commitId: n.commitId, deletedAt: null });
      if (n.type === 'file') expect(got!.size, n.path).toBe(n.size);
      if (n.type === 'folder') {
        const children = await d.client.listAll((o) => d.client.listChildren(n.id, o));
        const want = exp.nodes.filter((c) => c.parentId === n.id).map((c) => c.id).sort();
        expect(children.map((c) => c.id).sort(), `children of ${n.path}`).toEqual(want);
      }
    }
    expect(files.filter((f) => f.state === 'staging').map((f) => f.path)).toEqual(exp.staged);
  });

  it('keeps soft-deleted nodes deleted, with the same name live again beside them', async () => {
    expect(exp.deletedNodes.length).toBeGreaterThan(0);
    for (const del of exp.deletedNodes) {
      const n = await d.client.getNode(del.id);
      expect({ path: n.path, type: n.type }).toEqual({ path: del.path, type: del.type });
      expect(n.deletedAt).not.toBeNull();
      const live = await d.client.resolvePath(del.path);
      expect(live?.id ?? null).toBe(byPath.get(del.path)?.id ?? null);
    }
  });

  it('refuses every change to committed files and folders with EROFS', () => {
    expect(committedFiles.length).toBeGreaterThan(0);
    for (const f of committedFiles) {
      expect(errnoOf(() => closeSync(openSync(m(f.path), 'r+'))), f.path).toBe('EROFS');
      expect(errnoOf(() => writeFileSync(m(f.path), 'x', { flag: 'a' })), f.path).toBe('EROFS');
      expect(errnoOf(() => unlinkSync(m(f.path))), f.path).toBe('EROFS');
    }
    for (const c of exp.commits.filter((x) => x.status === 'completed')) {
      expect(errnoOf(() => writeFileSync(m(`${c.path}/new.bin`), 'x')), c.path).toBe('EROFS');
      expect(errnoOf(() => mkdirSync(m(`${c.path}/sub`))), c.path).toBe('EROFS');
    }
  });

  it('lists the same commits, newest first, with the same status, error, stats, groups and manifests', async () => {
    const shape = (c: ExpectedCommit) => ({
      id: c.id, nodeId: c.nodeId, path: c.path, message: c.message, status: c.status, groupId: c.groupId, error: c.error, stats: c.stats,
      createdAt: at(c.createdAt), completedAt: at(c.completedAt),
    });
    const listed = await d.client.listAll((o) => d.client.listCommits(o));
    expect(listed.map((c) => shape(c as ExpectedCommit))).toEqual(exp.commits.map(shape));
    // Pages of one follow each other the same way.
    const paged = await d.client.listAll((o) => d.client.listCommits({ ...o, limit: 1 }));
    expect(paged.map((c) => c.id)).toEqual(exp.commits.map((c) => c.id));
    expect((await d.client.listCommits({ status: 'failed' })).items.map((c) => c.id)).toEqual(exp.commits.filter((c) => c.status === 'failed').map((c) => c.id));
    for (const c of exp.commits) {
      expect(shape((await d.client.getCommit(c.id)) as ExpectedCommit)).toEqual(shape(c));
      if (c.status !== 'completed') {
        await expect(d.client.getManifest(c.id)).rejects.toMatchObject({ rosetCode: 'COMMIT_NOT_COMPLETED' });
        continue;
      }
      const man = await d.client.getManifest(c.id);
      expect(man.files).toEqual(c.manifestFiles);
      expect(man.parentCommitId).toBe(c.parentCommitId);
      expect(man.path).toBe(c.path);
    }
    expect(exp.commits.some((c) => c.status === 'failed')).toBe(true);
  });

  it('resolves every ref to the same commit and keeps the whole log of every ref, a deleted one included', async () => {
    const refs = await d.client.listAll((o) => d.client.listRefs(o));
    const shape = (r: { name: string; commitId: string; updatedAt: string; updatedBy: string }) => ({ name: r.name, commitId: r.commitId, updatedAt: at(r.updatedAt), updatedBy: r.updatedBy });
    expect(refs.map(shape).sort((a, b) => a.name.localeCompare(b.name))).toEqual(exp.refs.map(shape).sort((a, b) => a.name.localeCompare(b.name)));
    for (const r of exp.refs) {
      const got = await d.client.getRef(r.name);
      expect(got?.commitId).toBe(r.commitId);
      expect(got?.commit.id).toBe(r.commitId);
      expect(got?.commit.status).toBe('completed');
    }
    const cli = d.cli('ref', 'get', 'latest', '--json');
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.json().commitId).toBe(exp.refs.find((r) => r.name === 'latest')!.commitId);

    const logShape = (e: ExpectedLogEntry) => ({ fromCommitId: e.fromCommitId, toCommitId: e.toCommitId, updatedAt: at(e.updatedAt), updatedBy: e.updatedBy });
    const deleted = Object.keys(exp.refLogs).filter((name) => !exp.refs.some((r) => r.name === name));
    expect(deleted.length).toBeGreaterThan(0);
    expect(exp.refLogs.latest!.length).toBeGreaterThanOrEqual(2);
    for (const [name, log] of Object.entries(exp.refLogs)) {
      const got = await d.client.listAll((o) => d.client.getRefLog(name, o));
      expect(got.map((e) => ({ name: e.name, mountId: e.mountId })), name).toEqual(log.map(() => ({ name, mountId: exp.mount.id })));
      expect(got.map(logShape), `log of ${name}`).toEqual(log.map(logShape));
    }
    for (const name of deleted) expect(await d.client.getRef(name)).toBeNull();
  });

  it('keeps commit groups with the same status and commits', async () => {
    expect(exp.groups.length).toBeGreaterThan(0);
    for (const g of exp.groups) {
      const got = await d.client.getCommitGroup(g.id);
      expect({ message: got.message, status: got.status, commitIds: [...got.commitIds].sort(), createdAt: at(got.createdAt), sealedAt: at(got.sealedAt), committedAt: at(got.committedAt) })
        .toEqual({ message: g.message, status: g.status, commitIds: [...g.commitIds].sort(), createdAt: at(g.createdAt), sealedAt: at(g.sealedAt), committedAt: at(g.committedAt) });
      for (const id of g.commitIds) expect((await d.client.getCommit(id)).groupId).toBe(g.id);
    }
  });

  it('still writes the staged files of 0.1.0, and commits a staged folder of them', async () => {
    // A staged file is rewritten, and read back.
    writeFileSync(m(REWRITTEN), REWRITTEN_BYTES);
    expect(sha256(readFileSync(m(REWRITTEN)))).toBe(sha256(REWRITTEN_BYTES));
    expect((await d.client.resolvePath(REWRITTEN))!.size).toBe(REWRITTEN_BYTES.length);

    // The folder with the empty, the 0600, the utimes'd and the renamed file commits.
    writeFileSync(m(AFTER), AFTER_BYTES);
    const afterMode = statSync(m(AFTER)).mode & 0o7777;
    const staged = files.filter((f) => f.path.startsWith(`${STAGED}/`));
    expect(staged.every((f) => f.state === 'staging')).toBe(true);
    const folder = (await d.client.resolvePath(STAGED))!;
    expect(folder.id).toBe(byPath.get(STAGED)!.id);
    const c = await waitCommit(d.client, (await d.client.commit(folder.id, { message: 'after the upgrade' })).id);
    expect(c.status, JSON.stringify(c.error)).toBe('completed');
    newCommitId = c.id;
    expect(c.stats.files).toBe(staged.length + 1);
    expect(c.stats.bytes).toBe(staged.reduce((s, f) => s + f.size!, 0) + AFTER_BYTES.length);

    const man = await d.client.getManifest(c.id);
    const rel = (p: string) => p.slice(STAGED.length + 1);
    const want = [
      ...staged.map((f) => ({ path: rel(f.path), size: f.size, sha256: f.sha256, mode: f.mode & 0o7777, mtime: f.mtimeMs })),
      { path: rel(AFTER), size: AFTER_BYTES.length, sha256: sha256(AFTER_BYTES), mode: afterMode },
    ].sort((a, b) => (a.path < b.path ? -1 : 1));
    const got = [...man.files].sort((a, b) => (a.path < b.path ? -1 : 1))
      .map((f) => ({ path: f.path, size: f.size, sha256: f.sha256, mode: f.mode & 0o7777, ...(f.path === rel(AFTER) ? {} : { mtime: f.mtime }) }));
    expect(got).toEqual(want);
    // The parent is the newest completed commit 0.1.0 made (group commits tie).
    const completed = exp.commits.filter((x) => x.status === 'completed');
    const newest = Math.max(...completed.map((x) => at(x.completedAt)!));
    expect(completed.filter((x) => at(x.completedAt) === newest).map((x) => x.id)).toContain(man.parentCommitId);

    // Now immutable, with the same bytes (the modes are checked after the restart: a
    // kernel may show cached attributes for a while).
    const now = await d.client.resolve(staged.map((f) => f.path));
    for (const f of staged) {
      expect(now[f.path]?.state, f.path).toBe('committed');
      expect(now[f.path]?.commitId, f.path).toBe(c.id);
      expect(errnoOf(() => closeSync(openSync(m(f.path), 'r+'))), f.path).toBe('EROFS');
      expect(await sha256Of(m(f.path)), f.path).toBe(f.sha256);
    }
    expect((await d.client.listCommits({ limit: 1 })).items[0]!.id).toBe(c.id);

    // `latest` moves by compare-and-swap against where 0.1.0 left it; its log grows by one.
    const latest = exp.refs.find((r) => r.name === 'latest')!;
    expect((await d.client.updateRef('latest', c.id, { expectedCommitId: latest.commitId })).commitId).toBe(c.id);
    const log = await d.client.listAll((o) => d.client.getRefLog('latest', o));
    expect(log.map((e) => [e.fromCommitId, e.toCommitId])).toEqual([
      ...exp.refLogs.latest!.map((e) => [e.fromCommitId, e.toCommitId]), [latest.commitId, c.id],
    ]);
  });

  it('opens the upgraded directories again after a clean restart', async () => {
    await d.stop();
    d = await start();
    expect(walk(d.mnt).sort()).toEqual([...exp.nodes.filter((n) => n.path !== '/').map((n) => n.path), AFTER].sort());
    for (const n of exp.nodes) {
      // The folder committed after the upgrade lost its write bits.
      const inStaged = n.path === STAGED || n.path.startsWith(`${STAGED}/`);
      expect(statSync(m(n.path)).mode, `mode of ${n.path}`).toBe(inStaged ? n.mode & ~0o222 : n.mode);
      if (n.type !== 'file') continue;
      const want = n.path === REWRITTEN ? sha256(REWRITTEN_BYTES) : n.sha256;
      expect(await sha256Of(m(n.path)), n.path).toBe(want);
    }
    expect(sha256(readFileSync(m(AFTER)))).toBe(sha256(AFTER_BYTES));
    expect((await d.client.getRef('latest'))!.commitId).toBe(newCommitId);
    const ids = (await d.client.listAll((o) => d.client.listCommits(o))).map((c) => c.id);
    expect(ids).toEqual([newCommitId, ...exp.commits.map((c) => c.id)]);
    expect((await d.client.resolvePath(STAGED))!.state).toBe('committed');
    expect((await d.client.resolvePath(REWRITTEN))!.state).toBe('staging');
  });

  it('commits /runs/run1 with its one file and not the one of /runs/RUN1, which 0.1.0 aliased with it', async () => {
    const folder = (await d.client.resolvePath('/runs/run1'))!;
    const c = await waitCommit(d.client, (await d.client.commit(folder.id, { message: 'case apart' })).id);
    expect(c.status, JSON.stringify(c.error)).toBe('completed');
    expect((await d.client.getManifest(c.id)).files.map((f) => f.path)).toEqual(['notes.txt']);
    expect((await d.client.resolvePath('/runs/RUN1/notes.txt'))!.state).toBe('staging');
    closeSync(openSync(m('/runs/RUN1/notes.txt'), 'r+')); // still open for writing
  });
});
