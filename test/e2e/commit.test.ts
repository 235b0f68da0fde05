/**
 * End to end on the embedded default: write a checkpoint through the mount, commit it
 * with the CLI, move `latest`, find the folder immutable, resume after losing the whole
 * cache, and commit a second checkpoint that shares a file (dedup).
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, unlinkSync, writeFileSync, openSync, closeSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';
import { errnoOf, sha256Of, writeRandom } from '../support/files.js';

function countFiles(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n++;
  return n;
}

describe('commit, latest, resume (embedded default, real mount)', () => {
  let d: TestDaemon;
  let modelSha: string;
  let commitId: string;

  beforeAll(async () => {
    d = await startDaemon();
  });
  afterAll(async () => {
    await stopAll();
    if (d) removeRoot(d.root);
  });

  it('commits a checkpoint with `roset commit --ref latest --json`', () => {
    mkdirSync(d.p('checkpoints', 'step-1'), { recursive: true });
    modelSha = writeRandom(d.p('checkpoints', 'step-1', 'model.pt'), 64 << 20);
    writeFileSync(d.p('checkpoints', 'step-1', 'meta.json'), JSON.stringify({ step: 1 }));
    const r = d.cli('commit', d.p('checkpoints', 'step-1'), '-m', 'step 1', '--ref', 'latest', '--json');
    expect(r.code, r.stderr).toBe(0);
    const commit = r.json();
    expect(commit.status).toBe('completed');
    expect(commit.path).toBe('/checkpoints/step-1');
    expect(commit.stats.files).toBe(2);
    expect(commit.stats.bytes).toBe((64 << 20) + JSON.stringify({ step: 1 }).length);
    commitId = commit.id;

    const ref = d.cli('ref', 'get', 'latest', '--json');
    expect(ref.code, ref.stderr).toBe(0);
    expect(ref.json().commitId).toBe(commitId);
  });

  it('refuses every change inside the committed folder with EROFS', () => {
    const dir = d.p('checkpoints', 'step-1');
    expect(errnoOf(() => writeFileSync(path.join(dir, 'model.pt'), 'x'))).toBe('EROFS');
    expect(errnoOf(() => writeFileSync(path.join(dir, 'meta.json'), 'x', { flag: 'a' }))).toBe('EROFS');
    expect(errnoOf(() => closeSync(openSync(path.join(dir, 'new.bin'), 'w')))).toBe('EROFS');
    expect(errnoOf(() => unlinkSync(path.join(dir, 'meta.json')))).toBe('EROFS');
    expect(errnoOf(() => renameSync(path.join(dir, 'meta.json'), path.join(dir, 'renamed.json')))).toBe('EROFS');
    expect(errnoOf(() => renameSync(path.join(dir, 'meta.json'), d.p('checkpoints', 'out.json')))).toBe('EROFS');
    expect(errnoOf(() => mkdirSync(path.join(dir, 'sub')))).toBe('EROFS');
    // Removing the folder as a whole is a soft delete (rotation), refused while `latest`
    // points at it; nothing inside it ever goes (docs/SEMANTICS.md).
    // (rmdir(2) itself: Node 24's recursive rmSync reports a failure without its code.)
    expect(errnoOf(() => rmdirSync(dir))).toBe('EBUSY');
    // Reading is fine, and the bytes are the ones committed.
    expect(JSON.parse(readFileSync(path.join(dir, 'meta.json'), 'utf8'))).toEqual({ step: 1 });
  });

  it('dedups a second checkpoint that shares an unchanged file', async () => {
    const objects = path.join(d.stateDir, 'store', 'objects');
    const before = countFiles(objects);
    mkdirSync(d.p('checkpoints', 'step-2'));
    writeFileSync(d.p('checkpoints', 'step-2', 'meta.json'), JSON.stringify({ step: 2 }));
    // The same bytes as step-1's model: unchanged weights, a tokenizer, a config.
    writeFileSync(d.p('checkpoints', 'step-2', 'model.pt'), readFileSync(d.p('checkpoints', 'step-1', 'model.pt')));
    const r = d.cli('commit', d.p('checkpoints', 'step-2'), '-m', 'step 2', '--ref', 'latest', '--json');
    expect(r.code, r.stderr).toBe(0);
    const c = r.json();
    expect(c.status).toBe('completed');
    expect(c.stats.dedupedBytes).toBe(64 << 20);
    expect(c.stats.uploadedBytes).toBe(JSON.stringify({ step: 2 }).length);
    // Only the new meta.json became a new object.
    expect(countFiles(objects)).toBe(before + 1);
    const manifest = await d.client.getManifest(c.id);
    const model = manifest.files.find((f) => f.path === 'model.pt')!;
    expect(model.sha256).toBe(modelSha);
    expect(manifest.parentCommitId).toBe(commitId);
  });

  it('resumes after a restart with the whole cache deleted: bytes come from the store', async () => {
    await d.stop();
    rmSync(d.cacheDir, { recursive: true, force: true });
    d = await startDaemon({ root: d.root });
    expect(await sha256Of(d.p('checkpoints', 'step-1', 'model.pt'))).toBe(modelSha);
    const ref = d.cli('ref', 'get', 'latest', '--json');
    expect(ref.code, ref.stderr).toBe(0);
    const latest = ref.json();
    expect(latest.commit.path).toBe('/checkpoints/step-2');
    expect(await sha256Of(d.p('checkpoints', 'step-2', 'model.pt'))).toBe(modelSha);
  });
});
