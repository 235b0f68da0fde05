/**
 * docs/SEMANTICS.md stays true to the error-code table in src/errors/codes.ts.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../src/errors/codes.js';
import { REPO } from './support/daemon.js';

describe('docs', () => {
  it('SEMANTICS.md lists every error code with its HTTP status and errno', () => {
    const doc = readFileSync(path.join(REPO, 'docs', 'SEMANTICS.md'), 'utf8');
    const rows = new Map([...doc.matchAll(/^\| `([A-Z_]+)` \| (\d+) \| ([A-Z]+) \|/gm)].map((m) => [m[1]!, [Number(m[2]), m[3]]]));
    for (const [code, info] of Object.entries(ERROR_CODES)) expect(rows.get(code), code).toEqual([info.status, info.errno]);
    expect([...rows.keys()].sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });
});

describe('README Python snippets', () => {
  it('are the same text as python/README.md, where python/tests/test_readme.py runs each one', () => {
    const blocks = (file: string): Map<string, string> => new Map(
      [...readFileSync(path.join(REPO, file), 'utf8').matchAll(/<!-- snippet: (\w+) -->\s*```python\n([\s\S]*?)```/g)].map((m) => [m[1]!, m[2]!]),
    );
    const root = blocks('README.md');
    const py = blocks('python/README.md');
    expect([...root.keys()].sort()).toEqual(['huggingface', 'lightning', 'quickstart', 'ray']);
    for (const [name, code] of root) expect(code, name).toBe(py.get(name));
  });
});
