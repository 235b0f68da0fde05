/**
 * Opening the control-plane metadata store named by a database URL.
 *
 * Owns: which backend a URL selects.
 * - `postgres://...` or `postgresql://...`: PostgreSQL (`postgres.ts`), shared by every
 *   process given the same URL.
 * - `sqlite:` (the default): `<stateDir>/metadata.db`; `sqlite:/abs/path`: that file
 *   (`sqlite.ts`).
 * Anything else is refused with a message that names the accepted forms and shows the
 * URL without its password.
 */
import * as path from 'node:path';
import type { Logger } from 'pino';
import { redactDatabaseUrl } from './database-url.js';
import { PostgresMetadataStore } from './postgres.js';
import { SqliteMetadataStore } from './sqlite.js';
import type { MetadataStore } from './types.js';

export { redactDatabaseUrl } from './database-url.js';

/** The default `database`: SQLite in the state directory. */
export const DEFAULT_DATABASE = 'sqlite:';

export interface OpenMetadataOptions {
  log?: Logger;
}

export type DatabaseTarget = { kind: 'postgres'; url: string } | { kind: 'sqlite'; file: string };

/** What `database` names; throws on anything else (the message never holds a password). */
export function parseDatabase(database: string, stateDir: string): DatabaseTarget {
  if (/^postgres(ql)?:\/\//i.test(database)) return { kind: 'postgres', url: database };
  if (/^sqlite:/i.test(database)) {
    const rest = database.slice('sqlite:'.length);
    if (rest === '') return { kind: 'sqlite', file: path.join(stateDir, 'metadata.db') };
    if (path.isAbsolute(rest)) return { kind: 'sqlite', file: path.resolve(rest) };
    throw new Error(`The SQLite database path must be absolute: ${redactDatabaseUrl(database)} (use sqlite:/absolute/path, or sqlite: for <stateDir>/metadata.db)`);
  }
  throw new Error(`Unsupported metadata database ${JSON.stringify(redactDatabaseUrl(database))}: use postgres://user@host:port/database (or postgresql://), `
    + 'sqlite: for <stateDir>/metadata.db, or sqlite:/absolute/path');
}

/** Opens (and migrates) the metadata store that `database` names. */
export async function openMetadata(database: string, stateDir: string, opts: OpenMetadataOptions = {}): Promise<MetadataStore> {
  const target = parseDatabase(database, stateDir);
  if (target.kind === 'postgres') return PostgresMetadataStore.open(target.url, { log: opts.log });
  return new SqliteMetadataStore(target.file);
}
