// Randomized kill soak (issue: crash and fault safety). Repeats write → commit → move
// `latest` cycles against a real roset-mount and, at a random moment of each cycle,
// SIGKILLs the daemon or the writer process; then restarts what died and checks the
// safety contract:
//   - a "corrupt resume": `latest` (or any ref) names a commit that is not completed,
//     or one of its files does not read back with the manifest's sha256;
//   - a "lost commit": a commit the client saw `completed` that cannot be read back.
// Prints "N runs, C corrupt resumes, L lost commits" and exits 1 unless both are 0.
// Usage: scripts/crash-soak [--runs N] [--seed S] [--keep]
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RosetClient } from '../dist/sdk/index.js';
import { fuseMountpoints } from '../dist/util/mounts.js';
import { sleep } from '../dist/util/sleep.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const flag = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const runs = Number(flag('--runs', '25'));
let seed = Number(flag('--seed', String(Date.now() % 1_000_000)));
const initialSeed = seed;
const keep = args.includes('--keep');
if (!Number.isInteger(runs) || runs < 1) { console.error('crash-soak: --runs must be a positive integer'); process.exit(2); }

// Deterministic choices from the seed (mulberry32), so a failing run can be replayed.
const rand = () => { seed |= 0; seed = (seed + 0x6D2B79F5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const root = mkdtempSync(path.join(os.tmpdir(), 'roset-soak-'));
const mnt = path.join(root, 'mnt');
const stateDir = path.join(root, 'state');
let daemon = null;
let client = null;

async function startDaemon() {
  const proc = spawn(process.execPath, [path.join(repo, 'bin/roset-mount.js'), mnt, '--state-dir', stateDir, '--listen', '127.0.0.1:0', '--seal-timeout', '5', '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => { log += d.toString(); });
  const info = path.join(stateDir, 'daemon.json');
  for (let i = 0; i < 600; i++) {
    if (proc.exitCode !== null) throw new Error(`roset-mount exited: ${log}`);
    try {
      if (JSON.parse(readFileSync(info, 'utf8')).pid === proc.pid && fuseMountpoints().includes(mnt)) break;
    } catch { /* not yet */ }
    await sleep(50);
  }
  const endpoint = readFileSync(path.join(stateDir, 'endpoint'), 'utf8').trim();
  const apiKey = readFileSync(path.join(stateDir, 'api-key'), 'utf8').trim();
  daemon = proc;
  client = new RosetClient({ apiUrl: endpoint, apiKey, maxRetries: 0 });
}

async function killDaemon() {
  const proc = daemon;
  daemon = null;
  proc.kill('SIGKILL');
  if (proc.exitCode === null) await new Promise((r) => proc.once('exit', r));
}

// The writer is its own process, as a trainer is: it writes the files and prints their sha256.
const WRITER = `
const fs = require('fs'), crypto = require('crypto');
const [dir, spec] = [process.argv[1], JSON.parse(process.argv[2])];
fs.mkdirSync(dir, { recursive: true });
const out = {};
for (const [name, size] of spec) {
  const h = crypto.createHash('sha256'), fd = fs.openSync(dir + '/' + name, 'w');
  for (let done = 0; done < size;) { const b = crypto.randomBytes(Math.min(256 << 10, size - done)); fs.writeSync(fd, b); h.update(b); done += b.length; }
  fs.closeSync(fd); out[name] = h.digest('hex');
}
process.stdout.write(JSON.stringify(out));
`;

function runWriter(dir, spec) {
  const proc = spawn(process.execPath, ['-e', WRITER, dir, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d.toString(); });
  const done = new Promise((resolve) => proc.once('exit', (code) => resolve(code === 0 ? JSON.parse(out) : null)));
  return { proc, done };
}

async function sha256Of(file) {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c);
  return h.digest('hex');
}

async function readsBack(commitId) {
  const c = await client.getCommit(commitId);
  if (c.status !== 'completed') return `commit ${commitId} is ${c.status}`;
  const m = await client.getManifest(commitId);
  for (const f of m.files) {
    const got = await sha256Of(path.join(mnt, m.path, f.path)).catch((e) => `error ${e.code}`);
    if (got !== f.sha256) return `${m.path}/${f.path}: ${got} != ${f.sha256}`;
  }
  return null;
}

const ledger = [];          // commits the client saw completed
let latest = null;          // where the client last moved `latest`
const kills = { daemon: 0, writer: 0 };
let corrupt = 0;
let lost = 0;
const problems = [];

async function cycle(i) {
  const dir = `/soak/step-${i}`;
  const spec = Array.from({ length: 1 + Math.floor(rand() * 3) }, (_, k) => [`f${k}.bin`, Math.floor(rand() * (8 << 20))]);
  const victim = rand() < 0.5 ? 'daemon' : 'writer';
  // Every run kills once, anywhere from the first write to after the ref moved.
  const killAt = Math.floor(rand() * 700);
  let killed = false;
  const writer = runWriter(path.join(mnt, dir), spec);
  kills[victim]++;
  const kill = new Promise((resolve) => setTimeout(async () => {
    killed = true;
    if (victim === 'writer') writer.proc.kill('SIGKILL');
    else await killDaemon();
    resolve();
  }, killAt));
  try {
    const shas = await writer.done;
    if (!shas || killed) return;
    const node = await client.resolvePath(dir);
    const pending = await client.commit(node.id, { message: `soak ${i}` });
    let c = pending;
    while (c.status === 'pending') { await sleep(20); c = await client.getCommit(pending.id); }
    if (c.status !== 'completed') return;
    ledger.push(c.id);
    const ref = await client.updateRef('latest', c.id, latest ? { expectedCommitId: latest } : {});
    latest = ref.commitId;
  } catch {
    // The daemon died under us: the check below decides whether that lost anything.
  } finally {
    await kill;
  }
}

try {
  mkdirSync(mnt, { recursive: true });
  await startDaemon();
  for (let i = 1; i <= runs; i++) {
    await cycle(i);
    await sleep(50);
    if (!daemon) await startDaemon();
    // The client may have moved `latest` just before a kill; the server is the truth.
    const ref = await client.getRef('latest');
    if (ref) {
      latest = ref.commitId;
      const bad = await readsBack(ref.commitId);
      if (bad) { corrupt++; problems.push(`run ${i}: latest: ${bad}`); }
    }
    const last = ledger[ledger.length - 1];
    if (last && last !== ref?.commitId) {
      const bad = await readsBack(last);
      if (bad) { lost++; problems.push(`run ${i}: completed commit ${last}: ${bad}`); }
    }
    if (process.stderr.isTTY) process.stderr.write(`\rcrash-soak: ${i}/${runs}`);
  }
  // Every commit ever reported completed must still read back.
  for (const id of ledger) {
    const bad = await readsBack(id);
    if (bad) { lost++; problems.push(`final: ${id}: ${bad}`); }
  }
  if (process.stderr.isTTY) process.stderr.write('\n');
} finally {
  if (daemon) { daemon.kill('SIGTERM'); await new Promise((r) => daemon.once('exit', r)); }
  if (fuseMountpoints().includes(mnt)) spawn('fusermount', ['-uz', mnt]);
  if (!keep) rmSync(root, { recursive: true, force: true });
}
for (const p of problems) console.error(`crash-soak: ${p}`);
console.log(`${runs} runs, ${corrupt} corrupt resumes, ${lost} lost commits`);
console.error(`crash-soak: ${kills.daemon} daemon kills, ${kills.writer} writer kills, ${ledger.length} commits completed, seed ${flag('--seed', String(initialSeed))}`);
process.exitCode = corrupt === 0 && lost === 0 ? 0 : 1;
