/**
 * Names are matched byte for byte: a commit, a rename or a delete of a folder touches
 * only what is below that exact path, never a sibling whose name differs in case or
 * matches it as a wildcard pattern, and a rename of a folder with multi-byte names moves
 * its whole subtree intact.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRoot, startDaemon, stopAll, type TestDaemon } from '../support/daemon.js';
import { errnoOf } from '../support/files.js';

describe('folder paths are exact', () => {
  let d: TestDaemon;
  beforeAll(async () => { d = await startDaemon(); });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  /** `roset commit DIR --json`, which waits for the commit; returns the completed commit. */
  function commit(name: string) {
    const r = d.cli('commit', d.p(name), '--json');
    expect(r.code, r.stderr).toBe(0);
    const c = r.json();
    expect(c.status).toBe('completed');
    return c;
  }

  /** The sibling was left alone: still STAGING, writable, with its own bytes. */
  async function untouched(name: string, file: string, bytes: string) {
    expect((await d.client.resolvePath(`/${name}`))?.state).toBe('staging');
    expect((await d.client.resolvePath(`/${name}/${file}`))?.state).toBe('staging');
    expect(statSync(d.p(name, file)).mode & 0o200).toBe(0o200);
    appendFileSync(d.p(name, file), '+');
    expect(readFileSync(d.p(name, file), 'utf8')).toBe(`${bytes}+`);
  }

  it('commits run1 without RUN1, a folder whose name differs only in case', async () => {
    mkdirSync(d.p('run1'));
    mkdirSync(d.p('RUN1'));
    writeFileSync(d.p('run1', 'a'), 'a');
    writeFileSync(d.p('RUN1', 'b'), 'b');
    const c = commit('run1');
    expect(c.stats.files).toBe(1);
    expect((await d.client.getManifest(c.id)).files.map((f) => f.path)).toEqual(['a']);
    await untouched('RUN1', 'b', 'b');
    expect(errnoOf(() => appendFileSync(d.p('run1', 'a'), 'x'))).toBe('EROFS');
  });

  it('renames and deletes a folder without touching one whose name differs only in case', async () => {
    mkdirSync(d.p('mv1'));
    mkdirSync(d.p('MV1'));
    writeFileSync(d.p('mv1', 'a'), 'a');
    writeFileSync(d.p('MV1', 'b'), 'b');
    execFileSync('mv', [d.p('mv1'), d.p('moved1')]);
    expect(readdirSync(d.p('moved1'))).toEqual(['a']);
    expect(readdirSync(d.p('MV1'))).toEqual(['b']);
    expect((await d.client.resolvePath('/MV1/b'))?.path).toBe('/MV1/b');
    await untouched('MV1', 'b', 'b');

    mkdirSync(d.p('del1'));
    mkdirSync(d.p('DEL1'));
    writeFileSync(d.p('del1', 'a'), 'a');
    writeFileSync(d.p('DEL1', 'b'), 'b');
    await d.client.deleteNode((await d.client.resolvePath('/del1'))!.id);
    expect(await d.client.resolvePath('/del1/a')).toBeNull();
    expect(await d.client.resolvePath('/DEL1/b')).not.toBeNull();
    await untouched('DEL1', 'b', 'b');
  });

  it('commits folders named with SQL and glob wildcards (% _ * ? [) without their look-alikes', async () => {
    // Each pair: the committed folder, and a sibling its name matches as a LIKE or GLOB pattern.
    const pairs = [['a_b', 'aXb'], ['50%', '50x'], ['st*', 'step'], ['q?', 'qz'], ['[ab]', 'a']];
    for (const [name, lookalike] of pairs) {
      mkdirSync(d.p(name));
      mkdirSync(d.p(lookalike));
      writeFileSync(d.p(name, 'mine'), name);
      writeFileSync(d.p(lookalike, 'other'), lookalike);
    }
    for (const [name, lookalike] of pairs) {
      const c = commit(name);
      expect(c.stats.files, name).toBe(1);
      expect((await d.client.getManifest(c.id)).files.map((f) => f.path), name).toEqual(['mine']);
      await untouched(lookalike, 'other', lookalike);
    }
  });
});

describe('renaming folders with multi-byte names', () => {
  let d: TestDaemon;
  beforeAll(async () => { d = await startDaemon(); });
  afterAll(async () => { await stopAll(); if (d) removeRoot(d.root); });

  /** A restart drops every kernel cache of the mount: what is read next comes from the namespace. */
  async function restart(): Promise<void> {
    await d.stop();
    d = await startDaemon({ root: d.root });
  }

  it('mv 😀 new keeps the file inside readable under the new name', async () => {
    mkdirSync(d.p('😀'));
    writeFileSync(d.p('😀', 'file'), 'hi\n');
    execFileSync('mv', [d.p('😀'), d.p('new')]);
    expect(execFileSync('cat', [d.p('new', 'file')], { encoding: 'utf8' })).toBe('hi\n');
    await restart();
    expect(execFileSync('cat', [d.p('new', 'file')], { encoding: 'utf8' })).toBe('hi\n');
    expect(readdirSync(d.p('new'))).toEqual(['file']);
    expect((await d.client.resolvePath('/new/file'))?.path).toBe('/new/file');
    expect(readdirSync(d.p())).not.toContain('😀');
    expect(errnoOf(() => statSync(d.p('😀')))).toBe('ENOENT');
  });

  it('moves a nested subtree of multi-byte names and reads every file back', async () => {
    // Astral characters (two UTF-16 units, one code point, four UTF-8 bytes) in the
    // moved folder's own path, and BMP ones (é, 日) below it.
    const tree: Record<string, string> = {
      'été/日本語/模型.bin': 'weights',
      'été/ü.txt': 'umlaut',
      '🚀/ok': 'rocket',
      top: 'top',
    };
    const from = ['𝔸', '🧠-données'];
    for (const [rel, bytes] of Object.entries(tree)) {
      mkdirSync(d.p(...from, ...rel.split('/').slice(0, -1)), { recursive: true });
      writeFileSync(d.p(...from, ...rel.split('/')), bytes);
    }
    mkdirSync(d.p('ζ'));
    const to = ['ζ', 'κατάλογος-💾'];
    execFileSync('mv', [d.p(...from), d.p(...to)]);
    const check = async () => {
      for (const [rel, bytes] of Object.entries(tree)) {
        const moved = [...to, ...rel.split('/')];
        expect(readFileSync(d.p(...moved), 'utf8'), rel).toBe(bytes);
        expect((await d.client.resolvePath(`/${moved.join('/')}`))?.path, rel).toBe(`/${moved.join('/')}`);
      }
      expect(readdirSync(d.p(...to)).sort()).toEqual(['top', 'été', '🚀'].sort());
      expect(readdirSync(d.p(...to, 'été', '日本語'))).toEqual(['模型.bin']);
      expect(readdirSync(d.p('𝔸'))).toEqual([]);
    };
    await check();
    await restart();
    await check();
  });
});
