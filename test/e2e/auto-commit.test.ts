/**
 * Commits with zero code changes (`--auto-commit`), on a real mount: a save that ends
 * the way PyTorch DCP's does (data files, then `.metadata.tmp` written, fsynced,
 * closed and renamed to `.metadata`) is committed and `latest` moves to it, with no
 * call to Roset; a save killed before its marker leaves `latest` where it was; a folder
 * the rule does not match is not committed; a failed auto-commit is logged, counted and
 * shown by `roset status`, and never blocks the writer.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';
import { sha256 } from '../support/files.js';
import { startWriter } from '../support/writer.js';
import { until } from '../support/until.js';

/** What DCP's FileSystemWriter does last: the metadata to a temporary name, fsync, close, rename. */
function dcpSave(d: TestDaemon, dir: string, shards: Record<string, Buffer>): void {
  mkdirSync(d.p(dir), { recursive: true });
  for (const [name, bytes] of Object.entries(shards)) writeFileSync(d.p(dir, name), bytes);
  const fd = openSync(d.p(dir, '.metadata.tmp'), 'w');
  writeSync(fd, Buffer.from('metadata'));
  fsyncSync(fd);
  closeSync(fd);
  renameSync(d.p(dir, '.metadata.tmp'), d.p(dir, '.metadata'));
}

describe('auto-commit', () => {
  let d: TestDaemon;

  beforeAll(async () => {
    d = await startDaemon({ sealTimeout: 3, args: ['--auto-commit', 'checkpoints/*:@dcp:latest', '--auto-commit', 'other/*:done.txt'] });
  });
  afterAll(async () => {
    await stopAll();
    removeRoot(d.root);
  });

  it('commits a folder when its DCP marker lands and moves latest, with no call to Roset', async () => {
    const a = randomBytes(1 << 20);
    dcpSave(d, 'checkpoints/step-1', { '__0_0.distcp': a });
    const ref = await until('latest', async () => (await d.client.getRef('latest')) ?? null);
    const m = await d.client.getManifest(ref.commitId);
    expect(m.path).toBe('/checkpoints/step-1');
    expect(Object.fromEntries(m.files.map((f) => [f.path, f.sha256]))).toEqual({ '.metadata': sha256(Buffer.from('metadata')), '__0_0.distcp': sha256(a) });
    // Read back at once, close included: the seal wrote back the kernel's times of the
    // marker (written just before), so no close reports an error for them.
    expect(readFileSync(d.p('checkpoints', 'step-1', '.metadata'), 'utf8')).toBe('metadata');
    expect(sha256(readFileSync(d.p('checkpoints', 'step-1', '__0_0.distcp')))).toBe(sha256(a));
  });

  it('leaves latest on the previous checkpoint when a save is killed before its marker', async () => {
    const before = (await d.client.getRef('latest'))!.commitId;
    mkdirSync(d.p('checkpoints', 'step-2'));
    const w = startWriter(d.p('checkpoints', 'step-2', '__0_0.distcp'), 0, 1 << 20);
    await w.reached('writing');
    w.proc.kill('SIGKILL');
    await w.exited;
    // The marker never came: nothing commits the folder, latest stays.
    const step2 = (await d.client.resolvePath('/checkpoints/step-2'))!;
    expect(step2.state).toBe('staging');
    expect((await d.client.getRef('latest'))!.commitId).toBe(before);
    expect((await d.client.listCommits({ nodeId: step2.id })).items).toHaveLength(0);
  });

  it('commits only folders its rule matches', async () => {
    dcpSave(d, 'elsewhere/step-1', { 'x.distcp': randomBytes(1024) });
    mkdirSync(d.p('other', 'a'), { recursive: true });
    writeFileSync(d.p('other', 'a', 'done.txt'), 'ok');
    const other = await until('other/a committed', async () => {
      const n = await d.client.resolvePath('/other/a');
      return n?.state === 'committed' ? n : null;
    });
    expect(other.state).toBe('committed');
    const elsewhere = (await d.client.resolvePath('/elsewhere/step-1'))!;
    expect(elsewhere.state).toBe('staging');
  });

  it('logs a failed auto-commit, counts it, shows it in roset status, and never blocks the writer', async () => {
    // The marker lands while a file of the folder stays open: the seal times out.
    mkdirSync(d.p('checkpoints', 'step-3'));
    const w = startWriter(d.p('checkpoints', 'step-3', 'open.bin'), 0, 1 << 16);
    await w.reached('writing');
    const t0 = Date.now();
    writeFileSync(d.p('checkpoints', 'step-3', '.metadata'), 'metadata');
    expect(Date.now() - t0).toBeLessThan(5000);
    const status = await until('the failure in roset status', async () => {
      const r = d.cli('status', '--json');
      const j = r.code === 0 ? r.json<{ autoCommitFailures: Array<{ folder: string; code: string }> }>() : null;
      return j && j.autoCommitFailures.length > 0 ? j : null;
    }, 90_000);
    w.proc.kill('SIGKILL');
    await w.exited;
    expect(status.autoCommitFailures[0]).toMatchObject({ folder: '/checkpoints/step-3', code: 'OPEN_HANDLES' });
    expect(d.logs()).toContain('auto-commit failed');
    const metrics = await (await fetch(`${d.endpoint}/metrics`)).text();
    expect(metrics).toMatch(/roset_auto_commits_total\{outcome="failed"\} 1/);
  });
});
