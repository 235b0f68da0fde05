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
