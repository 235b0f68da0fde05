/**
 * The systemd unit passes `systemd-analyze verify`, takes its settings from an
 * EnvironmentFile, restarts on failure, and stops with SIGTERM and room to drain.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../support/daemon.js';

const UNIT = path.join(REPO, 'systemd', 'roset-mount.service');

describe('systemd/roset-mount.service', () => {
  it('passes systemd-analyze verify', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-unit-'));
    copyFileSync(UNIT, path.join(dir, 'roset-mount.service'));
    const r = spawnSync('systemd-analyze', ['verify', path.join(dir, 'roset-mount.service')], { encoding: 'utf8' });
    expect(r.error, 'systemd-analyze must be installed (Debian package systemd)').toBeUndefined();
    const complaints = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('roset-mount.service'));
    expect(complaints).toEqual([]);
    expect(r.status).toBe(0);
  });

  it('reads an EnvironmentFile, restarts on failure and lets uploads drain on stop', () => {
    const unit = readFileSync(UNIT, 'utf8');
    expect(unit).toMatch(/^EnvironmentFile=\/etc\/roset\/roset-mount\.env$/m);
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
    const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1]);
    const env = readFileSync(path.join(REPO, 'systemd', 'roset-mount.env'), 'utf8');
    const drain = Number(/^ROSET_DRAIN_TIMEOUT=(\d+)$/m.exec(env)?.[1]);
    expect(stop).toBeGreaterThan(drain);
  });
});
