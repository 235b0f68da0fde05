/**
 * Auto-commit: commits with zero code changes. A rule `FOLDERS:MARKER[:REF]` commits a
 * folder whose mount-relative path matches FOLDERS (a glob: `*` is one path segment or
 * part of one, `**` any number of segments) when a file named MARKER becomes complete in
 * it (its last writer closed it, or a rename put it there), then moves REF to the
 * commit. MARKER may be a preset whose last write was verified with the real framework:
 * `@dcp` (PyTorch Distributed Checkpoint: `.metadata`, written as `.metadata.tmp`,
 * fsynced, closed, then renamed: the last step of a save).
 *
 * Invariants: the writer never waits for it (the trigger is a callback that returns at
 * once; everything after runs in the background); a failure is logged, counted
 * (`roset_auto_commits_total`) and kept in `<stateDir>/auto-commit.json` for `roset
 * status`, never thrown at the writer; one commit per folder at a time (a marker
 * completing again while its folder commits is skipped: the commit in flight is the
 * one that counts).
 */
import * as path from 'node:path';
import type { Logger } from 'pino';
import type { ControlApi } from '../control/service.js';
import { codeOf, toRosetError } from '../errors/index.js';
import { autoCommitsTotal } from '../metrics/index.js';
import { sleep } from '../util/sleep.js';
import { writeFileAtomic } from './state-files.js';

export const AUTO_COMMIT_PRESETS: Record<string, string> = {
  // torch.distributed.checkpoint FileSystemWriter.finish: .metadata.tmp, fsync, rename.
  '@dcp': '.metadata',
};

export interface AutoCommitRule {
  text: string;
  folders: RegExp;
  marker: string;
  ref: string | null;
}

const REF_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/** Parses `FOLDERS:MARKER[:REF]`; throws with what is wrong. */
export function parseAutoCommitRule(text: string): AutoCommitRule {
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3) throw new Error(`auto-commit rule ${JSON.stringify(text)}: expected FOLDERS:MARKER[:REF], e.g. 'checkpoints/*:@dcp:latest'`);
  const [glob, rawMarker, ref] = parts as [string, string, string | undefined];
  const g = glob.replace(/^\/+|\/+$/g, '');
  if (!g) throw new Error(`auto-commit rule ${JSON.stringify(text)}: FOLDERS is empty (the mount's root cannot be committed this way)`);
  const marker = rawMarker.startsWith('@') ? AUTO_COMMIT_PRESETS[rawMarker] : rawMarker;
  if (!marker) throw new Error(`auto-commit rule ${JSON.stringify(text)}: unknown preset ${rawMarker} (known: ${Object.keys(AUTO_COMMIT_PRESETS).join(', ')})`);
  if (marker.includes('/') || marker === '.' || marker === '..') throw new Error(`auto-commit rule ${JSON.stringify(text)}: MARKER is a file name, not a path`);
  if (ref !== undefined && !REF_NAME.test(ref)) throw new Error(`auto-commit rule ${JSON.stringify(text)}: ${JSON.stringify(ref)} is not a ref name`);
  return { text, folders: globToRegExp(g), marker, ref: ref ?? null };
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  const segs = glob.split('/');
  segs.forEach((seg, i) => {
    if (seg === '**') {
      re += i === segs.length - 1 ? '.*' : '(?:[^/]+/)*';
      return;
    }
    re += seg.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*');
    if (i < segs.length - 1) re += '/';
  });
  return new RegExp(`^${re}$`);
}

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

export class AutoCommitter {
  private readonly inFlight = new Set<string>();
  private readonly failures: AutoCommitFailure[] = [];
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly rules: AutoCommitRule[], private readonly mountId: string, private readonly control: ControlApi,
    private readonly port: CommitPort, private readonly stateDir: string, private readonly log: Logger) {}

  /** The core's `onFileReady`: returns at once. */
  readonly onFileReady = (nodeId: string): void => {
    const p = this.check(nodeId).catch((err: unknown) => this.log.error({ err: (err as Error).message }, 'auto-commit: unexpected error'));
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  };

  /** Waits for the auto-commits under way (shutdown). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.running]);
  }

  private async check(nodeId: string): Promise<void> {
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
      await writeFileAtomic(path.join(this.stateDir, AUTO_COMMIT_FILE), `${JSON.stringify({ failures: this.failures }, null, 2)}\n`, 0o644)
        .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'could not record the auto-commit failure'));
    }
  }
}

/** Where a daemon keeps its recent auto-commit failures, for `roset status`. */
export const AUTO_COMMIT_FILE = 'auto-commit.json';
