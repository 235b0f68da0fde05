/**
 * Under a real systemd: a unit ordered After= and Requires=roset-mount.service finds
 * the mount ready (mounted as fuse.roset and answering) at its start, and `systemctl
 * stop roset-mount` drains and unmounts it. systemd runs as PID 1 of a new PID, mount
 * and cgroup namespace (the machine's own boot is masked: no sysinit, tmpfiles, sysctl,
 * journald or network units), on the unit file shipped in systemd/ with the checkout in
 * place of /opt/roset.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { processAlive } from '../../src/util/mounts.js';
import { sleep } from '../../src/util/sleep.js';
import { REPO, removeRoot, requireFuse, tempRoot } from '../support/daemon.js';

const SYSTEMD = '/lib/systemd/systemd';

/** Where a cgroup2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host). */
function cgroup2Root(): string | null {
  const line = readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[2] === 'cgroup2');
  return line?.[1] ?? null;
}

/** Why systemd cannot be started here, or null. */
function missing(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  if (!existsSync(SYSTEMD)) return `${SYSTEMD} is missing (scripts/setup installs systemd)`;
  if (spawnSync('unshare', ['--version']).status !== 0) return 'unshare (util-linux) is missing';
  if (spawnSync('nsenter', ['--version']).status !== 0) return 'nsenter (util-linux) is missing';
  if (!cgroup2Root()) return 'no cgroup2 hierarchy is mounted';
  return null;
}


function removeEmptyCgroup(dir: string): void {
  for (const e of readdirSync(dir)) {
    const sub = path.join(dir, e);
    if (statSync(sub).isDirectory()) removeEmptyCgroup(sub);
  }
  rmdirSync(dir);
}

/** Kills whatever is left in a cgroup, waits until it is empty, and removes it and its children. */
async function removeCgroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  writeFileSync(path.join(dir, 'cgroup.kill'), '1');
  const end = Date.now() + 10_000;
  while (readFileSync(path.join(dir, 'cgroup.events'), 'utf8').includes('populated 1')) {
    if (Date.now() > end) throw new Error(`${dir} still has processes 10 s after cgroup.kill`);
    await sleep(20);
  }
  removeEmptyCgroup(dir);
}

/** The pid (in this namespace) of the first child of `pid`, i.e. systemd under unshare --fork. */
function childOf(pid: number): number | null {
  const file = `/proc/${pid}/task/${pid}/children`;
  if (!existsSync(file)) return null;
  const first = readFileSync(file, 'utf8').trim().split(' ')[0];
  return first ? Number(first) : null;
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once('exit', () => resolve()));
}

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('roset-mount.service under systemd', () => {
  it('starts a unit ordered after it with the mount ready, and stops it with an unmount', async () => {
    requireFuse();
    // Never skipped, in CI or not (as every FUSE test): a machine that cannot run it fails it.
    const why = missing();
    if (why) throw new Error(`systemd cannot be started here: ${why}`);
    const root = tempRoot('roset-test-systemd-');
    const mnt = path.join(root, 'mnt');
    const units = path.join(root, 'units');
    mkdirSync(units);
    const cgroup = path.join(cgroup2Root()!, path.basename(root));
    let boot: ChildProcess | undefined;
    const output: string[] = [];
    cleanups.push(async () => {
      if (boot) {
        // SIGKILL of PID 1 ends the namespace: every process in it and its mounts.
        const pid1 = childOf(boot.pid!);
        if (pid1 !== null && processAlive(pid1)) process.kill(pid1, 'SIGKILL');
        // unshare then reaps it and exits; killed itself, it would leave it unreaped.
        if (pid1 === null) boot.kill('SIGKILL');
        await exited(boot);
      }
      await removeCgroup(cgroup);
      removeRoot(root);
    });

    // The shipped unit, with the checkout for /opt/roset and this test's environment file.
    const shipped = readFileSync(path.join(REPO, 'systemd', 'roset-mount.service'), 'utf8');
    expect(shipped).toMatch(/^EnvironmentFile=\/etc\/roset\/roset-mount\.env$/m);
    writeFileSync(path.join(units, 'roset-mount.service'), shipped.replaceAll('/opt/roset', REPO).replace(/^EnvironmentFile=.*$/m, `EnvironmentFile=${root}/roset-mount.env`));
    writeFileSync(path.join(root, 'roset-mount.env'), [
      `ROSET_MOUNTPOINT=${mnt}`, `ROSET_STATE_DIR=${root}/state`, `ROSET_CACHE_DIR=${root}/cache`,
      'ROSET_LISTEN=127.0.0.1:0', 'ROSET_LOG_LEVEL=info', 'ROSET_DRAIN_TIMEOUT=30', '',
    ].join('\n'));
    // Only what this sandbox needs: no boot dependencies, no /var/lib/roset or
    // /var/cache/roset of the machine's, output to files rather than the (masked) journal.
    mkdirSync(path.join(units, 'roset-mount.service.d'));
    writeFileSync(path.join(units, 'roset-mount.service.d', 'sandbox.conf'),
      `[Unit]\nDefaultDependencies=no\n[Service]\nStateDirectory=\nCacheDirectory=\nStandardOutput=file:${root}/roset-mount.log\nStandardError=inherit\n`);
    // The dependent job: what it sees of the mount the moment it starts.
    const probe = [
      `if mountpoint -q ${mnt}; then echo mountpoint=yes; else echo mountpoint=no; fi`,
      `grep " ${mnt} " /proc/mounts | cut -d" " -f3 | sed "s/^/fstype=/"`,
      `if ls ${mnt} >/dev/null; then echo answers=yes; else echo answers=no; fi`,
    ].join('; ');
    writeFileSync(path.join(units, 'training-job.service'), [
      '[Unit]', 'DefaultDependencies=no', 'Requires=roset-mount.service', 'After=roset-mount.service',
      '[Service]', 'Type=oneshot', `StandardOutput=file:${root}/job.partial`, 'StandardError=inherit',
      `ExecStart=/bin/sh -c '${probe}'`, `ExecStartPost=/bin/mv ${root}/job.partial ${root}/job.out`, '',
    ].join('\n'));
    writeFileSync(path.join(units, 'roset-test.target'), '[Unit]\nDefaultDependencies=no\nWants=training-job.service\n');

    // PID 1 of the new namespaces: a private /run (systemd's runtime units, the masks)
    // and a cgroup2 of its own, then systemd with the test target as its default unit.
    const masked = ['sysinit.target', 'basic.target', 'network.target', 'network-online.target', 'systemd-journald.socket',
      'systemd-journald-dev-log.socket', 'systemd-journald.service', 'systemd-tmpfiles-setup.service', 'systemd-tmpfiles-clean.timer',
      'systemd-sysctl.service', 'systemd-udevd.service', 'systemd-udev-trigger.service'];
    writeFileSync(path.join(root, 'boot.sh'), [
      'set -eu',
      'mount -t cgroup2 none /sys/fs/cgroup',
      'mount -t tmpfs tmpfs /run',
      'mkdir -p /run/systemd/system',
      ...masked.map((u) => `ln -s /dev/null /run/systemd/system/${u}`),
      `cp -r ${units}/. /run/systemd/system/`,
      'export container=roset-test',
      `exec ${SYSTEMD} --system --unit=roset-test.target --log-target=console --log-level=notice`,
      '',
    ].join('\n'));
    mkdirSync(cgroup);
    const started = Date.now();
    boot = spawn('sh', ['-c', `echo $$ > ${cgroup}/cgroup.procs && exec unshare --kill-child --cgroup --mount --propagation private --pid --fork --mount-proc bash ${root}/boot.sh`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    boot.stdout!.on('data', (d: Buffer) => output.push(d.toString()));
    boot.stderr!.on('data', (d: Buffer) => output.push(d.toString()));

    const jobOut = path.join(root, 'job.out');
    while (!existsSync(jobOut)) {
      if (boot.exitCode !== null || boot.signalCode !== null) throw new Error(`systemd exited (${boot.exitCode ?? boot.signalCode}) before the job ran:\n${output.join('')}`);
      if (Date.now() - started > 60_000) throw new Error(`the job did not run within 60 s:\n${output.join('')}\nroset-mount: ${existsSync(`${root}/roset-mount.log`) ? readFileSync(`${root}/roset-mount.log`, 'utf8') : '(no log)'}`);
      await sleep(50);
    }
    expect(readFileSync(jobOut, 'utf8').trim().split('\n')).toEqual(['mountpoint=yes', 'fstype=fuse.roset', 'answers=yes']);
    const pid1 = childOf(boot.pid!)!;
    const systemctl = (...args: string[]) => spawnSync('nsenter', ['--target', String(pid1), '--mount', '--pid', 'systemctl', ...args], { encoding: 'utf8', timeout: 60_000 });
    const state = (unit: string): Record<string, string> => {
      const r = systemctl('show', '--property=ActiveState,SubState,Result', unit);
      expect(r.status, r.stderr).toBe(0);
      return Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));
    };
    expect(state('roset-mount.service')).toEqual({ ActiveState: 'active', SubState: 'running', Result: 'success' });
    expect(state('training-job.service')).toEqual({ ActiveState: 'inactive', SubState: 'dead', Result: 'success' });

    const stop = systemctl('stop', 'roset-mount.service');
    expect(stop.status, stop.stderr).toBe(0);
    expect(state('roset-mount.service')).toEqual({ ActiveState: 'inactive', SubState: 'dead', Result: 'success' });
    const inside = spawnSync('nsenter', ['--target', String(pid1), '--mount', 'mountpoint', '-q', mnt]);
    expect(inside.status).not.toBe(0);
    expect(readFileSync(path.join(root, 'roset-mount.log'), 'utf8')).toMatch(/"msg":"stopped"/);
    console.log(`systemd booted, started both units and stopped roset-mount in ${Date.now() - started} ms`);
  });
});
