/**
 * Random command sequences for the reference model (fs-model.ts), and the runner that
 * plays one sequence against the model and a target (the core in-process, or a real
 * FUSE mount) and compares every answer, errno included, then the final tree.
 *
 * Commits run in the background, so the runner does not guess when one ends: before and
 * after each command it asks the target which commits ended (and how). A commit that
 * ended while a command ran may have ended before or after it; the runner accepts the
 * command's answer if some order of those events (and, for a `race`, of the commit call
 * and the operation racing it) gives exactly the observed answers in the model, and
 * carries on from that order's state. Which outcome a commit may have (completed with
 * exactly its folder's subtree, OPEN_HANDLES, STORAGE_ERROR) is the model's to say.
 */
import { appendFileSync } from 'node:fs';
import fc from 'fast-check';
import { byteOrder, FsModel, joinPath, type Expect, type Instant, type Layer, type ManifestEntry, type ModelNode, type OpenFlags, type SealTiming, type SettleOutcome, type Stat } from './fs-model.js';

// ---- Names ----------------------------------------------------------------------------

/**
 * Names that tell implementations apart: case variants, shared prefixes, SQL LIKE
 * wildcards, multi-byte (composed and decomposed) and astral characters.
 */
export const NAMES = [
  'a', 'A', 'b', 'ab', 'aB', 'AB', 'ab_', 'ab%', 'abc', 'a_c', 'a%c', '_', '%', '%%', 'run1', 'RUN1', 'Run1', 'run10', 'run1_',
  'é', 'É', 'e\u0301', 'ß', 'SS', 'ss', '😀', '𝔸', 'a😀', '😀a', '𝔸b', '日本',
];

export function validName(n: string): boolean {
  return n.length > 0 && n !== '.' && n !== '..' && !n.includes('/') && !n.includes('\0') && Buffer.byteLength(n) <= 255 && !/\p{Cs}/u.test(n);
}

/** Plain, pairwise distinct ASCII names (ROSET_MODEL_NAMES=plain): no look-alikes at all. */
export const PLAIN_NAMES = ['a', 'b', 'c', 'd', 'ab', 'xy'];

export type NameMode = 'mixed' | 'plain';

export function nameArb(mode: NameMode = 'mixed'): fc.Arbitrary<string> {
  if (mode === 'plain') return fc.constantFrom(...PLAIN_NAMES);
  return fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...NAMES) },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...NAMES), fc.constantFrom(...NAMES)).map(([a, b]) => a + b) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 4 }).filter(validName) },
  );
}

export type Variant = 'swapcase' | 'upper' | 'lower' | 'underscore' | 'percent' | 'wild' | 'shorter' | 'longer' | 'nfd' | 'nfc' | 'astral';
const VARIANTS: Variant[] = ['swapcase', 'upper', 'lower', 'underscore', 'percent', 'wild', 'shorter', 'longer', 'nfd', 'nfc', 'astral'];
const PLAIN_VARIANTS: Variant[] = ['shorter', 'longer'];

/** A look-alike of `name`: what a case-folding, LIKE-matching or code-unit-counting store would confuse with it. */
export function variantOf(name: string, v: Variant): string {
  const cps = [...name];
  let out: string;
  switch (v) {
    case 'swapcase': out = cps.map((c) => (c >= 'a' && c <= 'z' ? c.toUpperCase() : c >= 'A' && c <= 'Z' ? c.toLowerCase() : c)).join(''); break;
    case 'upper': out = name.toUpperCase(); break;
    case 'lower': out = name.toLowerCase(); break;
    case 'underscore': out = `${name}_`; break;
    case 'percent': out = `${name}%`; break;
    case 'wild': out = cps.length > 1 ? `${cps.slice(0, -1).join('')}_` : '%'; break;
    case 'shorter': out = cps.slice(0, -1).join(''); break;
    case 'longer': out = `${name}c`; break;
    case 'nfd': out = name.normalize('NFD'); break;
    case 'nfc': out = name.normalize('NFC'); break;
    case 'astral': out = `${name}😀`; break;
    default: { const never: never = v; throw new Error(String(never)); }
  }
  return validName(out) ? out : `${name}_`;
}

// ---- Commands -------------------------------------------------------------------------

/** A path, chosen against the model's tree when the command runs (so shrinking keeps it meaningful). */
export type PathSpec =
  | { k: 'node'; i: number }
  | { k: 'folder'; i: number }
  | { k: 'file'; i: number }
  | { k: 'new'; i: number; name: string }
  /** A new name in the i-th folder below the root (the root when there is none). */
  | { k: 'newDeep'; i: number; name: string }
  | { k: 'variant'; i: number; v: Variant }
  | { k: 'under'; i: number; name: string }
  | { k: 'root' }
  /** Where the i-th open handle's file is (or was, if it is gone): unlink, rename over, truncate an open file. */
  | { k: 'handle'; i: number }
  /** The folder the i-th open handle's file is (or was) in. */
  | { k: 'handleDir'; i: number }
  /** A folder a commit would be accepted for (STAGING all around and inside), holding files if any does. */
  | { k: 'committable'; i: number }
  /** Inside the folder a race commits: the i-th node or file below it, or a new name in one of its folders. */
  | { k: 'in'; i: number }
  | { k: 'fileIn'; i: number }
  | { k: 'newIn'; i: number; name: string };

export type Gap = { micro: number } | { macro: number };

/**
 * Bytes to write, as a length and a seed: compact in a counterexample, and shrunk by
 * shrinking two integers rather than thousands of elements.
 */
export interface Bytes { len: number; seed: number }

/** The bytes a `Bytes` stands for (xorshift32 from the seed; different seeds, different bytes). */
export function bytesOf(b: Bytes): Buffer {
  const out = Buffer.alloc(b.len);
  let x = (b.seed * 2654435761 + 1) >>> 0 || 1;
  for (let i = 0; i < b.len; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export type RaceOp =
  | { k: 'truncate'; at: PathSpec; size: number }
  | { k: 'utimens'; at: PathSpec; mtime: number }
  | { k: 'chmod'; at: PathSpec; mode: number }
  | { k: 'rename'; from: PathSpec; to: PathSpec }
  | { k: 'unlink'; at: PathSpec }
  | { k: 'mkdir'; at: PathSpec; mode: number }
  | { k: 'rmdir'; at: PathSpec }
  | { k: 'writeFile'; at: PathSpec; data: Bytes; mode: number }
  | { k: 'rewrite'; at: PathSpec; data: Bytes };

export type Cmd =
  | { k: 'mkdir'; at: PathSpec; mode: number }
  | { k: 'rmdir'; at: PathSpec }
  | { k: 'writeFile'; at: PathSpec; data: Bytes; mode: number }
  | { k: 'rewrite'; at: PathSpec; data: Bytes }
  | { k: 'create'; at: PathSpec; mode: number; append: boolean }
  | { k: 'open'; at: PathSpec; flags: OpenFlags }
  | { k: 'write'; h: number; data: Bytes; pos: number }
  | { k: 'read'; h: number; len: number; pos: number }
  | { k: 'ftruncate'; h: number; size: number }
  | { k: 'close'; h: number }
  | { k: 'unlink'; at: PathSpec }
  | { k: 'rename'; from: PathSpec; to: PathSpec }
  | { k: 'truncate'; at: PathSpec; size: number }
  | { k: 'chmod'; at: PathSpec; mode: number }
  | { k: 'utimens'; at: PathSpec; mtime: number }
  | { k: 'getattr'; at: PathSpec }
  | { k: 'readdir'; at: PathSpec }
  | { k: 'commit'; at: PathSpec }
  | { k: 'settle'; c: number }
  | { k: 'race'; at: PathSpec; op: RaceOp; opFirst: boolean; gap: Gap }
  | { k: 'storeDown' }
  | { k: 'storeUp' };

export type CmdKind = Cmd['k'];

const KINDS: CmdKind[] = ['mkdir', 'rmdir', 'writeFile', 'rewrite', 'create', 'open', 'write', 'read', 'ftruncate', 'close', 'unlink', 'rename',
  'truncate', 'chmod', 'utimens', 'getattr', 'readdir', 'commit', 'settle', 'race', 'storeDown', 'storeUp'];

/** Each command kind's weight and generator. */
function commandArbs(mode: NameMode, raceOnly?: RaceOp['k'][]): Record<CmdKind, [number, fc.Arbitrary<Cmd>]> {
  const names = nameArb(mode);
  const variants = fc.constantFrom(...(mode === 'plain' ? PLAIN_VARIANTS : VARIANTS));
  const idx = fc.nat(40);
  const FILE_MODES = [0o644, 0o600, 0o640, 0o444, 0o755, 0o400];
  const DIR_MODES = [0o755, 0o700, 0o750, 0o555];
  const fileMode = fc.constantFrom(...FILE_MODES);
  const dirMode = fc.constantFrom(...DIR_MODES);
  const data: fc.Arbitrary<Bytes> = fc.record({
    len: fc.oneof({ weight: 9, arbitrary: fc.nat(48) }, { weight: 1, arbitrary: fc.integer({ min: 1000, max: 5000 }) }),
    seed: fc.nat(1000),
  });
  const size = fc.nat(80);
  const mtime = fc.integer({ min: 1_000_000_000, max: 2_000_000_000 });

  const existing: fc.Arbitrary<PathSpec> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ k: fc.constant('node' as const), i: idx }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('file' as const), i: idx }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('folder' as const), i: idx }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('variant' as const), i: idx, v: variants }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('under' as const), i: idx, name: names }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('handle' as const), i: idx }) },
  );
  const fresh: fc.Arbitrary<PathSpec> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ k: fc.constant('new' as const), i: idx, name: names }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('newDeep' as const), i: idx, name: names }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('variant' as const), i: idx, v: variants }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('node' as const), i: idx }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('under' as const), i: idx, name: names }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('handle' as const), i: idx }) },
  );
  const inside: fc.Arbitrary<PathSpec> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ k: fc.constant('in' as const), i: idx }) },
    { weight: 1, arbitrary: existing },
  );
  const fileInside: fc.Arbitrary<PathSpec> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ k: fc.constant('fileIn' as const), i: idx }) },
    { weight: 1, arbitrary: inside },
  );
  const newInside: fc.Arbitrary<PathSpec> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ k: fc.constant('newIn' as const), i: idx, name: names }) },
    { weight: 1, arbitrary: fresh },
  );

  const raceOps: Array<[RaceOp['k'], number, fc.Arbitrary<RaceOp>]> = [
    ['truncate', 3, fc.record({ k: fc.constant('truncate' as const), at: fileInside, size })],
    ['utimens', 3, fc.record({ k: fc.constant('utimens' as const), at: fileInside, mtime })],
    ['chmod', 1, fc.record({ k: fc.constant('chmod' as const), at: fileInside, mode: fileMode })],
    ['rename', 3, fc.record({ k: fc.constant('rename' as const), from: fileInside, to: newInside })],
    ['unlink', 1, fc.record({ k: fc.constant('unlink' as const), at: fileInside })],
    ['mkdir', 1, fc.record({ k: fc.constant('mkdir' as const), at: newInside, mode: dirMode })],
    ['rmdir', 1, fc.record({ k: fc.constant('rmdir' as const), at: inside })],
    ['writeFile', 2, fc.record({ k: fc.constant('writeFile' as const), at: newInside, data, mode: fileMode })],
    ['rewrite', 2, fc.record({ k: fc.constant('rewrite' as const), at: fileInside, data })],
  ];
  const raceOp: fc.Arbitrary<RaceOp> = fc.oneof(
    ...raceOps.filter(([k]) => !raceOnly || raceOnly.includes(k)).map(([, weight, arbitrary]) => ({ weight, arbitrary })),
  );
  const gap: fc.Arbitrary<Gap> = fc.oneof(
    { weight: 4, arbitrary: fc.record({ micro: fc.nat(40) }) },
    { weight: 1, arbitrary: fc.record({ macro: fc.nat(3) }) },
  );

  return {
    mkdir: [5, fc.record({ k: fc.constant('mkdir' as const), at: fresh, mode: dirMode })],
    rmdir: [2, fc.record({ k: fc.constant('rmdir' as const), at: existing })],
    writeFile: [8, fc.record({ k: fc.constant('writeFile' as const), at: fresh, data, mode: fileMode })],
    rewrite: [1, fc.record({ k: fc.constant('rewrite' as const), at: existing, data })],
    create: [2, fc.record({ k: fc.constant('create' as const), at: fresh, mode: fileMode, append: fc.boolean() })],
    open: [2, fc.record({ k: fc.constant('open' as const), at: existing, flags: fc.constantFrom<OpenFlags>('r', 'rw', 'w', 'wt', 'a') })],
    write: [3, fc.record({ k: fc.constant('write' as const), h: idx, data, pos: fc.nat(64) })],
    read: [1, fc.record({ k: fc.constant('read' as const), h: idx, len: fc.nat(96), pos: fc.nat(64) })],
    ftruncate: [1, fc.record({ k: fc.constant('ftruncate' as const), h: idx, size })],
    close: [4, fc.record({ k: fc.constant('close' as const), h: idx })],
    unlink: [2, fc.record({ k: fc.constant('unlink' as const), at: existing })],
    rename: [4, fc.record({ k: fc.constant('rename' as const), from: existing, to: fresh })],
    truncate: [2, fc.record({ k: fc.constant('truncate' as const), at: existing, size })],
    chmod: [1, fc.record({ k: fc.constant('chmod' as const), at: existing, mode: fc.oneof(fileMode, dirMode) })],
    utimens: [2, fc.record({ k: fc.constant('utimens' as const), at: existing, mtime })],
    getattr: [2, fc.record({ k: fc.constant('getattr' as const), at: existing })],
    readdir: [2, fc.record({
      k: fc.constant('readdir' as const),
      at: fc.oneof(existing, fc.record({ k: fc.constant('handleDir' as const), i: idx }), fc.constant({ k: 'root' as const })),
    })],
    commit: [2, fc.record({
      k: fc.constant('commit' as const),
      at: fc.oneof(
        { weight: 2, arbitrary: fc.record({ k: fc.constant('committable' as const), i: idx }) },
        { weight: 2, arbitrary: fc.record({ k: fc.constant('folder' as const), i: idx }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('handleDir' as const), i: idx }) },
        { weight: 1, arbitrary: existing },
      ),
    })],
    settle: [2, fc.record({ k: fc.constant('settle' as const), c: fc.nat(3) })],
    race: [4, fc.record({
      k: fc.constant('race' as const),
      at: fc.oneof({ weight: 4, arbitrary: fc.record({ k: fc.constant('committable' as const), i: idx }) }, { weight: 1, arbitrary: fc.record({ k: fc.constant('folder' as const), i: idx }) }),
      op: raceOp, opFirst: fc.boolean(), gap,
    })],
    storeDown: [1, fc.constant({ k: 'storeDown' as const })],
    storeUp: [1, fc.constant({ k: 'storeUp' as const })],
  };
}

/** Command sequences; `exclude` drops kinds (ROSET_MODEL_EXCLUDE), e.g. those a target cannot run. */
export function commandsArb(opts: { maxLength: number; exclude?: CmdKind[]; names?: NameMode; race?: RaceOp['k'][] }): fc.Arbitrary<Cmd[]> {
  const arbs = commandArbs(opts.names ?? 'mixed', opts.race);
  const kinds = KINDS.filter((k) => !opts.exclude?.includes(k));
  return fc.array(fc.oneof(...kinds.map((k) => ({ weight: arbs[k][0], arbitrary: arbs[k][1] }))), { maxLength: opts.maxLength, size: 'max' });
}

// ---- Targets --------------------------------------------------------------------------

/** An observed answer: a value, or an errno name (with what produced it, for the report). */
export type Obs<T = unknown> = { ok: true; value: T } | { ok: false; errno: string; detail: string };

export interface RealStat { type: 'file' | 'folder' | 'other'; perm: number; size: number; mtimeMs: number }
export interface RealNode { id: string; type: 'file' | 'folder'; state: string; path: string }
export type CommitStatus = { done: false } | { done: true; completed: boolean; code?: string; message?: string };

/** What the runner drives: the core's path-based methods, or node:fs on a mount plus the API. */
export interface Target<Fh = unknown> {
  readonly layer: Layer;
  readonly timing: SealTiming;
  getattr(p: string): Promise<Obs<RealStat>>;
  readdir(p: string): Promise<Obs<string[]>>;
  mkdir(p: string, mode: number): Promise<Obs<void>>;
  rmdir(p: string): Promise<Obs<void>>;
  unlink(p: string): Promise<Obs<void>>;
  rename(from: string, to: string): Promise<Obs<void>>;
  truncate(p: string, size: number): Promise<Obs<void>>;
  chmod(p: string, mode: number): Promise<Obs<void>>;
  utimens(p: string, mtimeMs: number): Promise<Obs<void>>;
  /** open(O_WRONLY|O_CREAT|O_EXCL [|O_APPEND], mode). */
  create(p: string, mode: number, append: boolean): Promise<Obs<Fh>>;
  open(p: string, flags: OpenFlags): Promise<Obs<Fh>>;
  write(fh: Fh, data: Buffer, pos: number): Promise<Obs<number>>;
  read(fh: Fh, len: number, pos: number): Promise<Obs<Buffer>>;
  ftruncate(fh: Fh, size: number): Promise<Obs<void>>;
  /** close(2): flush, then release. */
  close(fh: Fh): Promise<Obs<void>>;
  /** The control plane's node at this path, or null. */
  lookup(p: string): Promise<RealNode | null>;
  commit(nodeId: string): Promise<Obs<string>>;
  commitStatus(commitId: string): Promise<CommitStatus>;
  manifest(commitId: string): Promise<ManifestEntry[]>;
  /** Resolves once the commit is completed or failed (or after `ms`). */
  waitSettled(commitId: string, ms: number): Promise<void>;
  setStore?(up: boolean): void;
}

// ---- Plans: a command resolved against the model ----------------------------------------

type Op =
  | { k: 'mkdir'; p: string; mode: number }
  | { k: 'rmdir'; p: string }
  | { k: 'unlink'; p: string }
  | { k: 'rename'; from: string; to: string }
  | { k: 'truncate'; p: string; size: number }
  | { k: 'chmod'; p: string; mode: number }
  | { k: 'utimens'; p: string; mtimeMs: number }
  | { k: 'getattr'; p: string }
  | { k: 'readdir'; p: string }
  | { k: 'create'; p: string; mode: number; append: boolean }
  | { k: 'open'; p: string; flags: OpenFlags }
  | { k: 'write'; h: number; data: Buffer; pos: number }
  | { k: 'read'; h: number; len: number; pos: number }
  | { k: 'ftruncate'; h: number; size: number }
  | { k: 'close'; h: number }
  | { k: 'writeFile'; p: string; data: Buffer; mode: number }
  | { k: 'rewrite'; p: string; data: Buffer }
  | { k: 'commit'; p: string; nodeId?: string };

interface Plan { ops: Op[]; race?: { opFirst: boolean; gap: Gap } }

function pick<T>(xs: T[], i: number): T | undefined {
  return xs.length ? xs[i % xs.length] : undefined;
}

function resolveSpec(m: FsModel, s: PathSpec, base = '/'): string {
  const all = m.listNodes();
  const folders = [{ path: '/', node: m.root as ModelNode }, ...all.filter((n) => n.node.kind === 'folder')];
  const inBase = all.filter((n) => n.path !== base && (base === '/' || n.path.startsWith(`${base}/`)));
  switch (s.k) {
    case 'root': return '/';
    case 'node': return pick(all, s.i)?.path ?? '/a';
    case 'file': return pick(all.filter((n) => n.node.kind === 'file'), s.i)?.path ?? pick(all, s.i)?.path ?? '/a';
    case 'folder': return pick(all.filter((n) => n.node.kind === 'folder'), s.i)?.path ?? '/a';
    case 'new': return joinPath(pick(folders, s.i)!.path, s.name);
    case 'newDeep': return joinPath(pick(folders.slice(1), s.i)?.path ?? '/', s.name);
    case 'under': return joinPath(pick([{ path: '/', node: m.root as ModelNode }, ...all], s.i)!.path, s.name);
    case 'variant': {
      const n = pick(all, s.i);
      if (!n) return `/${variantOf('a', s.v)}`;
      const parent = n.path.slice(0, n.path.lastIndexOf('/')) || '/';
      return joinPath(parent, variantOf(n.node.name, s.v));
    }
    case 'handle': return pick(m.openHandles(), s.i)?.path ?? pick(all, s.i)?.path ?? '/a';
    case 'handleDir': {
      const h = pick(m.openHandles(), s.i);
      return h ? h.path.slice(0, h.path.lastIndexOf('/')) || '/' : pick(folders, s.i)!.path;
    }
    case 'committable': {
      const ok = all.filter((n) => n.node.kind === 'folder' && m.committable(n.node.id));
      const withFiles = ok.filter((n) => m.listNodes().some((x) => x.node.kind === 'file' && x.path.startsWith(`${n.path}/`)));
      return pick(withFiles, s.i)?.path ?? pick(ok, s.i)?.path ?? pick(all.filter((n) => n.node.kind === 'folder'), s.i)?.path ?? '/a';
    }
    case 'in': return pick(inBase, s.i)?.path ?? joinPath(base, 'x');
    case 'fileIn': return pick(inBase.filter((n) => n.node.kind === 'file'), s.i)?.path ?? pick(inBase, s.i)?.path ?? joinPath(base, 'x');
    case 'newIn': {
      const dirs = [base, ...inBase.filter((n) => n.node.kind === 'folder').map((n) => n.path)];
      return joinPath(pick(dirs, s.i)!, s.name);
    }
    default: { const never: never = s; throw new Error(String(never)); }
  }
}

/**
 * Whether an operation would take away the name of a file that has an open handle: an
 * unlink of it, or a rename onto it.
 */
function removesOpenFile(m: FsModel, op: Op): boolean {
  const p = op.k === 'unlink' ? op.p : op.k === 'rename' && op.from !== op.to ? op.to : undefined;
  if (p === undefined) return false;
  const n = m.lookup(p);
  return n?.kind === 'file' && m.openHandles().some((h) => h.file === n.id);
}

function planOf(m: FsModel, c: Cmd, keepOpenNames: boolean): Plan | null {
  const plan = planOfCmd(m, c);
  return plan && keepOpenNames && plan.ops.some((op) => removesOpenFile(m, op)) ? null : plan;
}

function planOfCmd(m: FsModel, c: Cmd): Plan | null {
  const r = (s: PathSpec, base?: string): string => resolveSpec(m, s, base);
  const handles = m.openHandles();
  switch (c.k) {
    case 'mkdir': return { ops: [{ k: 'mkdir', p: r(c.at), mode: c.mode }] };
    case 'rmdir': return { ops: [{ k: 'rmdir', p: r(c.at) }] };
    case 'unlink': return { ops: [{ k: 'unlink', p: r(c.at) }] };
    case 'rename': return { ops: [{ k: 'rename', from: r(c.from), to: r(c.to) }] };
    case 'truncate': return { ops: [{ k: 'truncate', p: r(c.at), size: c.size }] };
    case 'chmod': return { ops: [{ k: 'chmod', p: r(c.at), mode: c.mode }] };
    case 'utimens': return { ops: [{ k: 'utimens', p: r(c.at), mtimeMs: c.mtime * 1000 }] };
    case 'getattr': return { ops: [{ k: 'getattr', p: r(c.at) }] };
    case 'readdir': return { ops: [{ k: 'readdir', p: r(c.at) }] };
    case 'writeFile': return { ops: [{ k: 'writeFile', p: r(c.at), data: bytesOf(c.data), mode: c.mode }] };
    case 'rewrite': return { ops: [{ k: 'rewrite', p: r(c.at), data: bytesOf(c.data) }] };
    case 'create': return { ops: [{ k: 'create', p: r(c.at), mode: c.mode, append: c.append }] };
    case 'open': return { ops: [{ k: 'open', p: r(c.at), flags: c.flags }] };
    case 'write': {
      const h = pick(handles, c.h);
      return h ? { ops: [{ k: 'write', h: h.id, data: bytesOf(c.data), pos: c.pos }] } : null;
    }
    case 'read': {
      const h = pick(handles.filter((x) => x.readable), c.h);
      return h ? { ops: [{ k: 'read', h: h.id, len: c.len, pos: c.pos }] } : null;
    }
    case 'ftruncate': {
      const h = pick(handles.filter((x) => x.writable), c.h);
      return h ? { ops: [{ k: 'ftruncate', h: h.id, size: c.size }] } : null;
    }
    case 'close': {
      const h = pick(handles, c.h);
      return h ? { ops: [{ k: 'close', h: h.id }] } : null;
    }
    case 'commit': return { ops: [{ k: 'commit', p: r(c.at) }] };
    case 'race': {
      const folder = r(c.at);
      const o = c.op;
      let op: Op;
      switch (o.k) {
        case 'truncate': op = { k: 'truncate', p: r(o.at, folder), size: o.size }; break;
        case 'utimens': op = { k: 'utimens', p: r(o.at, folder), mtimeMs: o.mtime * 1000 }; break;
        case 'chmod': op = { k: 'chmod', p: r(o.at, folder), mode: o.mode }; break;
        case 'rename': op = { k: 'rename', from: r(o.from, folder), to: r(o.to, folder) }; break;
        case 'unlink': op = { k: 'unlink', p: r(o.at, folder) }; break;
        case 'mkdir': op = { k: 'mkdir', p: r(o.at, folder), mode: o.mode }; break;
        case 'rmdir': op = { k: 'rmdir', p: r(o.at, folder) }; break;
        case 'writeFile': op = { k: 'writeFile', p: r(o.at, folder), data: bytesOf(o.data), mode: o.mode }; break;
        case 'rewrite': op = { k: 'rewrite', p: r(o.at, folder), data: bytesOf(o.data) }; break;
        default: { const never: never = o; throw new Error(String(never)); }
      }
      if (m.lookup(folder)?.kind !== 'folder') return { ops: [op] };
      return { ops: [{ k: 'commit', p: folder }, op], race: { opFirst: c.opFirst, gap: c.gap } };
    }
    case 'settle': case 'storeDown': case 'storeUp': return null;
    default: { const never: never = c; throw new Error(String(never)); }
  }
}

// ---- Applying to the model ---------------------------------------------------------------

function applyOp(m: FsModel, op: Op, at: Instant): Expect {
  switch (op.k) {
    case 'mkdir': return m.mkdir(op.p, op.mode);
    case 'rmdir': return m.rmdir(op.p);
    case 'unlink': return m.unlink(op.p);
    case 'rename': return m.rename(op.from, op.to);
    case 'truncate': return m.truncate(op.p, op.size);
    case 'chmod': return m.chmod(op.p, op.mode);
    case 'utimens': return m.utimens(op.p, op.mtimeMs);
    case 'getattr': return m.getattr(op.p);
    case 'readdir': return m.readdir(op.p);
    case 'create': return m.create(op.p, op.mode, op.append);
    case 'open': return m.open(op.p, op.flags);
    case 'write': return m.write(op.h, op.data, op.pos);
    case 'read': return m.read(op.h, op.len, op.pos);
    case 'ftruncate': return m.ftruncate(op.h, op.size);
    case 'close': return m.close(op.h, at);
    case 'writeFile': {
      const c = m.create(op.p, op.mode, false);
      if (!c.ok) return c;
      m.write(c.value!, op.data, 0);
      return m.close(c.value!, at);
    }
    case 'rewrite': {
      const o = m.open(op.p, 'wt');
      if (!o.ok) return o;
      m.write(o.value!, op.data, 0);
      return m.close(o.value!, at);
    }
    case 'commit': return m.lookup(op.p) ? m.commit(op.p, at) : { ok: false, errs: ['ENOENT'] };
    default: { const never: never = op; throw new Error(String(never)); }
  }
}

/** Why `obs` is not what the model expects (null when it is). */
function compare(m: FsModel, op: Op, exp: Expect, obs: Obs): string | null {
  if (!exp.ok) {
    if (obs.ok) return exp.okToo ? null : `expected ${exp.errs.join(' or ')}, got success`;
    return exp.errs.includes(obs.errno) ? null : `expected ${exp.errs.join(' or ')}, got ${obs.errno} (${obs.detail})`;
  }
  if (!obs.ok) return `expected success, got ${obs.errno} (${obs.detail})`;
  switch (op.k) {
    case 'getattr': return compareStat(m.layer, exp.value as Stat, obs.value as RealStat);
    case 'readdir': {
      const want = exp.value as string[];
      const got = [...(obs.value as string[])].sort(byteOrder);
      return JSON.stringify(want) === JSON.stringify(got) ? null : `entries: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`;
    }
    case 'read': {
      const want = exp.value as Buffer;
      const got = obs.value as Buffer;
      return want.equals(got) ? null : `bytes: want ${want.length} B ${want.toString('hex').slice(0, 40)}, got ${got.length} B ${got.toString('hex').slice(0, 40)}`;
    }
    case 'write': return exp.value === obs.value ? null : `wrote ${String(obs.value)} bytes, want ${String(exp.value)}`;
    default: return null;
  }
}

function compareStat(layer: Layer, want: Stat, got: RealStat): string | null {
  const diffs: string[] = [];
  if (want.type !== got.type) diffs.push(`type ${got.type}, want ${want.type}`);
  // On a mount the kernel may keep a file's attributes for 1 s after a commit changed
  // its state behind it (docs): write bits are compared on the core only.
  const mask = layer === 'mount' ? 0o7555 : 0o7777;
  if ((want.perm & mask) !== (got.perm & mask)) diffs.push(`mode ${got.perm.toString(8)}, want ${want.perm.toString(8)}`);
  if (want.size !== undefined && want.size !== got.size) diffs.push(`size ${got.size}, want ${want.size}`);
  if (want.mtimeMs !== undefined && want.mtimeMs !== got.mtimeMs) diffs.push(`mtime ${got.mtimeMs}, want ${want.mtimeMs}`);
  return diffs.length ? diffs.join('; ') : null;
}

// ---- The runner ---------------------------------------------------------------------------

type Event =
  | { k: 'op'; i: number; op: Op; at: Instant }
  /** `cid`: a commit in flight before; `own`: the commit the race's op event `own` started. */
  | { k: 'settle'; cid?: number; own?: number; realId: string; out: SettleOutcome };

export class ModelMismatch extends Error {}

function describeOp(op: Op, m?: FsModel): string {
  const q = (s: string): string => JSON.stringify(s);
  switch (op.k) {
    case 'rename': return `rename ${q(op.from)} ${q(op.to)}`;
    case 'write': return `write h${op.h} ${op.data.length}B @${op.pos}`;
    case 'read': return `read h${op.h} ${op.len}B @${op.pos}`;
    case 'ftruncate': return `ftruncate h${op.h} ${op.size}`;
    case 'close': return `close h${op.h}${m?.handles.get(op.h) ? ` (${q(m.handles.get(op.h)!.path)})` : ''}`;
    case 'writeFile': return `writeFile ${q(op.p)} ${op.data.length}B mode ${op.mode.toString(8)}`;
    case 'rewrite': return `rewrite ${q(op.p)} ${op.data.length}B`;
    case 'mkdir': return `mkdir ${q(op.p)} ${op.mode.toString(8)}`;
    case 'create': return `create ${q(op.p)} ${op.mode.toString(8)}${op.append ? ' O_APPEND' : ''}`;
    case 'open': return `open ${q(op.p)} ${op.flags}`;
    case 'truncate': return `truncate ${q(op.p)} ${op.size}`;
    case 'chmod': return `chmod ${q(op.p)} ${op.mode.toString(8)}`;
    case 'utimens': return `utimens ${q(op.p)} ${op.mtimeMs}`;
    default: return `${op.k} ${q(op.p)}`;
  }
}

function describeObs(o: Obs): string {
  if (!o.ok) return o.errno;
  if (Buffer.isBuffer(o.value)) return `${o.value.length}B`;
  if (Array.isArray(o.value)) return JSON.stringify(o.value);
  if (o.value && typeof o.value === 'object' && 'perm' in o.value) {
    const s = o.value as RealStat;
    return `${s.type} ${s.perm.toString(8)} ${s.size}B`;
  }
  if (o.value && typeof o.value === 'object') return 'ok (handle)';
  return o.value === undefined ? 'ok' : `ok ${String(o.value)}`;
}

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}

/** Every merge of `a` and `b` that keeps the order within each. */
function interleavings<T>(a: T[], b: T[]): T[][] {
  if (!a.length) return [b];
  if (!b.length) return [a];
  return [...interleavings(a.slice(1), b).map((r) => [a[0]!, ...r]), ...interleavings(a, b.slice(1)).map((r) => [b[0]!, ...r])];
}

const now = (): number => Date.now();

export interface RunOptions {
  /** Extra wall-clock to wait for a commit past the seal timeout. */
  settleMarginMs?: number;
  /** Counts what ran (`op:answer`), for tuning the generators (ROSET_MODEL_STATS=1). */
  stats?: Map<string, number>;
  /** Appends every step, with a timestamp, to this file as it runs (ROSET_MODEL_LOG=FILE). */
  logFile?: string;
  /**
   * Skips commands that would unlink, or rename onto, a file with an open handle: for a
   * target that keeps such a file listed under another name until its last handle is
   * released (libfuse 2 renames it to `.fuse_hidden*`), which the model does not describe.
   */
  keepOpenNames?: boolean;
}

/** Prints counts gathered with `RunOptions.stats`. */
export function printStats(stats: Map<string, number>): void {
  const rows = [...stats].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k.padEnd(28)} ${v}`);
  console.log(`model run statistics:\n${rows.join('\n')}`);
}

/**
 * Plays `cmds` against the model and `target`; throws ModelMismatch, with the trace of
 * what ran, at the first answer the model does not allow. Returns that trace otherwise.
 */
export async function runSequence<Fh>(cmds: Cmd[], target: Target<Fh>, opts: RunOptions = {}): Promise<string[]> {
  let model = new FsModel(target.layer, target.timing);
  const fhs = new Map<number, Fh>();
  const commitIds = new Map<number, string>();
  const trace: string[] = [];
  const margin = opts.settleMarginMs ?? 10_000;

  if (opts.logFile) {
    const file = opts.logFile;
    const push = trace.push.bind(trace);
    appendFileSync(file, `--- sequence of ${cmds.length} commands\n`);
    trace.push = (...lines: string[]): number => {
      appendFileSync(file, lines.map((l) => `${new Date().toISOString().slice(11, 23)} ${l}\n`).join(''));
      return push(...lines);
    };
  }

  const mismatch = (what: string): never => {
    throw new ModelMismatch(`${what}\n  after:\n${trace.map((t) => `    ${t}`).join('\n') || '    (nothing)'}`);
  };

  const outcomeOf = async (realId: string, st: CommitStatus & { done: true }): Promise<SettleOutcome> => {
    const out: SettleOutcome = { completed: st.completed, code: st.code, message: st.message, at: now() };
    if (st.completed) out.files = await target.manifest(realId);
    return out;
  };

  /** Commits of the model that the target reports as ended, with their outcome. */
  const ended = async (): Promise<Array<Event & { k: 'settle' }>> => {
    const out: Array<Event & { k: 'settle' }> = [];
    for (const c of model.inFlight()) {
      const realId = commitIds.get(c.id)!;
      const st = await target.commitStatus(realId);
      if (st.done) out.push({ k: 'settle', cid: c.id, realId, out: await outcomeOf(realId, st) });
    }
    return out;
  };

  const describeSettle = (e: Event & { k: 'settle' }, cid: number | undefined): string =>
    `  ~ commit #${cid ?? '?'} ${e.out.completed ? `completed (${e.out.files?.length ?? 0} files)` : `failed ${e.out.code}`}`;

  /** Applies commits that ended between commands: no ordering question. */
  const settleEnded = async (): Promise<void> => {
    for (const e of await ended()) {
      const why = model.settle(e.cid!, e.out);
      trace.push(describeSettle(e, e.cid));
      if (opts.stats) opts.stats.set(`commit:${e.out.completed ? 'completed' : e.out.code}`, (opts.stats.get(`commit:${e.out.completed ? 'completed' : e.out.code}`) ?? 0) + 1);
      if (why) mismatch(`commit #${e.cid} (${model.pathOfCommit(e.cid!)}) ${e.out.completed ? 'completed' : `failed with ${e.out.code}`}: ${why}`);
      commitIds.delete(e.cid!);
    }
  };

  const exec = async (op: Op): Promise<Obs> => {
    const fh = (h: number): Fh => {
      const f = fhs.get(h);
      if (f === undefined) throw new Error(`runner: no real handle for h${h}`);
      return f;
    };
    switch (op.k) {
      case 'mkdir': return target.mkdir(op.p, op.mode);
      case 'rmdir': return target.rmdir(op.p);
      case 'unlink': return target.unlink(op.p);
      case 'rename': return target.rename(op.from, op.to);
      case 'truncate': return target.truncate(op.p, op.size);
      case 'chmod': return target.chmod(op.p, op.mode);
      case 'utimens': return target.utimens(op.p, op.mtimeMs);
      case 'getattr': return target.getattr(op.p);
      case 'readdir': return target.readdir(op.p);
      case 'create': return target.create(op.p, op.mode, op.append);
      case 'open': return target.open(op.p, op.flags);
      case 'write': return target.write(fh(op.h), op.data, op.pos);
      case 'read': return target.read(fh(op.h), op.len, op.pos);
      case 'ftruncate': return target.ftruncate(fh(op.h), op.size);
      case 'close': return target.close(fh(op.h));
      case 'writeFile': case 'rewrite': {
        const o = op.k === 'writeFile' ? await target.create(op.p, op.mode, false) : await target.open(op.p, 'wt');
        if (!o.ok) return o;
        const w = await target.write(o.value, op.data, 0);
        const c = await target.close(o.value);
        if (!w.ok) return w;
        return c;
      }
      case 'commit': {
        const id = op.nodeId ?? (await target.lookup(op.p))?.id;
        if (!id) return { ok: false, errno: 'ENOENT', detail: 'no node at this path' };
        return target.commit(id);
      }
      default: { const never: never = op; throw new Error(String(never)); }
    }
  };

  /** Runs one step and accepts it if some order of its events explains every answer. */
  const step = async (label: string, plan: Plan): Promise<void> => {
    await settleEnded();
    const results: Obs[] = [];
    const ats: Instant[] = [];
    if (plan.race) {
      // Both start before either is awaited; the gap decides how far the first gets.
      const commitOp = plan.ops[0] as Op & { k: 'commit' };
      const node = await target.lookup(commitOp.p);
      if (!node) mismatch(`${label}: the control plane has no node at ${JSON.stringify(commitOp.p)}`);
      commitOp.nodeId = node!.id;
      const order = plan.race.opFirst ? [1, 0] : [0, 1];
      const lo = now();
      const run = (i: number): Promise<void> => exec(plan.ops[i]!).then((r) => { results[i] = r; ats[i] = { lo, hi: now() }; });
      const first = run(order[0]!);
      // Inline, so that a gap of 0 starts both in the same tick (awaiting a helper would
      // itself take a few microtasks).
      const g = plan.race.gap;
      if ('micro' in g) for (let i = 0; i < g.micro; i++) await null;
      else for (let i = 0; i < g.macro; i++) await new Promise<void>((r) => setImmediate(r));
      const second = run(order[1]!);
      await Promise.all([first, second]);
    } else {
      const lo = now();
      results[0] = await exec(plan.ops[0]!);
      ats[0] = { lo, hi: now() };
    }
    const during = await ended();
    const mine: Event[] = plan.ops.map((op, i) => ({ k: 'op', i, op, at: ats[i]! }));
    // The step's own commit may already have ended too.
    const ownIdx = plan.ops.findIndex((o) => o.k === 'commit');
    const own = ownIdx >= 0 && results[ownIdx]!.ok ? (results[ownIdx] as { value: string }).value : null;
    if (own) {
      const st = await target.commitStatus(own);
      if (st.done) mine.push({ k: 'settle', own: ownIdx, realId: own, out: await outcomeOf(own, st) });
    }
    let firstWhy: string | null = null;
    let chosen: { m: FsModel; lines: string[]; created: Map<number, number> } | null = null;
    // Commits in flight cover disjoint subtrees, so their ends commute: only where the
    // step's own events fall among them (and in which order) matters.
    for (const order of permutations(mine).flatMap((p) => interleavings(p, during))) {
      // A commit's end comes after its start.
      const pos = (i: number): number => order.findIndex((e) => e.k === 'op' && e.i === i);
      if (order.some((e, j) => e.k === 'settle' && e.own !== undefined && pos(e.own) > j)) continue;
      const m = model.clone();
      const lines: string[] = [];
      const created = new Map<number, number>(); // op index -> model id (handle or commit)
      let why: string | null = null;
      for (const e of order) {
        if (e.k === 'op') {
          const desc = describeOp(e.op, m);
          const exp = applyOp(m, e.op, e.at);
          const obs = results[e.i]!;
          why = compare(m, e.op, exp, obs);
          lines.push(`${desc} -> ${describeObs(obs)}`);
          if (why) { why = `${desc}: ${why}`; break; }
          if (exp.ok && typeof exp.value === 'number' && (e.op.k === 'create' || e.op.k === 'open' || e.op.k === 'commit')) created.set(e.i, exp.value);
        } else {
          const cid = e.cid ?? (e.own !== undefined ? created.get(e.own) : undefined);
          if (cid === undefined) { why = 'a commit ended that the model never started'; break; }
          lines.push(describeSettle(e, cid));
          const w = m.settle(cid, e.out);
          if (w) { why = `commit #${cid} ${e.out.completed ? 'completed' : `failed with ${e.out.code}`}: ${w}`; break; }
        }
      }
      if (!why) { chosen = { m, lines, created }; break; }
      firstWhy ??= why;
    }
    if (!chosen) {
      trace.push(`${label}: ${plan.ops.map((op, i) => `${describeOp(op, model)} -> ${describeObs(results[i]!)}`).join(' || ')}`);
      mismatch(`${label}: ${firstWhy}`);
    }
    model = chosen!.m;
    if (opts.stats) {
      const bump = (k: string): void => { opts.stats!.set(k, (opts.stats!.get(k) ?? 0) + 1); };
      for (const [i, op] of plan.ops.entries()) bump(`${plan.race ? 'race.' : ''}${op.k}:${results[i]!.ok ? 'ok' : (results[i] as { errno: string }).errno}`);
      for (const l of chosen!.lines) if (l.startsWith('  ~')) bump(l.includes('completed') ? 'commit:completed-during' : `commit:failed-during`);
    }
    trace.push(plan.race || chosen!.lines.length > 1 ? `${label}: ${chosen!.lines.join(' ; ')}` : `${label}: ${chosen!.lines[0]}`);
    for (const [i, id] of chosen!.created) {
      const r = results[i] as { ok: true; value: unknown };
      if (plan.ops[i]!.k === 'commit') commitIds.set(id, r.value as string);
      else fhs.set(id, r.value as Fh);
    }
    // Handles the model closed (close, and the compound writes) are gone for good.
    for (const h of [...fhs.keys()]) if (!model.handles.has(h)) fhs.delete(h);
    for (const c of [...commitIds.keys()]) if (!model.commits.has(c)) commitIds.delete(c);
  };

  const settleOne = async (cid: number): Promise<void> => {
    const realId = commitIds.get(cid);
    if (!realId) return;
    await target.waitSettled(realId, target.timing.timeoutMs + target.timing.slackMs + margin);
    const st = await target.commitStatus(realId);
    if (!st.done) mismatch(`commit #${cid} (${model.pathOfCommit(cid)}) did not end within ${target.timing.timeoutMs + margin} ms`);
  };

  for (const [n, c] of cmds.entries()) {
    const label = `#${n} ${c.k}`;
    switch (c.k) {
      case 'settle': {
        const cm = model.inFlight()[c.c % Math.max(model.inFlight().length, 1)];
        if (!cm) break;
        trace.push(`${label} #${cm.id} (${model.pathOfCommit(cm.id)})`);
        await settleOne(cm.id);
        await settleEnded();
        break;
      }
      case 'storeDown': case 'storeUp': {
        if (!target.setStore) break;
        await settleEnded();
        target.setStore(c.k === 'storeUp');
        model.setStore(c.k === 'storeUp');
        trace.push(label);
        break;
      }
      default: {
        const plan = planOf(model, c, opts.keepOpenNames ?? false);
        if (plan) await step(plan.race ? `${label} (${plan.race.opFirst ? 'operation' : 'commit'} first, then ${'micro' in plan.race.gap ? `${plan.race.gap.micro} microtasks` : `${plan.race.gap.macro} event-loop turns`})` : label, plan);
      }
    }
  }

  // Epilogue: close what is open, let every commit end, then compare the whole tree.
  for (const h of model.openHandles()) await step('end close', { ops: [{ k: 'close', h: h.id }] });
  if (target.setStore && !model.storeUp) trace.push('end: the store stays down');
  for (const c of model.inFlight()) {
    trace.push(`end settle #${c.id} (${model.pathOfCommit(c.id)})`);
    await settleOne(c.id);
  }
  await settleEnded();
  await compareTree(model, target, mismatch);
  return trace;
}

/** The whole tree: names, types, modes, sizes, bytes, and each node's state in the control plane. */
async function compareTree<Fh>(model: FsModel, target: Target<Fh>, mismatch: (what: string) => never): Promise<void> {
  const diffs: string[] = [];
  const nodes = [{ path: '/', node: model.root as ModelNode }, ...model.listNodes()];
  for (const { path: p, node: n } of nodes) {
    const real = await target.lookup(p);
    if (!real) { diffs.push(`${JSON.stringify(p)}: the control plane has no node`); continue; }
    if (real.path !== p) diffs.push(`${JSON.stringify(p)}: the control plane's node has path ${JSON.stringify(real.path)}`);
    if (real.type !== n.kind) diffs.push(`${JSON.stringify(p)}: control plane type ${real.type}, want ${n.kind}`);
    if (real.state !== n.state) diffs.push(`${JSON.stringify(p)}: state ${real.state}, want ${n.state}`);
    const st = await target.getattr(p);
    if (!st.ok) { diffs.push(`${JSON.stringify(p)}: getattr ${st.errno} (${st.detail})`); continue; }
    const sd = compareStat(model.layer, model.statOf(n), st.value);
    if (sd && p !== '/') diffs.push(`${JSON.stringify(p)}: ${sd}`);
    if (n.kind === 'folder') {
      const ls = await target.readdir(p);
      const want = [...n.children.keys()].sort(byteOrder);
      if (!ls.ok) diffs.push(`${JSON.stringify(p)}: readdir ${ls.errno} (${ls.detail})`);
      else if (JSON.stringify([...ls.value].sort(byteOrder)) !== JSON.stringify(want)) diffs.push(`${JSON.stringify(p)}: entries ${JSON.stringify([...ls.value].sort(byteOrder))}, want ${JSON.stringify(want)}`);
    } else {
      const o = await target.open(p, 'r');
      if (!o.ok) { diffs.push(`${JSON.stringify(p)}: open ${o.errno} (${o.detail})`); continue; }
      const r = await target.read(o.value, n.data.length + 16, 0);
      await target.close(o.value);
      if (!r.ok) diffs.push(`${JSON.stringify(p)}: read ${r.errno} (${r.detail})`);
      else if (!r.value.equals(n.data)) diffs.push(`${JSON.stringify(p)}: bytes ${r.value.length} B ${r.value.toString('hex').slice(0, 32)}, want ${n.data.length} B ${n.data.toString('hex').slice(0, 32)}`);
    }
  }
  if (diffs.length) mismatch(`final tree differs:\n    ${diffs.join('\n    ')}`);
}

// ---- Settings from the environment ----------------------------------------------------------

export interface ModelRunSettings {
  runs: number; seed?: number; path?: string; exclude: CmdKind[]; names: NameMode; logFile?: string;
  /** Operations a `race` may run (ROSET_MODEL_RACE); all when absent. */
  race?: RaceOp['k'][];
}

const RACE_OPS: RaceOp['k'][] = ['truncate', 'utimens', 'chmod', 'rename', 'unlink', 'mkdir', 'rmdir', 'writeFile', 'rewrite'];

export function settingsFromEnv(defaultRuns: number): ModelRunSettings {
  const env = process.env;
  const runs = env.ROSET_MODEL_RUNS ? Number(env.ROSET_MODEL_RUNS) : defaultRuns;
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`ROSET_MODEL_RUNS must be a positive integer, not ${env.ROSET_MODEL_RUNS}`);
  const seed = env.ROSET_MODEL_SEED ? Number(env.ROSET_MODEL_SEED) : undefined;
  if (seed !== undefined && !Number.isInteger(seed)) throw new Error(`ROSET_MODEL_SEED must be an integer, not ${env.ROSET_MODEL_SEED}`);
  const exclude = (env.ROSET_MODEL_EXCLUDE ?? '').split(',').map((s) => s.trim()).filter(Boolean) as CmdKind[];
  for (const k of exclude) if (!KINDS.includes(k)) throw new Error(`ROSET_MODEL_EXCLUDE: unknown command ${k} (known: ${KINDS.join(', ')})`);
  const names = (env.ROSET_MODEL_NAMES || 'mixed') as NameMode;
  if (names !== 'mixed' && names !== 'plain') throw new Error(`ROSET_MODEL_NAMES must be mixed or plain, not ${names}`);
  const race = env.ROSET_MODEL_RACE ? env.ROSET_MODEL_RACE.split(',').map((x) => x.trim()).filter(Boolean) as RaceOp['k'][] : undefined;
  for (const k of race ?? []) if (!RACE_OPS.includes(k)) throw new Error(`ROSET_MODEL_RACE: unknown operation ${k} (known: ${RACE_OPS.join(', ')})`);
  return { runs, seed, path: env.ROSET_MODEL_PATH || undefined, exclude, names, logFile: env.ROSET_MODEL_LOG || undefined, race };
}

/**
 * Runs the property and, on failure, throws fast-check's report (the shrunk sequence,
 * the runner's trace of it) with the line that replays it.
 */
export async function checkModel(prop: fc.IAsyncPropertyWithHooks<[Cmd[]]>, s: ModelRunSettings, testFile: string, project: string,
  override?: (seed: number) => string | null): Promise<void> {
  // Chosen here rather than by fast-check so that a run that never ends can be replayed too.
  const seed = s.seed ?? (Date.now() ^ Math.floor(Math.random() * 0x7fffffff));
  if (s.logFile) appendFileSync(s.logFile, `=== seed ${seed}\n`);
  const details = await fc.check(prop, { numRuns: s.runs, seed, path: s.path, endOnFailure: s.path !== undefined });
  if (!details.failed) return;
  const special = override?.(seed);
  if (special) throw new Error(special);
  const replay = `ROSET_MODEL_SEED=${details.seed} ROSET_MODEL_PATH=${details.counterexamplePath ?? ''} npx vitest run --project ${project} ${testFile}`;
  const e = details.errorInstance;
  // A mismatch explains itself; anything else is a fault of the test: show where.
  const why = e instanceof ModelMismatch ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
  throw new Error(`${fc.defaultReportMessage(details) ?? 'failed'}\n\nWhat the shrunk sequence did:\n${why}\n\nReplay: ${replay}\n`);
}
