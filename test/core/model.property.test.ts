/**
 * Model-based property test of the filesystem core: random sequences of namespace,
 * handle, commit and store-failure commands run against a plain reference model
 * (test/support/fs-model.ts) and against RosetFilesystem with its control plane and a
 * local store, in process (no FUSE). Every answer is compared (value or errno), then
 * the final tree (names, types, modes, sizes, bytes, states), and every completed
 * commit's manifest must hold exactly its folder's subtree.
 *
 * Commits run in the background; the runner (test/support/model-run.ts) asks which
 * ended around each command and accepts an answer when some order of the events
 * explains it. `race` starts a commit and a path operation inside the folder without
 * awaiting either (the operation first or second, after 0-40 microtasks or 0-3 turns of
 * the event loop): the operation must either succeed and be in the commit, or fail with
 * EROFS, and the commit must then complete.
 *
 * Names favour case variants (`run1`/`RUN1`), shared prefixes, `%` and `_`, composed and
 * decomposed `é`, `ß`, and astral characters (`😀`, `𝔸`).
 *
 * Settings: ROSET_MODEL_RUNS (sequences, default 200), ROSET_MODEL_SEED and
 * ROSET_MODEL_PATH (replay a failure: the report prints both), ROSET_MODEL_EXCLUDE
 * (command kinds to leave out, comma-separated, e.g. `race,storeDown`),
 * ROSET_MODEL_SEAL_MS (the seal timeout, default 300 ms), ROSET_MODEL_LENGTH (commands
 * per sequence at most, default 60).
 *
 * Semantics the docs do not state, as the model decides them (marked DECISION in
 * fs-model.ts):
 * - When a call fails for several reasons, any of their errnos is right (POSIX: "the
 *   order of detection is undefined"), e.g. EEXIST or EROFS for mkdir of an existing
 *   name inside a sealing folder, ENOENT or EROFS for unlink of a missing one.
 * - A path through a file: ENOTDIR (the kernel answers before asking the file system);
 *   the core alone may answer ENOENT (or EINVAL for a rename).
 * - rename(p, p): 0 (the kernel's same-inode rule); the core alone may answer EINVAL.
 * - unlink(2) of a folder: EISDIR (Linux).
 * - close(2) always succeeds, also for a written file unlinked while open.
 * - A folder shows without write bits while its own state is SEALING or COMMITTED.
 * - Folder mtimes are only compared when set by utimens with no entry changed since;
 *   file mtimes only when set by utimens with no write or truncate since.
 * - A handle of a file unlinked while open for writing may or may not hold up a seal
 *   of the folder it was in (by path, as the code does, or not, as by ancestry).
 * - ftruncate through a handle opened for writing before the seal is allowed while
 *   sealing, like a write (the docs' table names ftruncate "by path").
 * - A failed commit's STORAGE_ERROR is allowed when the store failed at any time while
 *   the commit was in flight; OPEN_HANDLES when a writer under the folder was still
 *   open once the seal timeout had passed.
 */
import { describeCoreModel } from '../support/model-core.js';

describeCoreModel({ testFile: 'test/core/model.property.test.ts', defaultRuns: 200 });
