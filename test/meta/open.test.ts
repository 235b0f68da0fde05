/**
 * Which metadata store a database URL opens, and that no message or log line built
 * from a URL shows its password.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openMetadata, parseDatabase, redactDatabaseUrl } from '../../src/meta/index.js';
import { SqliteMetadataStore } from '../../src/meta/sqlite.js';

describe('openMetadata', () => {
  const dirs: string[] = [];
  const tmp = () => { const d = mkdtempSync(path.join(os.tmpdir(), 'roset-open-')); dirs.push(d); return d; };
  afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

  it('opens SQLite in the state directory for sqlite:, and at the path for sqlite:/abs/path', async () => {
    const state = tmp();
    const a = await openMetadata('sqlite:', state);
    expect(a).toBeInstanceOf(SqliteMetadataStore);
    await a.close();
    expect(existsSync(path.join(state, 'metadata.db'))).toBe(true);
    const file = path.join(tmp(), 'elsewhere.db');
    const b = await openMetadata(`sqlite:${file}`, state);
    await b.close();
    expect(existsSync(file)).toBe(true);
  });

  it('selects PostgreSQL for postgres:// and postgresql:// URLs', () => {
    expect(parseDatabase('postgres://u@h:5432/db', '/s')).toEqual({ kind: 'postgres', url: 'postgres://u@h:5432/db' });
    expect(parseDatabase('postgresql://u@h/db', '/s')).toEqual({ kind: 'postgres', url: 'postgresql://u@h/db' });
  });

  it('refuses anything else with the accepted forms, never showing a password', () => {
    for (const bad of ['mysql://roset:hunter2@db/roset', 'roset:hunter2@db/roset', 'sqlite:relative/hunter2.db', 'host=db password=hunter2', '']) {
      let message = '';
      try { parseDatabase(bad, '/s'); } catch (err) { message = (err as Error).message; }
      expect(message, bad).toMatch(/sqlite:/);
      if (bad.includes('hunter2') && !bad.startsWith('sqlite:')) expect(message, bad).not.toContain('hunter2');
    }
  });
});

describe('redactDatabaseUrl', () => {
  it('hides the password wherever the URL carries it, and keeps the rest', () => {
    expect(redactDatabaseUrl('postgres://roset:s3cr%40t@db.internal:5432/roset?sslmode=require')).toBe('postgres://roset:***@db.internal:5432/roset?sslmode=require');
    expect(redactDatabaseUrl('postgres://roset@db/roset?password=s3cret&sslpassword=k3y')).toBe('postgres://roset@db/roset?password=***&sslpassword=***');
    expect(redactDatabaseUrl('postgres://roset@db/roset')).toBe('postgres://roset@db/roset');
    expect(redactDatabaseUrl('not a url roset:s3cret@db')).not.toContain('s3cret');
    expect(redactDatabaseUrl('host=db password=s3cret')).toBe('host=db password=***');
  });
});
