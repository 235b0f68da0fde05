/**
 * The SQLite driver, chosen by the Node.js major that runs Roset. Both the metadata
 * store (src/meta/sqlite.ts) and the staging index (src/core/staging-index.ts) open
 * their databases through `Database` from here, never from `better-sqlite3` directly, and
 * prepare their statements through `statementCache`.
 *
 * Why two majors of one library: no single major of better-sqlite3 runs on every
 * Node.js we support (README, "Supported Node.js").
 * - 12 derives its `Statement` from `node::ObjectWrap`. From Node 24.19 on, a
 *   collected ObjectWrap removes an environment cleanup hook, which asserts that a
 *   context is entered; a statement collected by an idle GC, or at exit, aborts the
 *   process (SIGABRT in `Statement::~Statement`). Seen in our suite on Node 24.21.
 * - 13 is built on N-API and ships prebuilt binaries; it supports Node 22 and later
 *   only, and segfaults on Node 20.
 * So Node 22+ loads 13 (the `better-sqlite3` dependency) and Node 20, past its end of
 * life but still the runtime of many machines, loads 12 (the optional
 * `better-sqlite3-node20` alias, compiled from source at install). Their JavaScript
 * API is the same for everything Roset uses, and the type is 12's and 13's common one.
 */
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';

const require = createRequire(import.meta.url);

export type Database = BetterSqlite3.Database;
export type Statement = BetterSqlite3.Statement;

export const NODE_MAJOR = Number(process.versions.node.split('.')[0]);

/** The package this Node.js loads. */
export const SQLITE_DRIVER = NODE_MAJOR >= 22 ? 'better-sqlite3' : 'better-sqlite3-node20';

function load(): typeof BetterSqlite3 {
  try {
    return require(SQLITE_DRIVER) as typeof BetterSqlite3;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`the SQLite driver ${SQLITE_DRIVER} does not load on Node.js ${process.version}: ${why}. ` +
      (NODE_MAJOR >= 22 ? 'Run `npm ci` again.' : 'It is compiled at install: run `npm ci` with a C++ toolchain and python3 (scripts/setup installs them), or use Node.js 22 or 24.'));
  }
}

/** better-sqlite3's `Database` constructor for this Node.js. */
export const Database: typeof BetterSqlite3 = load();

/**
 * `db.prepare`, once per SQL text: preparing a statement costs more than running it,
 * and the same few run for every file a checkpoint writes.
 */
export function statementCache(db: Database): (sql: string) => Statement {
  const prepared = new Map<string, Statement>();
  return (sql) => {
    let st = prepared.get(sql);
    if (!st) {
      st = db.prepare(sql);
      prepared.set(sql, st);
    }
    return st;
  };
}
