/**
 * The randomized kill soak, as CI runs it: 25 write-commit-ref cycles, each with a
 * real SIGKILL of the daemon or the writer at a random moment; none may leave a corrupt
 * resume or lose a commit that was reported completed.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, requireFuse } from '../support/daemon.js';

describe('crash soak', () => {
  it('survives 25 random kills with 0 corrupt resumes and 0 lost commits', () => {
    requireFuse();
    const r = spawnSync(path.join(REPO, 'scripts', 'crash-soak'), ['--runs', '25'], { encoding: 'utf8', timeout: 600_000 });
    expect(r.error, 'scripts/crash-soak could not run').toBeUndefined();
    expect(r.signal, r.stderr).toBeNull();
    expect(r.stdout.trim(), r.stderr).toBe('25 runs, 0 corrupt resumes, 0 lost commits');
    expect(r.status).toBe(0);
  }, 700_000);
});
