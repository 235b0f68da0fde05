/**
 * CLI tests: `node bin/roset.js …` (built by `npm run build`) against an in-process
 * fake of the API. They cover argument handling, exit codes, `--json` shapes and the
 * PATH → mount mapping; the daemon team's end-to-end tests cover the real server.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeRoset } from './fake-roset.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'roset.js');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let api: FakeRoset;
let work: string;
let stateDir: string;

/** Runs the CLI asynchronously: the fake API lives in this process and must keep serving. */
function roset(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<Result> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: opts.cwd ?? ROOT, env: { PATH: process.env.PATH ?? '', HOME: work, ROSET_STATE_DIR: stateDir, ...opts.env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

/** The CLI with the fake API's URL and key given as flags. */
function cli(...args: string[]): Promise<Result> {
  return roset(['--api-url', api.url, '--api-key', api.key, ...args]);
}

function json(r: Result): any {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`stdout is not JSON (exit ${r.code}):\n${r.stdout}\nstderr:\n${r.stderr}`);
  }
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'roset.js'))) throw new Error('dist/cli/roset.js is missing: run `npm run build` first');
  work = realpathSync(mkdtempSync(join(tmpdir(), 'roset-cli-')));
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

beforeEach(async () => {
  api = await FakeRoset.start();
  stateDir = mkdtempSync(join(work, 'state-'));
});

afterEach(async () => {
  await api.close();
});

describe('usage', () => {
  it('every command has --help and exits 0', async () => {
    for (const args of [[], ['commit'], ['ref'], ['ref', 'get'], ['ref', 'set'], ['ref', 'delete'], ['ref', 'list'], ['ref', 'log'], ['status'], ['log'], ['unmount']]) {
      const r = await roset([...args, '--help']);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toContain('Usage: roset');
    }
  });

  it('exits 2 on usage errors', async () => {
    const cases: string[][] = [
      ['bogus'],
      ['commit'],
      ['ref', 'set', 'latest'],
      ['commit', '/ckpt/step-1', '--timeout', 'soon'],
      ['log', '-n', '0'],
      ['commit', '/ckpt/step-1', '--expect', 'cmt_1'],
      ['commit', '/ckpt/step-1', '--ref', 'latest', '--no-wait'],
      ['commit', '/ckpt/step-1', '--ref', 'latest', '--group', 'grp_1'],
    ];
    for (const args of cases) {
      const r = await cli(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
    }
    // Nothing was sent for the conflicting-option cases either.
    expect(api.requests.filter((x) => x.method !== 'GET')).toHaveLength(0);
  });

  it('lists recover, serve and gc', async () => {
    const r = await roset(['--help']);
    expect(r.stdout).toMatch(/^\s+recover\b/m);
    expect(r.stdout).toMatch(/^\s+serve\b/m);
    expect(r.stdout).toMatch(/^\s+gc\b/m);
  });
});

describe('commit', () => {
  it('commits a mount-relative path, waits, and moves a ref', async () => {
    api.addFolder('/ckpt/step-1');
    api.plan = { polls: 3 };
    const r = await cli('commit', '/ckpt/step-1', '-m', 'step 1', '--ref', 'latest', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = json(r);
    expect(out).toMatchObject({ path: '/ckpt/step-1', status: 'completed', message: 'step 1', ref: { name: 'latest', commitId: out.id } });
    expect(api.refs.get('mnt_a:latest')!.commitId).toBe(out.id);
    const put = api.requests.find((x) => x.method === 'PUT')!;
    expect(put.body).toEqual({ commitId: out.id });
  });

  it('prints a summary without --json', async () => {
    api.addFolder('/ckpt/step-1');
    const r = await cli('commit', '/ckpt/step-1', '--ref', 'latest');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^committed \/ckpt\/step-1 as cmt_\d+ \(4 files, 4\.00 KiB/);
    expect(r.stdout).toMatch(/ref latest -> cmt_\d+/);
    expect(r.stderr).toBe(''); // not a terminal: no progress line
  });

  it('draws a progress bar with rate and ETA on a terminal, redrawn in place, ending at 100 %; none when piped', async () => {
    api.addFolder('/ckpt/step-1');
    api.plan = { polls: 6 };
    // `script` runs the command in a pseudo-terminal and copies what it writes there.
    const cmd = [process.execPath, BIN, '--api-url', api.url, '--api-key', api.key, 'commit', '/ckpt/step-1'].map((a) => `'${a}'`).join(' ');
    const r = await new Promise<Result>((done) => {
      execFile('script', ['-qfec', cmd, '/dev/null'], { env: { PATH: process.env.PATH ?? '', HOME: work, ROSET_STATE_DIR: stateDir, TERM: 'xterm' }, timeout: 30_000 },
        (err, stdout, stderr) => done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
    });
    expect(r.code, r.stderr).toBe(0);
    const frames = r.stdout.split('\r\x1b[K').map((f) => f.trim()).filter((f) => f !== '');
    const shares = frames.map((f) => /^\[[#.]+\] +(\d+)% /.exec(f)?.[1]).filter((x) => x !== undefined).map(Number);
    expect(shares.length, r.stdout).toBeGreaterThanOrEqual(3);
    expect([...shares].sort((a, b) => a - b)).toEqual(shares); // it only advances
    expect(shares.at(-1)).toBe(100);
    expect(frames.some((f) => /% \d\/4 files [\d.]+ \w+\/4\.00 KiB [\d.]+ \w+\/s ETA \d+:\d\d {2}\/ckpt\/step-1$/.test(f)), r.stdout).toBe(true);
    expect(frames.find((f) => f.includes('100%'))).toMatch(/^\[#{16}\] 100% 4 files, 4\.00 KiB in \d+:\d\d {2}\/ckpt\/step-1/);
    expect(r.stdout).toMatch(/committed \/ckpt\/step-1 as cmt_\d+/);

    // Piped: the same commit prints its summary and not one control character.
    api.addFolder('/ckpt/step-2');
    const piped = await cli('commit', '/ckpt/step-2');
    expect(piped.code).toBe(0);
    expect(piped.stdout + piped.stderr).not.toMatch(/[\x1b\r]/);
  });

  it('--expect is a compare-and-swap, "none" meaning the ref must not exist', async () => {
    api.addFolder('/ckpt/step-1');
    api.addFolder('/ckpt/step-2');
    const first = json(await cli('commit', '/ckpt/step-1', '--ref', 'latest', '--expect', 'none', '--json'));
    expect(api.requests.find((x) => x.method === 'PUT')!.body).toEqual({ commitId: first.id, expectedCommitId: null });

    const r = await cli('commit', '/ckpt/step-2', '--ref', 'latest', '--expect', 'cmt_999');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^roset: REF_CONFLICT: commit cmt_\d+ completed, but the ref was not moved: Ref latest points at/);
    expect(api.refs.get('mnt_a:latest')!.commitId).toBe(first.id);

    const rj = await cli('commit', '/ckpt/step-2', '--ref', 'latest', '--expect', 'cmt_999', '--json');
    expect(rj.code).toBe(1);
    expect(json(rj).error).toMatchObject({ code: 'REF_CONFLICT', details: { currentCommitId: first.id, path: '/ckpt/step-2' } });
    expect(json(rj).error.details.commitId).toMatch(/^cmt_/);
  });

  it('a failed commit exits 1 with its error code and message', async () => {
    api.addFolder('/ckpt/step-1');
    api.plan = { polls: 2, fail: { code: 'OPEN_HANDLES', message: 'model.pt was still open for writing' } };
    const r = await cli('commit', '/ckpt/step-1', '--ref', 'latest');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('roset: OPEN_HANDLES: model.pt was still open for writing\n');
    expect(r.stdout).toBe('');
    expect(api.refs.size).toBe(0);

    const rj = await cli('commit', '/ckpt/step-1', '--json');
    expect(rj.code).toBe(1);
    expect(json(rj)).toEqual({
      error: { code: 'OPEN_HANDLES', message: 'model.pt was still open for writing', details: { commitId: expect.stringMatching(/^cmt_/), path: '/ckpt/step-1' } },
    });
  });

  it('--timeout ends the wait with TIMEOUT, distinct from a failure', async () => {
    api.addFolder('/ckpt/step-1');
    api.plan = { polls: Infinity };
    const r = await cli('commit', '/ckpt/step-1', '--timeout', '0.3', '--json');
    expect(r.code).toBe(1);
    expect(json(r).error).toMatchObject({ code: 'TIMEOUT', details: { commitId: expect.stringMatching(/^cmt_/) } });
  });

  it('--no-wait and --group return the pending commit at once', async () => {
    api.addFolder('/ckpt/step-1');
    api.addFolder('/ckpt/step-2');
    const a = await cli('commit', '/ckpt/step-1', '--no-wait', '--json');
    expect(json(a)).toMatchObject({ status: 'pending' });
    const b = await cli('commit', '/ckpt/step-2', '--group', 'grp_1', '--json');
    expect(json(b)).toMatchObject({ status: 'pending', groupId: 'grp_1' });
    expect(api.requests.filter((x) => x.path.startsWith('/v1/commits/'))).toHaveLength(0);
  });

  it('a missing folder is NODE_NOT_FOUND', async () => {
    const r = await cli('commit', '/ckpt/nope');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^roset: NODE_NOT_FOUND: .*\/ckpt\/nope/);
  });
});

describe('PATH to mount mapping', () => {
  let mp: string;
  beforeEach(() => {
    mp = mkdtempSync(join(work, 'mnt-'));
    mkdirSync(join(mp, 'ckpt', 'step-1'), { recursive: true });
    api.mounts = [
      { id: 'mnt_a', name: 'default', store: 'file:///a', createdAt: 'x', mountpoints: [join(work, 'elsewhere')] },
      { id: 'mnt_b', name: 'second', store: 'file:///b', createdAt: 'x', mountpoints: [mp] },
    ];
    api.addFolder('/ckpt/step-1', 'mnt_b');
  });

  function resolved(): Array<{ mount: unknown; paths: unknown }> {
    return api.requests.filter((x) => x.path === '/v1/resolve').map((x) => ({ mount: x.headers['x-roset-mount-id'], paths: (x.body as { paths: unknown }).paths }));
  }

  it('maps a local path under a mountpoint to its mount and mount-relative path', async () => {
    const r = await cli('commit', join(mp, 'ckpt', 'step-1'), '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ mountId: 'mnt_b', path: '/ckpt/step-1', status: 'completed' });
    expect(resolved()).toEqual([{ mount: 'mnt_b', paths: ['/ckpt/step-1'] }]);
    // Every request after the mapping addresses that mount.
    for (const x of api.requests.filter((q) => q.path !== '/v1/mounts')) expect(x.headers['x-roset-mount-id']).toBe('mnt_b');
  });

  it('compares realpaths: symlinks, relative paths and trailing slashes', async () => {
    symlinkSync(mp, join(work, 'link'));
    expect((await cli('commit', join(work, 'link', 'ckpt', 'step-1') + '/', '--json')).code).toBe(0);
    const rel = await roset(['--api-url', api.url, '--api-key', api.key, 'commit', 'step-1', '--no-wait', '--json'], { cwd: join(mp, 'ckpt') });
    expect(rel.code, rel.stderr).toBe(0);
    expect(resolved()).toEqual([{ mount: 'mnt_b', paths: ['/ckpt/step-1'] }, { mount: 'mnt_b', paths: ['/ckpt/step-1'] }]);
  });

  it('maps a path that does not exist locally by its absolute form', async () => {
    const r = await cli('commit', join(mp, 'ckpt', 'step-9'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('NODE_NOT_FOUND');
    expect(resolved()).toEqual([{ mount: 'mnt_b', paths: ['/ckpt/step-9'] }]);
  });

  it('takes an absolute path under no mountpoint as mount-relative, in the default mount', async () => {
    api.addFolder('/ckpt/step-1', 'mnt_a');
    const r = await cli('commit', '/ckpt/step-1', '--json');
    expect(json(r)).toMatchObject({ mountId: 'mnt_a' });
    expect(resolved()).toEqual([{ mount: undefined, paths: ['/ckpt/step-1'] }]);
  });

  it('refuses a relative path under no mountpoint', async () => {
    const r = await roset(['--api-url', api.url, '--api-key', api.key, 'commit', 'somewhere'], { cwd: work });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^roset: INVALID_PATH: somewhere is not under a Roset mountpoint/);
  });

  it('log PATH lists the commits of that folder, newest first', async () => {
    const n = api.nodes.get('mnt_b:/ckpt/step-1')!;
    const other = api.addFolder('/ckpt/step-2', 'mnt_b');
    const c1 = api.addCommit({ mountId: 'mnt_b', nodeId: n.id, status: 'completed' });
    api.addCommit({ mountId: 'mnt_b', nodeId: other.id, status: 'completed' });
    const c3 = api.addCommit({ mountId: 'mnt_b', nodeId: n.id, status: 'failed', error: { code: 'STORAGE_ERROR', message: 'down' } });
    const r = await cli('log', join(mp, 'ckpt', 'step-1'), '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(json(r).map((c: { id: string }) => c.id)).toEqual([c3.id, c1.id]);
    const text = await cli('log', join(mp, 'ckpt', 'step-1'));
    expect(text.stdout.split('\n')[0]).toMatch(new RegExp(`^${c3.id}\\s+failed\\s+.*STORAGE_ERROR: down`));
  });
});

describe('ref', () => {
  it('get, set, list, log and delete', async () => {
    const c1 = api.addCommit({ status: 'completed' });
    const c2 = api.addCommit({ status: 'completed' });

    expect((await cli('ref', 'set', 'latest', c1.id, '--json')).code).toBe(0);
    const set2 = await cli('ref', 'set', 'latest', c2.id, '--expect', c1.id, '--json');
    expect(json(set2)).toMatchObject({ name: 'latest', commitId: c2.id, commit: { id: c2.id } });
    const conflict = await cli('ref', 'set', 'latest', c1.id, '--expect', c1.id);
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toMatch(/^roset: REF_CONFLICT: /);

    expect(json(await cli('ref', 'get', 'latest', '--json'))).toMatchObject({ name: 'latest', commitId: c2.id });
    expect((await cli('ref', 'get', 'latest')).stdout).toMatch(new RegExp(`^latest -> ${c2.id}`));
    expect(json(await cli('ref', 'list', '--json')).map((r: { name: string }) => r.name)).toEqual(['latest']);

    // Rollback is a move like any other, and the log keeps every one in order.
    expect((await cli('ref', 'set', 'latest', c1.id)).code).toBe(0);
    const log = json(await cli('ref', 'log', 'latest', '--json'));
    expect(log.map((e: { fromCommitId: string | null; toCommitId: string }) => [e.fromCommitId, e.toCommitId])).toEqual([
      [null, c1.id], [c1.id, c2.id], [c2.id, c1.id],
    ]);

    expect(json(await cli('ref', 'delete', 'latest', '--json'))).toEqual({ name: 'latest', deleted: true });
    const missing = await cli('ref', 'get', 'latest', '--json');
    expect(missing.code).toBe(1);
    expect(json(missing).error.code).toBe('REF_NOT_FOUND');
  });
});

describe('status and log', () => {
  it('status --json reports endpoint, health, mounts and pending commits of every mount', async () => {
    api.mounts.push({ id: 'mnt_b', name: 'second', store: 'file:///b', createdAt: 'x', mountpoints: ['/mnt/b'] });
    const p = api.addCommit({ mountId: 'mnt_b', status: 'pending', progress: { phase: 'uploading', filesTotal: 10, filesDone: 4, bytesTotal: 10 << 20, bytesUploaded: 5 << 20 } });
    api.addCommit({ mountId: 'mnt_a', status: 'completed' });
    const r = await cli('status', '--json');
    expect(r.code, r.stderr).toBe(0);
    const s = json(r);
    expect(s).toMatchObject({ endpoint: api.url, endpointSource: 'option', stateDir, health: { status: 'ok', version: '9.9.9' }, daemon: null });
    expect(s.mounts.map((m: { id: string; mountpoints: string[] }) => [m.id, m.mountpoints])).toEqual([['mnt_a', []], ['mnt_b', ['/mnt/b']]]);
    expect(s.pendingCommits.map((c: { id: string }) => c.id)).toEqual([p.id]);
    const text = await cli('status');
    expect(text.stdout).toContain('mnt_b  second  file:///b  /mnt/b');
    expect(text.stdout).toMatch(new RegExp(`${p.id}  /ckpt/step-1  uploading 50% 4/10 files, 5\\.00 MiB / 10\\.0 MiB  since `));
    expect(s.pendingCommits[0].progress).toMatchObject({ phase: 'uploading', filesDone: 4 });
  });

  it('status exits 1 when the API is unreachable, naming the endpoint', async () => {
    const url = api.url;
    await api.close();
    const r = await roset(['--api-url', url, 'status', '--json']);
    expect(r.code).toBe(1);
    expect(json(r).error).toMatchObject({ code: 'NETWORK_ERROR', details: { endpoint: url, endpointSource: 'option' } });
    api = await FakeRoset.start();
  });

  it('log lists all commits of the mount, newest first, with -n and ref decorations', async () => {
    const c1 = api.addCommit({ status: 'completed', message: 'first' });
    const c2 = api.addCommit({ status: 'completed' });
    const c3 = api.addCommit({ status: 'pending' });
    await cli('ref', 'set', 'latest', c2.id);
    expect(json(await cli('log', '--json')).map((c: { id: string }) => c.id)).toEqual([c3.id, c2.id, c1.id]);
    expect(json(await cli('log', '-n', '2', '--json'))).toHaveLength(2);
    const text = (await cli('log')).stdout.split('\n');
    expect(text[1]).toMatch(new RegExp(`^${c2.id}\\s+completed.*\\(latest\\)`));
    expect(text[2]).toMatch(/ first$/);
    expect(text.join('\n')).not.toContain('purged');
  });

  it('log marks a commit garbage collection purged, with when', async () => {
    const purgedAt = '2026-11-30T12:00:00.000Z';
    const c = api.addCommit({ status: 'completed', message: 'old', completedAt: '2026-11-29T12:00:00.000Z', purgedAt });
    expect(json(await cli('log', '--json')).find((x: { id: string }) => x.id === c.id).purgedAt).toBe(purgedAt);
    const line = (await cli('log')).stdout.split('\n').find((l) => l.startsWith(c.id));
    expect(line).toMatch(new RegExp(`^${c.id}\\s+completed .*\\[purged ${purgedAt}\\]  old$`));
  });
});

describe('configuration', () => {
  it('finds the API through the state directory files', async () => {
    writeFileSync(join(stateDir, 'endpoint'), `${api.url}\n`);
    writeFileSync(join(stateDir, 'api-key'), `${api.key}\n`, { mode: 0o600 });
    const r = await roset(['ref', 'list', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toEqual([]);
    // --state-dir beats ROSET_STATE_DIR.
    const other = mkdtempSync(join(work, 'state-'));
    const r2 = await roset(['--state-dir', other, 'status', '--json'], { env: { ROSET_API_URL: api.url } });
    expect(r2.code).toBe(1);
    expect(json(r2).error.code).toBe('UNAUTHORIZED');
  });

  it('environment variables beat the state files; flags beat the environment', async () => {
    writeFileSync(join(stateDir, 'endpoint'), 'http://127.0.0.1:9/\n');
    writeFileSync(join(stateDir, 'api-key'), 'rsk_wrong\n');
    const env = { ROSET_API_URL: api.url, ROSET_API_KEY: api.key };
    expect((await roset(['ref', 'list'], { env })).code).toBe(0);
    const r = await roset(['ref', 'list', '--api-key', 'rsk_flag'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('roset: UNAUTHORIZED: Missing or invalid API key\n');
    // Global options are accepted after the subcommand too.
    expect(api.requests.at(-1)!.headers.authorization).toBe('Bearer rsk_flag');
  });

  it('--mount-id selects the mount', async () => {
    api.mounts.push({ id: 'mnt_b', name: 'second', store: 'file:///b', createdAt: 'x', mountpoints: [] });
    await cli('--mount-id', 'mnt_b', 'ref', 'list');
    expect(api.requests.at(-1)!.headers['x-roset-mount-id']).toBe('mnt_b');
    const r = await cli('--mount-id', 'mnt_zzz', 'ref', 'list');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^roset: MOUNT_NOT_FOUND/);
  });
});

describe('unmount', () => {
  let daemon: ChildProcess | undefined;
  afterEach(() => {
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    daemon = undefined;
  });

  /** A stand-in daemon: on SIGTERM it "drains" for a moment, then exits. */
  async function startDaemon(): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => setTimeout(() => process.exit(0), 300)); setInterval(() => {}, 1000); console.log('up')"], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise((r) => child.stdout!.once('data', r));
    return child;
  }

  it('sends SIGTERM to the daemon that owns PATH and waits for it to exit', async () => {
    const mp = mkdtempSync(join(work, 'mnt-'));
    daemon = await startDaemon();
    writeFileSync(join(stateDir, 'daemon.json'), JSON.stringify({ pid: daemon.pid, mountpoint: mp, endpoint: api.url }));
    symlinkSync(mp, join(work, 'mnt-link'));
    const exited = new Promise<NodeJS.Signals | number | null>((r) => daemon!.once('exit', (code, sig) => r(sig ?? code)));
    const r = await roset(['unmount', join(work, 'mnt-link'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toEqual({ mountpoint: mp, pid: daemon.pid, method: 'daemon' });
    expect(await exited).toBe(0); // exited by itself after SIGTERM, before the CLI returned
    rmSync(join(work, 'mnt-link'));
  });

  it('times out when the daemon does not exit', async () => {
    const mp = mkdtempSync(join(work, 'mnt-'));
    daemon = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000); console.log('up')"], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((r) => daemon!.stdout!.once('data', r));
    writeFileSync(join(stateDir, 'daemon.json'), JSON.stringify({ pid: daemon.pid, mountpoint: mp, endpoint: api.url }));
    const r = await roset(['unmount', mp, '--timeout', '0.5']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^roset: TIMEOUT: roset-mount \(pid \d+\) is still running/);
  });

  it('leaves a daemon alone when PATH is not its mountpoint', async () => {
    const mp = mkdtempSync(join(work, 'mnt-'));
    const other = mkdtempSync(join(work, 'other-'));
    daemon = await startDaemon();
    writeFileSync(join(stateDir, 'daemon.json'), JSON.stringify({ pid: daemon.pid, mountpoint: mp, endpoint: api.url }));
    const r = await roset(['unmount', other, '--json']);
    expect(r.code).toBe(1);
    expect(json(r).error.code).toBe('NOT_MOUNTED');
    expect(daemon.exitCode).toBeNull();
  });

  it('never signals a pid that was reused after the daemon died', async () => {
    const mp = mkdtempSync(join(work, 'mnt-'));
    // The process now holding the pid prints each of these signals it gets (SIGKILL would
    // end it); SIGWINCH is the test's marker, sent once the CLI has exited.
    const signals = ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGUSR2', 'SIGTERM', 'SIGWINCH'];
    daemon = spawn(process.execPath, ['-e', `for (const s of ${JSON.stringify(signals)}) process.on(s, () => console.log(s)); setInterval(() => {}, 1000); console.log('up')`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const child = daemon;
    let out = '';
    const waiters = new Set<() => void>();
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); for (const w of waiters) w(); });
    const printed = (line: string) => new Promise<void>((resolve, reject) => {
      const check = () => { if (out.split('\n').includes(line)) { waiters.delete(check); resolve(); } };
      waiters.add(check);
      child.once('exit', (code, sig) => reject(new Error(`it exited (${sig ?? code}) before printing ${line}; it printed: ${out}`)));
      check();
    });
    await printed('up');
    const file = join(stateDir, 'daemon.json');
    writeFileSync(file, JSON.stringify({ pid: child.pid, mountpoint: mp, endpoint: api.url }));
    // The file predates the process now holding that pid: it is left over from a crash.
    const hourAgo = new Date(Date.now() - 3600_000);
    utimesSync(file, hourAgo, hourAgo);
    const r = await roset(['unmount', mp]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/NOT_MOUNTED: .*not running/);
    // Any signal the CLI sent was sent before it exited, and Linux delivers pending
    // signals lowest number first; SIGWINCH (28) is above all of the above, so the
    // marker comes after anything the CLI sent.
    child.kill('SIGWINCH');
    await printed('SIGWINCH');
    expect(out).toBe('up\nSIGWINCH\n');
    expect(child.exitCode).toBeNull();
  });
});
