/**
 * `roset recover`: rebuild lost metadata (mounts, commits, refs, groups) from the bucket
 * alone, into a state directory's SQLite file (the embedded default) or into the
 * database of `roset serve` (`--database postgres://...`). Takes the same store flags
 * as `roset-mount`.
 *
 * Invariant: it writes only into metadata that holds no mount yet (a new SQLite file,
 * or a PostgreSQL database with no mount) and with no daemon running on the state
 * directory, so it can never overwrite live history.
 */
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Command } from 'commander';
import { recoverFromBucket } from '../../commit/recover.js';
import { openMetadata, parseDatabase, redactDatabaseUrl } from '../../meta/index.js';
import { openStore } from '../../store/index.js';
import { defaultStateDir, STATE_FILES } from '../../util/state-dir.js';
import { action, globalsOf, printJson, println, UsageError } from '../context.js';
import { ProgressLine } from '../format.js';
import { addStoreOptions, storeConfig } from '../store-options.js';

interface RecoverOptions {
  mountName: string;
  database?: string;
  json?: boolean;
  [k: string]: unknown;
}

export function registerRecover(program: Command): void {
  addStoreOptions(program
    .command('recover')
    .description('Rebuild the metadata of a lost state directory from the bucket alone'))
    .option('--mount-name <name>', 'name of the recovered mount (roset-mount looks it up by name)', 'default')
    .option('--database <url>', 'recover into this metadata database: sqlite:PATH, or postgres://USER:PASS@HOST:PORT/DB for roset serve [env ROSET_DATABASE] (default: sqlite: in the state directory)')
    .option('--json', 'print the recovery report as JSON')
    .action(action(async (opts: RecoverOptions, cmd: Command) => {
      const stateDir = path.resolve(globalsOf(cmd).stateDir ?? defaultStateDir());
      const database = opts.database ?? process.env.ROSET_DATABASE ?? 'sqlite:';
      const target = parseDatabase(database, stateDir);
      if (existsSync(path.join(stateDir, STATE_FILES.daemon))) {
        throw new UsageError(`a roset-mount is using ${stateDir} (daemon.json exists): stop it first`);
      }
      if (target.kind === 'sqlite' && existsSync(target.file)) throw new UsageError(`${target.file} already exists: recover into a new or emptied state directory`);
      const { store: url, storeOptions } = storeConfig(opts, process.env, stateDir);
      await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
      const store = await openStore(url, storeOptions);
      const meta = await openMetadata(database, stateDir);
      if (target.kind === 'postgres' && (await meta.listMounts()).length > 0) {
        await meta.close();
        await store.close();
        throw new UsageError(`${redactDatabaseUrl(database)} already holds metadata: recover into an empty database`);
      }
      const progress = new ProgressLine();
      let ok = false;
      try {
        const report = await recoverFromBucket(store, meta, {
          mountName: opts.mountName,
          onProgress: (done, total) => progress.draw(`recovering commits: ${done}/${total}`),
        });
        progress.clear();
        ok = true;
        if (opts.json) {
          printJson({ stateDir, database: redactDatabaseUrl(database), store: store.description, ...report });
          return;
        }
        println(`recovered ${report.commits} commits (${report.files} files), ${report.groups} groups, ${report.refs.length} refs into ${target.kind === 'sqlite' ? stateDir : redactDatabaseUrl(database)}`);
        for (const r of report.refs) println(`  ref ${r.name} -> ${r.commitId}`);
        for (const s of report.skipped) println(`  skipped ${s.key}: ${s.reason}`);
      } finally {
        progress.clear();
        // Closed on every path: an open PostgreSQL pool would keep the command from exiting.
        await meta.close();
        await store.close();
        // Leave no half-built SQLite file behind: a second attempt starts clean. (A
        // PostgreSQL database is left for the operator to drop: it is not ours to delete.)
        if (!ok && target.kind === 'sqlite') for (const f of [target.file, `${target.file}-wal`, `${target.file}-shm`]) await fs.rm(f, { force: true });
      }
    }));
}
