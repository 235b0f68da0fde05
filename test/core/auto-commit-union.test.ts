/**
 * The rules an `AutoCommitter` applies, without FUSE or a control plane: the union of
 * the daemon's flags and the mount's rules (a rule in both applied once), replaced only
 * by a newer version of the mount's (an older answer arriving late changes nothing), a
 * rule this release cannot parse left out while the others apply, no lookup at all
 * while there is no rule, and the state file `roset status` reads.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AutoCommitRules } from '../../src/api/types.js';
import type { ControlApi } from '../../src/control/service.js';
import { AutoCommitter, parseAutoCommitRule, type CommitPort } from '../../src/daemon/auto-commit.js';
import type { NodeRecord } from '../../src/meta/types.js';

/** A namespace of two levels: folder `dir` (id `f:dir`) holding file `name` (id `n:dir/name`). */
function fakeControl(lookups: string[]): ControlApi {
  return {
    lookupById: async (_m: string, id: string) => {
      lookups.push(id);
      const [dir, name] = id.slice(2).split('|') as [string, string];
      return { id, parentId: `f:${dir}`, name } as unknown as NodeRecord;
    },
    pathOf: async (id: string) => `/${id.slice(2)}`,
  } as unknown as ControlApi;
}

function rulesAt(version: number, ...texts: string[]): AutoCommitRules {
  return { mountId: 'mnt_1', version, updatedAt: null, updatedBy: null, rules: texts.map((rule) => ({ rule, folders: '', marker: '', ref: null })) };
}

describe('AutoCommitter rules', () => {
  let dir: string;
  let lookups: string[];
  let commits: string[];
  let committer: AutoCommitter;
  const port: CommitPort = {
    commit: async (folderId, message) => { commits.push(`${folderId} ${message}`); return `cmt_${commits.length}`; },
    outcome: async () => ({ status: 'completed', error: null }),
    setRef: async () => undefined,
  };
  const make = (flags: string[]): AutoCommitter =>
    new AutoCommitter(flags.map(parseAutoCommitRule), 'mnt_1', fakeControl(lookups), port, dir, pino({ level: 'silent' }));
  const ready = async (id: string): Promise<void> => {
    committer.onFileReady(id);
    await committer.settle();
  };

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'roset-acu-'));
    lookups = [];
    commits = [];
  });
  afterEach(async () => {
    await committer?.settle();
    rmSync(dir, { recursive: true, force: true });
  });

  it('costs no lookup while there is no rule', async () => {
    committer = make([]);
    await ready('n:a/x|DONE');
    expect(lookups).toEqual([]);
    committer.setMountRules(rulesAt(1, 'a/*:DONE'));
    await ready('n:a/x|DONE');
    expect(lookups).toEqual(['n:a/x|DONE']);
    expect(commits).toEqual(['f:a/x auto-commit (a/*:DONE)']);
  });

  it('applies flags and the mount\'s rules together, a rule in both once, and only newer versions of the mount\'s', async () => {
    committer = make(['flag/*:READY', 'both/*:M']);
    committer.setMountRules(rulesAt(2, 'both/*:M', 'api/*:DONE'));
    expect(committer.appliedRules).toEqual(['flag/*:READY', 'both/*:M', 'api/*:DONE']);
    // An answer of an older version, arriving late, changes nothing.
    committer.setMountRules(rulesAt(1));
    expect(committer.appliedMountVersion).toBe(2);
    await ready('n:flag/a|READY');
    await ready('n:api/b|DONE');
    await ready('n:other/c|DONE');
    expect(commits).toEqual(['f:flag/a auto-commit (flag/*:READY)', 'f:api/b auto-commit (api/*:DONE)']);
    committer.setMountRules(rulesAt(3));
    expect(committer.appliedRules).toEqual(['flag/*:READY', 'both/*:M']);
    await ready('n:api/d|DONE');
    expect(commits).toHaveLength(2);
    await committer.settle();
    expect(JSON.parse(readFileSync(path.join(dir, 'auto-commit.json'), 'utf8'))).toEqual({
      flags: ['flag/*:READY', 'both/*:M'], mount: [], mountVersion: 3, failures: [],
    });
  });

  it('leaves out a rule of the mount it cannot parse, applying the others', async () => {
    committer = make([]);
    committer.setMountRules(rulesAt(1, 'x/*:@from-a-newer-release', 'y/*:DONE'));
    expect(committer.appliedRules).toEqual(['y/*:DONE']);
    expect(committer.appliedMountVersion).toBe(1);
  });
});
