/**
 * Auto-commit: commits with zero code changes. What a rule `FOLDERS:MARKER[:REF]` means,
 * and its presets, is `src/meta/auto-commit-rules.ts` (the control plane checks the rules
 * a mount keeps with the same parser). The rules applied are the union of the daemon's
 * own (`--auto-commit`, fixed for the process) and the mount's (set through the API,
 * replaced whenever the control plane reports a newer version: in process when
 * embedded, through the agent's poll otherwise).
 *
 * Invariants: the writer never waits for it (the trigger is a callback that returns at
 * once; everything after runs in the background); with no rule at all a file becoming
 * ready costs nothing (no lookup); a failure is logged, counted
 * (`roset_auto_commits_total`) and kept in `<stateDir>/auto-commit.json` for `roset
 * status`, never thrown at the writer; one commit per folder at a time (a marker
 * completing again while its folder commits is skipped: the commit in flight is the
 * one that counts); the mount's rules only ever move to a newer version (an older
 * answer arriving late changes nothing).
 */
import * as path from 'node:path';
import type { Logger } from 'pino';
import type { AutoCommitRules } from '../api/types.js';
import type { ControlApi } from '../control/service.js';
import { codeOf, toRosetError } from '../errors/index.js';
import { parseAutoCommitRule, type AutoCommitRule } from '../meta/auto-commit-rules.js';
import { autoCommitsTotal } from '../metrics/index.js';
import { sleep } from '../util/sleep.js';
import { writeFileAtomic } from './state-files.js';

export { AUTO_COMMIT_PRESETS, parseAutoCommitRule, type AutoCommitRule } from '../meta/auto-commit-rules.js';

/** What auto-commit needs of the control plane: in process (embedded) or over HTTP (agent). */
export interface CommitPort {
  commit(folderId: string, message: string): Promise<string>;
  /** The commit's outcome once it is not pending. */
  outcome(commitId: string): Promise<{ status: 'pending' | 'completed' | 'failed'; error: { code: string; message: string } | null }>;
  setRef(name: string, commitId: string): Promise<void>;
}

export interface AutoCommitFailure {
  at: string;
  rule: string;
  folder: string;
  code: string;
  message: string;
}

/** What `<stateDir>/auto-commit.json` holds, for `roset status`. */
export interface AutoCommitState {
  /** The daemon's own rules (`--auto-commit`). */
  flags: string[];
  /** The mount's rules (the API) this daemon applies, at `mountVersion`; -1: not read yet. */
  mount: string[];
  mountVersion: number;
  failures: AutoCommitFailure[];
}

export class AutoCommitter {
  private readonly inFlight = new Set<string>();
  private readonly failures: AutoCommitFailure[] = [];
  private readonly running = new Set<Promise<void>>();
  private mountRules: AutoCommitRule[] = [];
  private mountVersion = -1;
  /** The union, flags first; a rule in both is applied once. */
  private rules: AutoCommitRule[];
  /** State-file writes, one after another, so the file ends as the last state. */
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly flagRules: AutoCommitRule[], private readonly mountId: string, private readonly control: ControlApi,
    private readonly port: CommitPort, private readonly stateDir: string, private readonly log: Logger) {
    this.rules = [...flagRules];
  }

  /** The version of the mount's rules applied; -1 before the first. */
  get appliedMountVersion(): number {
    return this.mountVersion;
  }

  /** The rules applied now (flags and mount), for logs and tests. */
  get appliedRules(): string[] {
    return this.rules.map((r) => r.text);
  }

  /**
   * Applies the mount's rules, if newer than those applied. A rule this daemon cannot
   * parse (set through a newer control plane, with a preset this release lacks) is
   * left out and logged as an error; the others apply.
   */
  setMountRules(r: AutoCommitRules): void {
    if (r.version <= this.mountVersion) return;
    const parsed: AutoCommitRule[] = [];
    for (const { rule } of r.rules) {
      try {
        parsed.push(parseAutoCommitRule(rule));
      } catch (err) {
        this.log.error({ rule, err: (err as Error).message }, 'a rule of the mount is not understood by this release: it is not applied');
      }
    }
    this.mountRules = parsed;
    this.mountVersion = r.version;
    const flags = new Set(this.flagRules.map((x) => x.text));
    this.rules = [...this.flagRules, ...parsed.filter((x) => !flags.has(x.text))];
    this.log.info({ version: r.version, mountRules: parsed.map((x) => x.text), flagRules: [...flags] }, 'auto-commit rules of the mount applied');
    this.save();
  }

  /** Writes the state file (rules and recent failures); a failed write is logged, and the next one carries everything. */
  save(): Promise<void> {
    const state: AutoCommitState = {
      flags: this.flagRules.map((r) => r.text), mount: this.mountRules.map((r) => r.text), mountVersion: this.mountVersion, failures: [...this.failures],
    };
    this.saving = this.saving.then(() => writeFileAtomic(path.join(this.stateDir, AUTO_COMMIT_FILE), `${JSON.stringify(state, null, 2)}\n`, 0o644))
      .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not write the auto-commit state file'));
    return this.saving;
  }

  /** The core's `onFileReady`: returns at once. */
  readonly onFileReady = (nodeId: string): void => {
    if (this.rules.length === 0) return;
    const p = this.check(nodeId).catch((err: unknown) => this.log.error({ err: (err as Error).message }, 'auto-commit: unexpected error'));
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  };

  /** Waits for the auto-commits under way (shutdown). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.running]);
    await this.saving;
  }

  private async check(nodeId: string): Promise<void> {
    if (this.rules.length === 0) return;
    const node = await this.control.lookupById(this.mountId, nodeId);
    if (!node || !node.parentId) return;
    const rules = this.rules.filter((r) => r.marker === node.name);
    if (rules.length === 0) return;
    const folderPath = await this.control.pathOf(node.parentId);
    if (folderPath === null) return;
    const rel = folderPath.replace(/^\/+/, '');
    const rule = rules.find((r) => r.folders.test(rel));
    if (!rule) return;
    if (this.inFlight.has(node.parentId)) return;
    this.inFlight.add(node.parentId);
    try {
      await this.run(rule, node.parentId, folderPath);
    } finally {
      this.inFlight.delete(node.parentId);
    }
  }

  private async run(rule: AutoCommitRule, folderId: string, folderPath: string): Promise<void> {
    const log = this.log.child({ rule: rule.text, folder: folderPath });
    try {
      const id = await this.port.commit(folderId, `auto-commit (${rule.text})`);
      let o = await this.port.outcome(id);
      for (let wait = 50; o.status === 'pending'; wait = Math.min(1000, wait * 2)) {
        await sleep(wait);
        o = await this.port.outcome(id);
      }
      if (o.status === 'failed') throw Object.assign(new Error(o.error?.message ?? 'the commit failed'), { rosetCode: o.error?.code ?? 'INTERNAL' });
      if (rule.ref) await this.port.setRef(rule.ref, id);
      autoCommitsTotal.inc({ outcome: 'completed' });
      log.info({ commitId: id, ref: rule.ref }, 'auto-commit completed');
    } catch (err) {
      const code = codeOf(err) ?? toRosetError(err).rosetCode;
      autoCommitsTotal.inc({ outcome: 'failed' });
      log.error({ code, err: (err as Error).message }, 'auto-commit failed');
      this.failures.push({ at: new Date().toISOString(), rule: rule.text, folder: folderPath, code, message: (err as Error).message });
      if (this.failures.length > 20) this.failures.shift();
      await this.save();
    }
  }
}

/** Where a daemon keeps its auto-commit rules and recent failures, for `roset status`. */
export const AUTO_COMMIT_FILE = 'auto-commit.json';
