/**
 * The systemd unit, checked offline (no systemd is started): `systemd-analyze verify`
 * accepts it with the checkout standing in for /opt/roset (it checks the syntax, that
 * every key is known, and that the ExecStart/ExecStartPre executables exist; a unit
 * with an unknown key or a missing executable is shown to fail it), the script
 * ExecStart runs exists, every ROSET_* variable of the EnvironmentFile is one
 * roset-mount reads or the unit expands, and the unit restarts on failure and stops
 * with SIGTERM and more time than the drain timeout.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../support/daemon.js';

const UNIT = path.join(REPO, 'systemd', 'roset-mount.service');
const ENV = path.join(REPO, 'systemd', 'roset-mount.env');
/** Where the unit's install comment puts the checkout. */
const INSTALL_DIR = '/opt/roset';

/** The unit as installed with the checkout at INSTALL_DIR. */
const installed = (): string => readFileSync(UNIT, 'utf8').replaceAll(INSTALL_DIR, REPO);

/** Runs `systemd-analyze verify` on `text` as roset-mount.service; returns its complaints. */
function verify(text: string): { status: number | null; complaints: string[] } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-unit-'));
  try {
    const file = path.join(dir, 'roset-mount.service');
    writeFileSync(file, text);
    const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    expect(r.error, 'systemd-analyze must be installed (Debian package systemd; scripts/setup installs it)').toBeUndefined();
    const complaints = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('roset-mount.service'));
    return { status: r.status, complaints };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('systemd/roset-mount.service', () => {
  it('passes systemd-analyze verify, which fails a unit with an unknown key or a missing executable', () => {
    expect(verify(installed())).toEqual({ status: 0, complaints: [] });
    const broken = installed().replace(/^Restart=/m, 'Restartt=').replace(/^ExecStartPre=\/bin\/mkdir /m, 'ExecStartPre=/bin/no-such-mkdir ');
    const r = verify(broken);
    expect(r.status).not.toBe(0);
    expect(r.complaints.join('\n')).toMatch(/Unknown key 'Restartt'/);
    expect(r.complaints.join('\n')).toMatch(/\/bin\/no-such-mkdir is not executable/);
  });

  it('runs a script that exists in the checkout (verify checks only the executable)', () => {
    const exec = /^ExecStart=(\S+) (\S+)/m.exec(installed());
    expect(existsSync(exec![2]!), exec![2]).toBe(true);
    expect(path.relative(REPO, exec![2]!)).toBe(path.join('bin', 'roset-mount.js'));
  });

  it('sets only variables that roset-mount reads or the unit expands', () => {
    const help = spawnSync(process.execPath, [path.join(REPO, 'bin', 'roset-mount.js'), '--help'], { encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
    const read = new Set(help.stdout.replace(/\s+/g, ' ').match(/ROSET_[A-Z0-9_]+/g));
    const unit = readFileSync(UNIT, 'utf8');
    const set = [...readFileSync(ENV, 'utf8').matchAll(/^#?(ROSET_[A-Z0-9_]+)=/gm)].map((m) => m[1]!);
    expect(set.length).toBeGreaterThan(0);
    expect(set.filter((v) => !read.has(v) && !unit.includes(`\${${v}}`))).toEqual([]);
  });

  it('reads an EnvironmentFile, restarts on failure and lets uploads drain on stop', () => {
    const unit = readFileSync(UNIT, 'utf8');
    expect(unit).toMatch(/^EnvironmentFile=\/etc\/roset\/roset-mount\.env$/m);
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
    const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1]);
    const drain = Number(/^ROSET_DRAIN_TIMEOUT=(\d+)$/m.exec(readFileSync(ENV, 'utf8'))?.[1]);
    expect(stop).toBeGreaterThan(drain);
  });
});
