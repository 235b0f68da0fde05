/**
 * Auto-commit rules: the text `FOLDERS:MARKER[:REF]` and what it means, shared by the
 * control plane (which validates the rules a mount keeps, `PUT
 * /v1/mounts/{id}/auto-commit`) and `roset-mount` (which validates its
 * `--auto-commit` flags and applies both kinds). Pure: no I/O.
 *
 * A rule commits a folder whose mount-relative path matches FOLDERS (a glob: `*` is
 * one path segment or part of one, `**` any number of segments) when a file named
 * MARKER becomes complete in it, then moves REF to the commit. MARKER may be a preset
 * whose last write was verified with the real framework: `@dcp` (PyTorch Distributed
 * Checkpoint: `.metadata`, written as `.metadata.tmp`, fsynced, closed, then renamed:
 * the last step of a save).
 *
 * Invariants: a rule that parses has a non-empty FOLDERS, a MARKER that is a file name
 * (never a path), and a REF that is a valid ref name; a bad rule throws
 * `INVALID_AUTO_COMMIT_RULE` with what is wrong, whoever asks (flag or API).
 */
import { ApiError } from '../errors/index.js';

export const AUTO_COMMIT_PRESETS: Record<string, string> = {
  // torch.distributed.checkpoint FileSystemWriter.finish: .metadata.tmp, fsync, rename.
  '@dcp': '.metadata',
};

/** The most rules one mount keeps through the API: a list, not a database. */
export const MAX_MOUNT_RULES = 100;
/** The longest rule text. */
export const MAX_RULE_LENGTH = 1024;

export interface AutoCommitRule {
  text: string;
  /** FOLDERS as written (slashes at either end dropped). */
  glob: string;
  folders: RegExp;
  /** The marker's file name (a preset resolved). */
  marker: string;
  ref: string | null;
}

const REF_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

function bad(text: string, what: string): ApiError {
  return new ApiError('INVALID_AUTO_COMMIT_RULE', `auto-commit rule ${JSON.stringify(text)}: ${what}`);
}

/** Parses `FOLDERS:MARKER[:REF]`; throws INVALID_AUTO_COMMIT_RULE with what is wrong. */
export function parseAutoCommitRule(text: string): AutoCommitRule {
  if (text.length > MAX_RULE_LENGTH) throw bad(text.slice(0, 64), `longer than ${MAX_RULE_LENGTH} characters`);
  if (text.includes('\0')) throw bad(text, 'contains a NUL byte');
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3) throw bad(text, "expected FOLDERS:MARKER[:REF], e.g. 'checkpoints/*:@dcp:latest'");
  const [glob, rawMarker, ref] = parts as [string, string, string | undefined];
  const g = glob.replace(/^\/+|\/+$/g, '');
  if (!g) throw bad(text, "FOLDERS is empty (the mount's root cannot be committed this way)");
  const marker = rawMarker.startsWith('@') ? AUTO_COMMIT_PRESETS[rawMarker] : rawMarker;
  if (!marker) throw bad(text, rawMarker ? `unknown preset ${rawMarker} (known: ${Object.keys(AUTO_COMMIT_PRESETS).join(', ')})` : 'MARKER is empty');
  if (marker.includes('/') || marker === '.' || marker === '..') throw bad(text, 'MARKER is a file name, not a path');
  if (ref !== undefined && !REF_NAME.test(ref)) throw bad(text, `${JSON.stringify(ref)} is not a ref name`);
  return { text, glob: g, folders: globToRegExp(g), marker, ref: ref ?? null };
}

/**
 * A mount's list as the API takes it: an array of rule texts, each parsed, none twice.
 * Throws BAD_REQUEST for a body that is not such a list, INVALID_AUTO_COMMIT_RULE for a
 * bad rule.
 */
export function parseRuleList(value: unknown): AutoCommitRule[] {
  if (!Array.isArray(value) || !value.every((r) => typeof r === 'string')) throw new ApiError('BAD_REQUEST', 'rules must be an array of strings, each FOLDERS:MARKER[:REF]');
  if (value.length > MAX_MOUNT_RULES) throw new ApiError('BAD_REQUEST', `A mount keeps at most ${MAX_MOUNT_RULES} auto-commit rules`);
  const out: AutoCommitRule[] = [];
  for (const text of value as string[]) {
    if (out.some((r) => r.text === text)) throw bad(text, 'listed twice');
    out.push(parseAutoCommitRule(text));
  }
  return out;
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
