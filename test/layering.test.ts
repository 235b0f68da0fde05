/**
 * Imports point one way only (docs/ARCHITECTURE.md): a module may import from its own
 * folder or from a lower layer, never from a higher one.
 */
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './support/daemon.js';

const LAYERS: Record<string, number> = {
  'errors': 0, 'util': 0, 'types': 0, 'api/types.ts': 0,
  'store': 1, 'sdk': 1,
  'meta': 2,
  'commit': 3,
  'control': 4,
  'core': 5,
  'fuse': 6, 'api': 6,
  'daemon': 7,
  'cli': 8, 'bench': 8,
};

function layerOf(rel: string): [string, number] {
  if (rel in LAYERS) return [rel, LAYERS[rel]!];
  const folder = rel.split('/')[0]!;
  if (!(folder in LAYERS)) throw new Error(`src/${folder} has no layer: add it to test/layering.test.ts and docs/ARCHITECTURE.md`);
  return [folder, LAYERS[folder]!];
}

describe('layering', () => {
  it('has no import from a higher layer', () => {
    const src = path.join(REPO, 'src');
    const bad: string[] = [];
    for (const e of readdirSync(src, { recursive: true, withFileTypes: true })) {
      if (!e.isFile() || !e.name.endsWith('.ts')) continue;
      const file = path.join(e.parentPath, e.name);
      const rel = path.relative(src, file);
      const [from, lf] = layerOf(rel);
      for (const m of readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
        const target = path.relative(src, path.resolve(path.dirname(file), m[1]!)).replace(/\.js$/, '.ts');
        const [to, lt] = layerOf(target);
        if (to !== from && lt >= lf) bad.push(`${rel} → ${target}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
