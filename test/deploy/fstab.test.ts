/**
 * An fstab line mounts Roset through util-linux mount(8), which finds the helper where
 * scripts/setup links it (/sbin/mount.fuse.roset → bin/mount.fuse.roset): `mount -T
 * FSTAB MOUNTPOINT` on a line with `noauto`, `_netdev`, `nofail` and `x-systemd.*`
 * options, and `mount -t fuse.roset roset MOUNTPOINT -o ...`, each return with the
 * mount answering, and `umount` stops roset-mount.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/daemon.js';
import { daemonsOf, gone, HELPER, mountedAs, run, scratchRoots } from '../support/mount-helper.js';

/** Where libmount looks for the helper of type fuse.roset (its search path is /sbin:/sbin/fs.d:/sbin/fs). */
const INSTALLED = '/sbin/mount.fuse.roset';

function requireInstalled(): void {
  if (!existsSync(INSTALLED)) throw new Error(`${INSTALLED} is missing: scripts/setup links it to ${HELPER}`);
  const target = realpathSync(INSTALLED);
  if (target !== HELPER) throw new Error(`${INSTALLED} is ${target}, not this checkout's ${HELPER}: run scripts/setup here`);
}

const scratch = scratchRoots();
function setup(): { root: string; mnt: string; stateDir: string; cacheDir: string } {
  requireInstalled();
  return scratch({ stateDir: 'state', cacheDir: 'cache' });
}

/** Commits a file through the mount, unmounts with umount(8), and checks roset-mount is gone. */
async function useAndUnmount(mnt: string, stateDir: string): Promise<void> {
  expect(mountedAs(mnt)).toBe('fuse.roset');
  const info = JSON.parse(readFileSync(path.join(stateDir, 'daemon.json'), 'utf8')) as { pid: number; mountpoint: string };
  expect(info.mountpoint).toBe(mnt);
  expect(daemonsOf(mnt)).toEqual([info.pid]);
  mkdirSync(path.join(mnt, 'ck'));
  writeFileSync(path.join(mnt, 'ck', 'model.pt'), 'weights');
  const c = runCli(stateDir, ['commit', path.join(mnt, 'ck'), '--json']);
  expect(c.code, c.stderr).toBe(0);
  expect(c.json()).toMatchObject({ status: 'completed', path: '/ck', stats: { files: 1, bytes: 7 } });

  const u = run('umount', [mnt]);
  expect(u.code, u.stderr).toBe(0);
  expect(await gone(info.pid)).toBe(true);
  expect(mountedAs(mnt)).toBeNull();
  expect(daemonsOf(mnt)).toEqual([]);
}

describe('mount(8) with the installed helper', () => {
  it('mounts an fstab line (noauto, _netdev, nofail, x-systemd.* among its options) with `mount -T FSTAB MOUNTPOINT`', async () => {
    const { root, mnt, stateDir, cacheDir } = setup();
    const envFile = path.join(root, 'roset-mount.env');
    writeFileSync(envFile, 'ROSET_SEAL_TIMEOUT=30\n', { mode: 0o600 });
    const fstab = path.join(root, 'fstab');
    const options = [
      'noauto', '_netdev', 'nofail', 'x-systemd.requires=network-online.target', 'x-systemd.mount-timeout=5min',
      `state_dir=${stateDir}`, `cache_dir=${cacheDir}`, 'listen=127.0.0.1:0', 'cache_size=1G', 'log_level=warn', `env_file=${envFile}`,
    ].join(',');
    // libmount 2.38 hands the helper `-o rw,<roset options>,_netdev,nofail`, keeping
    // noauto and x-* to itself; the helper ignores the generic ones either way.
    writeFileSync(fstab, `# a test fstab\nroset  ${mnt}  fuse.roset  ${options}  0 0\n`);
    const m = run('mount', ['-T', fstab, mnt]);
    expect(m, m.stderr).toMatchObject({ code: 0, stderr: '' });
    // The options reached roset-mount as flags (cache dir, log level); mount(8)'s and
    // systemd's were not passed on to it.
    expect(existsSync(path.join(cacheDir, 'index.db'))).toBe(true);
    const log = readFileSync(path.join(stateDir, 'roset-mount.log'), 'utf8');
    expect(log).not.toContain('"level":30');
    expect(log).not.toMatch(/_netdev|nofail|noauto|x-systemd/);
    await useAndUnmount(mnt, stateDir);
  });

  it('mounts with `mount -t fuse.roset roset MOUNTPOINT -o OPTIONS`, and fails with the helper\'s exit code on a bad option', async () => {
    const { mnt, stateDir } = setup();
    const opts = `state_dir=${stateDir},listen=127.0.0.1:0,log_level=warn`;
    const bad = run('mount', ['-t', 'fuse.roset', 'roset', mnt, '-o', `${opts},bogus_opt=1`]);
    expect(bad.code).toBe(32);
    expect(bad.stderr).toContain(`mount.fuse.roset: roset-mount could not mount ${mnt}`);
    expect(bad.stderr).toContain("error: unknown option '--bogus-opt'");
    expect(mountedAs(mnt)).toBeNull();
    expect(daemonsOf(mnt)).toEqual([]);

    const m = run('mount', ['-t', 'fuse.roset', 'roset', mnt, '-o', opts]);
    expect(m, m.stderr).toMatchObject({ code: 0, stderr: '' });
    await useAndUnmount(mnt, stateDir);
  });
});
