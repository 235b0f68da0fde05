/**
 * `roset recover`: rebuild a lost state directory's metadata (mounts, commits, refs,
 * groups) from the bucket alone. Takes the same store flags as `roset-mount`.
 *
 * Invariant: it writes only into a state directory without metadata and with no
 * daemon running on it, so it can never overwrite live history.
 */
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Command } from 'commander';
import { recoverFromBucket } from '../../commit/recover.js';
import { SqliteMetadataStore } from '../../meta/sqlite.js';
import { openStore } from '../../store/index.js';
import { defaultStateDir, STATE_FILES } from '../../util/state-dir.js';
import { action, globalsOf, printJson, println, UsageError } from '../context.js';
import { ProgressLine } from '../format.js';
import { addStoreOptions, storeConfig } from '../store-options.js';

interface RecoverOptions {
  mountName: string;
  json?: boolean;
  [k: string]: unknown;
}

export function registerRecover(program: Command): void {
  addStoreOptions(program
    .command('recover')
    .description('Rebuild the metadata of a lost state directory from the bucket alone'))
    .option('--mount-name <name>', 'name of the recovered mount (roset-mount looks it up by name)', 'default')
    .option('--json', 'print the recovery report as JSON')
    .action(action(async (opts: RecoverOptions, cmd: Command) => {
      const stateDir = path.resolve(globalsOf(cmd).stateDir ?? defaultStateDir());
      const dbFile = path.join(stateDir, STATE_FILES.metadata);
      if (existsSync(path.join(stateDir, STATE_FILES.daemon))) {
        throw new UsageError(`a roset-mount is using ${stateDir} (daemon.json exists): stop it first`);
      }
      if (existsSync(dbFile)) throw new UsageError(`${dbFile} already exists: recover into a new or emptied state directory`);
      const { store: url, storeOptions } = storeConfig(opts, process.env, stateDir);
      await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
      const store = await openStore(url, storeOptions);
      const meta = new SqliteMetadataStore(dbFile);
      const progress = new ProgressLine();
      try {
        const report = await recoverFromBucket(store, meta, {
          mountName: opts.mountName,
          onProgress: (done, total) => progress.draw(`recovering commits: ${done}/${total}`),
        });
        progress.clear();
        if (opts.json) {
          printJson({ stateDir, store: store.description, ...report });
          return;
        }
        println(`recovered ${report.commits} commits (${report.files} files), ${report.groups} groups, ${report.refs.length} refs into ${stateDir}`);
        for (const r of report.refs) println(`  ref ${r.name} -> ${r.commitId}`);
        for (const s of report.skipped) println(`  skipped ${s.key}: ${s.reason}`);
      } catch (err) {
        progress.clear();
        // Leave no half-built metadata behind: a second attempt starts clean.
        await meta.close();
        for (const f of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`]) await fs.rm(f, { force: true });
        throw err;
      } finally {
        await store.close();
      }
      await meta.close();
    }));
}
