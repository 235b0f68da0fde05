/**
 * The systemd units, checked offline (no systemd is started): `roset-mount.service`
 * (a GPU node) and `roset-serve.service` (the control plane of many nodes). For each,
 * `systemd-analyze verify` accepts it with the checkout standing in for /opt/roset (it
 * checks the syntax, that every key is known, and that the ExecStart/ExecStartPre
 * executables exist; a unit with an unknown key or a missing executable is shown to
 * fail it), the script ExecStart runs exists, every ROSET_* variable of its
 * EnvironmentFile is one the program reads (as its `--help` says) or the unit expands,
 * and the unit restarts on failure and stops with SIGTERM and more time than the drain
 * timeout, and is Type=notify (the program itself sends READY=1: NotifyAccess=main; see
 * sd-notify.test.ts for the protocol). roset-serve.service also runs unprivileged in the state directory its
 * environment file names, and only wants (never requires) a local PostgreSQL.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../support/daemon.js';

/** Where the units' install comments put the checkout. */
const INSTALL_DIR = '/opt/roset';

interface UnitCase {
  name: 'roset-mount' | 'roset-serve';
  /** The script ExecStart runs, relative to the checkout, and its arguments up to the first variable. */
  exec: string[];
  /** The `--help` outputs whose `[env VAR]` and `$VAR` list what the program reads. */
  help: string[][];
  /** How to break an executable line, and the path systemd-analyze must then name. */
  breakExec: { from: RegExp; to: string; missing: string };
}

const UNITS: UnitCase[] = [
  {
    name: 'roset-mount',
    exec: ['bin/roset-mount.js'],
    help: [['bin/roset-mount.js', '--help']],
    breakExec: { from: /^ExecStartPre=\/bin\/mkdir /m, to: 'ExecStartPre=/bin/no-such-mkdir ', missing: '/bin/no-such-mkdir' },
  },
  {
    name: 'roset-serve',
    exec: ['bin/roset.js', 'serve'],
    // ROSET_STATE_DIR and the client variables are `roset`'s global options.
    help: [['bin/roset.js', '--help'], ['bin/roset.js', 'serve', '--help']],
    breakExec: { from: /^ExecStart=\/usr\/bin\/node /m, to: 'ExecStart=/usr/bin/no-such-node ', missing: '/usr/bin/no-such-node' },
  },
];

const unitFile = (u: UnitCase): string => path.join(REPO, 'systemd', `${u.name}.service`);
const envFile = (u: UnitCase): string => path.join(REPO, 'systemd', `${u.name}.env`);

/** The unit as installed with the checkout at INSTALL_DIR. */
const installed = (u: UnitCase): string => readFileSync(unitFile(u), 'utf8').replaceAll(INSTALL_DIR, REPO);

/** Runs `systemd-analyze verify` on `text` as `<name>.service`; returns its complaints. */
function verify(u: UnitCase, text: string): { status: number | null; complaints: string[] } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'roset-unit-'));
  try {
    const file = path.join(dir, `${u.name}.service`);
    writeFileSync(file, text);
    const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    expect(r.error, 'systemd-analyze must be installed (Debian package systemd; scripts/setup installs it)').toBeUndefined();
    const complaints = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes(`${u.name}.service`));
    return { status: r.status, complaints };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `NAME=value` lines of an environment file, commented-out examples included. */
function envVars(u: UnitCase): Map<string, string> {
  return new Map([...readFileSync(envFile(u), 'utf8').matchAll(/^#?(ROSET_[A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
}

describe.each(UNITS)('systemd/$name.service', (u) => {
  it('passes systemd-analyze verify, which fails a unit with an unknown key or a missing executable', () => {
    expect(verify(u, installed(u))).toEqual({ status: 0, complaints: [] });
    const broken = installed(u).replace(/^Restart=/m, 'Restartt=').replace(u.breakExec.from, u.breakExec.to);
    const r = verify(u, broken);
    expect(r.status).not.toBe(0);
    expect(r.complaints.join('\n')).toMatch(/Unknown key 'Restartt'/);
    expect(r.complaints.join('\n')).toContain(`${u.breakExec.missing} is not executable`);
  });

  it('runs a script that exists in the checkout (verify checks only the executable)', () => {
    const exec = /^ExecStart=(\S+) (.*)$/m.exec(installed(u));
    const args = exec![2]!.split(/\s+/);
    expect(existsSync(args[0]!), args[0]).toBe(true);
    expect([path.relative(REPO, args[0]!), ...args.slice(1, u.exec.length)]).toEqual(u.exec);
  });

  it('sets only variables that the program reads or the unit expands', () => {
    const read = new Set<string>();
    for (const args of u.help) {
      const help = spawnSync(process.execPath, [path.join(REPO, args[0]!), ...args.slice(1)], { encoding: 'utf8' });
      expect(help.status, help.stderr).toBe(0);
      for (const v of help.stdout.replace(/\s+/g, ' ').match(/ROSET_[A-Z0-9_]+/g) ?? []) read.add(v);
    }
    const unit = readFileSync(unitFile(u), 'utf8');
    const set = [...envVars(u).keys()];
    expect(set.length).toBeGreaterThan(0);
    expect(set.filter((v) => !read.has(v) && !unit.includes(`\${${v}}`))).toEqual([]);
  });

  it('reads an EnvironmentFile, restarts on failure and lets commits drain on stop', () => {
    const unit = readFileSync(unitFile(u), 'utf8');
    expect(unit).toMatch(new RegExp(`^EnvironmentFile=/etc/roset/${u.name}\\.env$`, 'm'));
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
    const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1]);
    const drain = Number(envVars(u).get('ROSET_DRAIN_TIMEOUT'));
    expect(stop).toBeGreaterThan(drain);
  });

  it('is Type=notify, ready when the program itself says so (NotifyAccess=main, not all)', () => {
    const unit = readFileSync(unitFile(u), 'utf8');
    expect(unit).toMatch(/^Type=notify$/m);
    expect(unit).toMatch(/^NotifyAccess=main$/m);
    expect(Number(/^TimeoutStartSec=(\d+)$/m.exec(unit)?.[1])).toBeGreaterThanOrEqual(90);
    // ExecStart runs node itself (no shell in between): its pid is the main pid that notifies.
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/node /m);
  });
});

describe('systemd/roset-serve.service', () => {
  const u = UNITS.find((x) => x.name === 'roset-serve')!;

  it('runs unprivileged, writing only the state directory its environment file names', () => {
    const unit = readFileSync(unitFile(u), 'utf8');
    expect(unit).toMatch(/^User=(?!root$)\S+$/m);
    expect(unit).toMatch(/^NoNewPrivileges=yes$/m);
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
    const stateDir = /^StateDirectory=(\S+)$/m.exec(unit)?.[1];
    expect(envVars(u).get('ROSET_STATE_DIR')).toBe(`/var/lib/${stateDir}`);
  });

  it('comes up after the network and a local PostgreSQL, which it wants but does not require (the database may be remote)', () => {
    const unit = readFileSync(unitFile(u), 'utf8');
    expect(unit).toMatch(/^After=.*\bnetwork-online\.target\b.*$/m);
    expect(unit).toMatch(/^After=.*\bpostgresql\.service\b.*$/m);
    expect(unit).toMatch(/^Wants=.*\bpostgresql\.service\b.*$/m);
    expect(unit).not.toMatch(/^(Requires|BindsTo|Requisite)=.*postgresql/m);
  });
});
