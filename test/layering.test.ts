/**
 * Every relative import in src/ and bench/ is one that the module table of
 * docs/ARCHITECTURE.md (`| folder | owns | may import |`) allows: the importer's own
 * folder (or file, for a file that has its own row), or a module its row names, with
 * `type only` in a row's note meaning type-only imports. The table is read from the doc
 * itself, and every folder of src/ must have a row.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './support/daemon.js';

interface Allowed {
  /** Module name as the table writes it: `store`, `api/types`, `bench`. */
  name: string;
  typeOnly: boolean;
}

interface Row {
  /** Repo-relative path of the folder (with a trailing slash) or file the row is about. */
  at: string;
  name: string;
  allows: Allowed[];
}

const DOC = path.join(REPO, 'docs', 'ARCHITECTURE.md');

/** `src/store/` → `store`, `src/api/types.ts` → `api/types`, `bench/` → `bench`. */
function moduleName(at: string): string {
  return at.replace(/^src\//, '').replace(/\/$/, '').replace(/\.ts$/, '');
}

/** Where a module named in the last column lives: a folder or a single file. */
function locate(name: string): string {
  if (name === 'bench') return 'bench/';
  const dir = path.join(REPO, 'src', name);
  try {
    if (statSync(dir).isDirectory()) return `src/${name}/`;
  } catch { /* not a folder */ }
  try {
    if (statSync(`${dir}.ts`).isFile()) return `src/${name}.ts`;
  } catch { /* not a file either */ }
  throw new Error(`docs/ARCHITECTURE.md names a module that does not exist: ${name}`);
}

/** `a, b (c, d); e` → `a`, `b (c, d)`, `e`. */
function splitOutsideParens(cell: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of cell) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if ((ch === ',' || ch === ';') && depth === 0) {
      items.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  items.push(cur);
  return items.map((s) => s.trim()).filter(Boolean);
}

function readTable(): Row[] {
  const lines = readFileSync(DOC, 'utf8').split('\n');
  const head = lines.findIndex((l) => /^\| folder \| owns \| may import \|$/.test(l));
  if (head < 0) throw new Error('docs/ARCHITECTURE.md has no `| folder | owns | may import |` table');
  const rows: Row[] = [];
  for (const line of lines.slice(head + 2)) {
    if (!line.startsWith('|')) break;
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
    const at = /^`([^`]+)`$/.exec(cells[0] ?? '')?.[1];
    if (!at) throw new Error(`cannot read the folder of this row: ${line}`);
    if (!at.startsWith('src/') && at !== 'bench/') continue; // native/: C, not imports
    const cell = cells[cells.length - 1]!;
    const allows: Allowed[] = [];
    for (const item of splitOutsideParens(cell)) {
      const typeOnly = /\(.*\btypes? only\b.*\)/.test(item);
      const name = item.replace(/\([^)]*\)/g, '').trim();
      if (name === 'nothing' || name === 'nothing of Roset') continue;
      if (name === 'everything above') {
        allows.push(...rows.map((r) => ({ name: r.name, typeOnly: false })));
        continue;
      }
      if (!/^[a-z-]+(\/[a-z-]+)?$/.test(name)) throw new Error(`cannot read "${item}" in the may-import cell of ${at}`);
      locate(name);
      allows.push({ name, typeOnly });
    }
    rows.push({ at, name: moduleName(at), allows });
  }
  return rows;
}

interface Import {
  spec: string;
  typeOnly: boolean;
}

/** Relative imports and re-exports of a TypeScript file, static and dynamic. */
function importsOf(source: string): Import[] {
  const out: Import[] = [];
  for (const m of source.matchAll(/^[ \t]*(import|export)\s+(type\s+)?([^;'"]*?)\s*from\s*['"](\.[^'"]+)['"]/gm)) {
    const names = /^\{([\s\S]*)\}$/.exec(m[3]!.trim())?.[1]?.split(',').map((s) => s.trim()).filter(Boolean);
    const allTypes = names !== undefined && names.length > 0 && names.every((n) => n.startsWith('type '));
    out.push({ spec: m[4]!, typeOnly: m[2] !== undefined || allTypes });
  }
  for (const m of source.matchAll(/^[ \t]*import\s*['"](\.[^'"]+)['"]/gm)) out.push({ spec: m[1]!, typeOnly: false });
  for (const m of source.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g)) out.push({ spec: m[1]!, typeOnly: false });
  return out;
}

function tsFiles(dir: string): string[] {
  return readdirSync(path.join(REPO, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.relative(REPO, path.join(e.parentPath, e.name)))
    .filter((f) => !f.startsWith('bench/dist/'));
}

const within = (file: string, at: string): boolean => (at.endsWith('/') ? file.startsWith(at) : file === at);

describe('layering', () => {
  it('has a row in docs/ARCHITECTURE.md for every folder of src/', () => {
    const rows = readTable();
    const folders = readdirSync(path.join(REPO, 'src'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => `src/${e.name}/`);
    expect(folders.filter((f) => !rows.some((r) => r.at === f))).toEqual([]);
    expect(rows.map((r) => r.at)).toContain('bench/');
  });

  it('imports only what the table allows', () => {
    const rows = readTable();
    const rowOf = (file: string): Row | undefined => rows.find((r) => r.at === file) ?? rows.find((r) => within(file, r.at));
    const bad: string[] = [];
    for (const file of [...tsFiles('src'), ...tsFiles('bench')]) {
      const from = rowOf(file);
      if (!from) {
        bad.push(`${file}: no row in docs/ARCHITECTURE.md`);
        continue;
      }
      for (const imp of importsOf(readFileSync(path.join(REPO, file), 'utf8'))) {
        const target = path.relative(REPO, path.resolve(REPO, path.dirname(file), imp.spec)).replace(/\.js$/, '.ts');
        if (within(target, from.at)) continue;
        const ok = from.allows.some((a) => within(target, locate(a.name)) && (imp.typeOnly || !a.typeOnly));
        if (!ok) bad.push(`${file} → ${target}${imp.typeOnly ? ' (types)' : ''}: ${from.at} may import ${from.allows.map((a) => a.name + (a.typeOnly ? ' (types)' : '')).join(', ') || 'nothing'}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
