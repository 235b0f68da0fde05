/**
 * bin/mount.fuse.roset, the mount(8) helper behind `mount -t fuse.roset` and an
 * /etc/fstab line, called the way mount(8) calls it (`SOURCE MOUNTPOINT -o OPTIONS`;
 * nothing is installed into /sbin). It returns only once the mount answers, with the
 * options turned into roset-mount's flags (a custom state dir and cache dir among
 * them, generic mount options ignored), the variables of an `env_file=` in its
 * environment, and roset-mount left running in the background; `umount` and `roset
 * unmount` stop it; a bad option fails with roset-mount's own error and exit code 32,
 * leaving nothing mounted or running, and so does a start that outlasts
 * `ready_timeout`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { processAlive } from '../../src/util/mounts.js';
import { runCli } from '../support/daemon.js';
import { daemonsOf, gone, HELPER, mountedAs, run, scratchRoots, type Ran } from '../support/mount-helper.js';

function helper(...args: string[]): Ran {
  return run(HELPER, args);
}

const scratch = scratchRoots('roset-helper-');
const setup = () => scratch({ stateDir: 'custom-state', cacheDir: 'custom-cache' });

describe('mount.fuse.roset', () => {
  it('mounts with -o options, returns once the mount answers, and `umount` stops roset-mount', async () => {
    const { mnt, stateDir, cacheDir } = setup();
    const r = helper('roset', mnt, '-o', `rw,_netdev,nofail,defaults,x-systemd.requires=network-online.target,state_dir=${stateDir},cache_dir=${cacheDir},listen=127.0.0.1:0,cache_size=1G,seal_timeout=30,log_level=warn`);
    expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
    // Ready on return: mounted, answering, daemon.json written by a live daemon.
    expect(mountedAs(mnt)).toBe('fuse.roset');
    const info = JSON.parse(readFileSync(path.join(stateDir, 'daemon.json'), 'utf8')) as { pid: number; mountpoint: string };
    expect(info.mountpoint).toBe(mnt);
    expect(processAlive(info.pid)).toBe(true);
    expect(daemonsOf(mnt)).toEqual([info.pid]);
    // The flags reached it: the cache dir holds the staging index, info is not logged.
    expect(existsSync(path.join(cacheDir, 'index.db'))).toBe(true);
    const log = readFileSync(path.join(stateDir, 'roset-mount.log'), 'utf8');
    expect(log).not.toContain('"level":30');
    expect(log).not.toMatch(/_netdev|nofail|x-systemd/);

    mkdirSync(path.join(mnt, 'ck', 'step-1'), { recursive: true });
    writeFileSync(path.join(mnt, 'ck', 'step-1', 'model.pt'), 'weights');
    const c = runCli(stateDir, ['commit', path.join(mnt, 'ck', 'step-1'), '--ref', 'latest', '--json']);
    expect(c.code, c.stderr).toBe(0);
    expect(c.json()).toMatchObject({ status: 'completed', path: '/ck/step-1', stats: { files: 1, bytes: 7 } });

    const u = spawnSync('umount', [mnt], { encoding: 'utf8' });
    expect(u.status, u.stderr).toBe(0);
    expect(await gone(info.pid)).toBe(true);
    expect(mountedAs(mnt)).toBeNull();
    expect(existsSync(path.join(stateDir, 'daemon.json'))).toBe(false);
    expect(readFileSync(path.join(stateDir, 'roset-mount.log'), 'utf8')).toContain('the mount was unmounted from outside');
  });

  it('mounts again on the same state and cache, and `roset unmount` stops it', async () => {
    const { mnt, stateDir, cacheDir } = setup();
    const opts = `state_dir=${stateDir},cache_dir=${cacheDir},listen=127.0.0.1:0`;
    // env_file: variables for roset-mount (credentials, in practice), read by the helper.
    const envFile = path.join(path.dirname(mnt), 'roset-mount.env');
    writeFileSync(envFile, '# as for the systemd unit\nROSET_LOG_LEVEL=warn\nROSET_SEAL_TIMEOUT=30\n', { mode: 0o600 });
    const r1 = helper('roset', mnt, '-o', `${opts},env_file=${envFile}`);
    expect(r1.code, r1.stderr).toBe(0);
    expect(readFileSync(path.join(stateDir, 'roset-mount.log'), 'utf8')).not.toContain('"level":30');
    writeFileSync(path.join(mnt, 'a'), 'one');
    const first = JSON.parse(readFileSync(path.join(stateDir, 'daemon.json'), 'utf8')).pid as number;
    const u1 = runCli(stateDir, ['unmount', mnt]);
    expect(u1.code, u1.stderr).toBe(0);
    expect(processAlive(first)).toBe(false);
    expect(mountedAs(mnt)).toBeNull();

    // fstab style: the options in one -o word glued to it, a read-only mount.
    const r = helper('roset', mnt, `-o${opts},ro`);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(path.join(mnt, 'a'), 'utf8')).toBe('one');
    expect(() => writeFileSync(path.join(mnt, 'b'), 'two')).toThrow(/EROFS|EACCES|EPERM/);
    const second = JSON.parse(readFileSync(path.join(stateDir, 'daemon.json'), 'utf8')).pid as number;
    expect(second).not.toBe(first);
    const u2 = runCli(stateDir, ['unmount', mnt]);
    expect(u2.code, u2.stderr).toBe(0);
    expect(processAlive(second)).toBe(false);
    expect(daemonsOf(mnt)).toEqual([]);
  });

  it.each([
    ['an option roset-mount does not know', 'bogus_opt=1', /error: unknown option '--bogus-opt'/],
    ['a bad value', 'cache_size=lots', /argument 'lots' is invalid/],
    ['a store it cannot open', 'store=s3://', /Invalid S3 URL "s3:\/\/"/],
  ])('fails on %s with roset-mount\'s error and exit code 32, leaving nothing mounted or running', (_what, bad, message) => {
    const { mnt, stateDir } = setup();
    const r = helper('roset', mnt, '-o', `state_dir=${stateDir},listen=127.0.0.1:0,${bad}`);
    expect(r.code).toBe(32);
    expect(r.stderr).toContain(`mount.fuse.roset: roset-mount could not mount ${mnt}`);
    expect(r.stderr).toMatch(message);
    expect(mountedAs(mnt)).toBeNull();
    expect(daemonsOf(mnt)).toEqual([]);
    expect(existsSync(path.join(stateDir, 'daemon.json'))).toBe(false);
  });

  it('gives up after ready_timeout on a start that hangs (a bucket that never answers), stopping roset-mount', async () => {
    const { mnt, stateDir } = setup();
    // Accepts connections and never answers them.
    const silent = spawn('python3', ['-c', 'import socket, time\ns = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)\nprint(s.getsockname()[1], flush=True); time.sleep(120)'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const port = await new Promise<string>((resolve) => silent.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
      const started = Date.now();
      const r = spawnSync(HELPER, ['roset', mnt, '-o', `state_dir=${stateDir},listen=127.0.0.1:0,store=s3://bucket/prefix,s3_endpoint=http://127.0.0.1:${port},ready_timeout=2`], {
        encoding: 'utf8', timeout: 60_000, env: { ...process.env, AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y', ROSET_STATE_DIR: '' },
      });
      expect(r.status).toBe(32);
      expect(r.stderr).toContain(`mount.fuse.roset: ${mnt} was not ready after 2s; stopping roset-mount`);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(mountedAs(mnt)).toBeNull();
      expect(daemonsOf(mnt)).toEqual([]);
    } finally {
      silent.kill('SIGKILL');
    }
  });

  it('refuses a call without a mountpoint, or with a helper option out of range, before starting anything', () => {
    const { mnt } = setup();
    expect(helper('roset')).toMatchObject({ code: 1, stderr: expect.stringMatching(/usage: mount.fuse.roset SOURCE MOUNTPOINT/) });
    expect(helper('roset', mnt, '-o', 'ready_timeout=soon')).toMatchObject({ code: 1, stderr: expect.stringMatching(/ready_timeout must be a positive number of seconds/) });
    expect(daemonsOf(mnt)).toEqual([]);
  });
});
