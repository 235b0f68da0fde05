/**
 * Auto-commit rules set through the API on a running mount (no restart): a rule PUT on
 * `/v1/mounts/{mountId}/auto-commit` applies as soon as the PUT answers (the embedded
 * control plane tells its daemon in process), beside the daemon's own `--auto-commit`
 * rule (the union): a folder whose marker lands is committed and the rule's ref moves
 * to it; `roset status` shows the daemon's flags and the mount's rules; once the rule
 * is removed, a marker landing commits nothing, while the flag rule still does.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';
import { sha256 } from '../support/files.js';
import { until } from '../support/until.js';

describe('auto-commit rules through the API', () => {
  let d: TestDaemon;
  let mountId: string;

  beforeAll(async () => {
    d = await startDaemon({ args: ['--auto-commit', 'flagged/*:READY'] });
    mountId = (await d.client.resolvePath('/'))!.mountId;
  });
  afterAll(async () => {
    await stopAll();
    removeRoot(d.root);
  });

  it('applies a rule set on the running mount: the folder is committed when its marker lands, and the ref moves', async () => {
    const set = d.cli('auto-commit', 'add', 'api/*:DONE:api-latest', '--json');
    expect(set.code, set.stderr).toBe(0);
    expect(set.json().rules.map((r: { rule: string }) => r.rule)).toEqual(['api/*:DONE:api-latest']);
    mkdirSync(d.p('api', 'one'), { recursive: true });
    writeFileSync(d.p('api', 'one', 'weights.bin'), 'weights');
    writeFileSync(d.p('api', 'one', 'DONE'), '');
    const ref = await until('api-latest', async () => (await d.client.getRef('api-latest')) ?? null);
    const m = await d.client.getManifest(ref.commitId);
    expect(m.path).toBe('/api/one');
    expect(Object.fromEntries(m.files.map((f) => [f.path, f.sha256]))).toEqual({ DONE: sha256(Buffer.from('')), 'weights.bin': sha256(Buffer.from('weights')) });
    expect(ref.commit.message).toBe('auto-commit (api/*:DONE:api-latest)');
    expect(d.logs()).toContain('auto-commit rules of the mount applied');
  });

  it('shows the daemon\'s rules beside the mount\'s in roset status', async () => {
    const r = d.cli('status', '--json');
    expect(r.code, r.stderr).toBe(0);
    const j = r.json<{ autoCommitRules: { daemon: { flags: string[]; mount: string[]; mountVersion: number }; mounts: Array<{ mountId: string; rules: Array<{ rule: string }>; version: number }> } }>();
    const mount = j.autoCommitRules.mounts.find((x) => x.mountId === mountId)!;
    expect(mount.rules.map((x) => x.rule)).toEqual(['api/*:DONE:api-latest']);
    expect(j.autoCommitRules.daemon).toEqual({ flags: ['flagged/*:READY'], mount: ['api/*:DONE:api-latest'], mountVersion: mount.version });
    const text = d.cli('status');
    expect(text.stdout).toContain('daemon flags        flagged/*:READY');
    expect(text.stdout).toContain(`mount ${mountId}  api/*:DONE:api-latest`);
  });

  it('stops committing once the rule is removed, while the daemon\'s own rule still commits', async () => {
    const before = (await d.client.getRef('api-latest'))!.commitId;
    const rm = d.cli('auto-commit', 'remove', 'api/*:DONE:api-latest', '--json');
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.json().rules).toEqual([]);
    mkdirSync(d.p('api', 'two'), { recursive: true });
    writeFileSync(d.p('api', 'two', 'DONE'), '');
    // Written after the marker above: once the flag rule has committed this folder, the
    // marker's own check has long run, so what it did (nothing) is settled.
    mkdirSync(d.p('flagged', 'a'), { recursive: true });
    writeFileSync(d.p('flagged', 'a', 'READY'), 'ok');
    await until('flagged/a committed', async () => {
      const n = await d.client.resolvePath('/flagged/a');
      return n?.state === 'committed' ? n : null;
    });
    const two = (await d.client.resolvePath('/api/two'))!;
    expect(two.state).toBe('staging');
    expect((await d.client.listCommits({ nodeId: two.id })).items).toHaveLength(0);
    expect((await d.client.getRef('api-latest'))!.commitId).toBe(before);
    expect(readFileSync(d.p('api', 'two', 'DONE'), 'utf8')).toBe('');
  });
});
