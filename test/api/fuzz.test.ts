/**
 * Hostile input (issue 5, acceptance 5): runs `scripts/api-fuzz`, which fuzzes the `/v1`
 * API from openapi/roset-v1.json with schemathesis against a real daemon on a real FUSE
 * mount, auth on, and holds the run to zero findings and a kept report
 * (test-artifacts/api-fuzz/: junit.xml, report.json, the daemon log).
 *
 * Invariants:
 * - Never skips. The script installs what it needs (Debian packages, a pinned
 *   schemathesis in .venv-fuzz/); if it cannot, the test fails, under CI=true as
 *   everywhere else.
 * - The script runs in a process group of its own: a timeout here signals the whole
 *   group (schemathesis and the daemon too), and the script's trap still unmounts.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../support/daemon.js';

const SCRIPT = path.join(REPO, 'scripts', 'api-fuzz');
const OUT = path.join(REPO, 'test-artifacts', 'api-fuzz');
// A fresh machine pays apt-get and the venv (about a minute); the run itself is well
// under one at the default example count.
const LIMIT_MS = 14 * 60_000;

function runFuzz(): Promise<{ code: number | null; signal: string | null; output: string; ms: number }> {
  const started = Date.now();
  const proc = spawn(SCRIPT, [], { cwd: REPO, env: { ...process.env, ROSET_FUZZ_OUT: OUT }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  proc.stdout.on('data', (d: Buffer) => { output += d.toString(); });
  proc.stderr.on('data', (d: Buffer) => { output += d.toString(); });
  const timer = setTimeout(() => {
    output += `\n[fuzz.test] ${SCRIPT} ran past ${LIMIT_MS / 1000} s: SIGTERM to its process group\n`;
    try { process.kill(-proc.pid!, 'SIGTERM'); } catch { /* already gone */ }
  }, LIMIT_MS);
  return new Promise((resolve) => {
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output, ms: Date.now() - started });
    });
  });
}

describe('API fuzzing (schemathesis)', () => {
  it('finds no 5xx, no crash and no response that contradicts the OpenAPI document, and keeps a report', async () => {
    const r = await runFuzz();
    expect(r.code, `scripts/api-fuzz failed (${r.signal ?? r.code}):\n${r.output.slice(-12_000)}`).toBe(0);

    for (const f of ['junit.xml', 'report.json', 'summary.txt', 'daemon.log', 'schemathesis.log']) {
      expect(existsSync(path.join(OUT, f)), `${f} in ${OUT}`).toBe(true);
    }
    const report = JSON.parse(readFileSync(path.join(OUT, 'report.json'), 'utf8'));
    expect(report.complete).toBe(true);
    expect(report.exit_code).toBe(0);
    // Every operation of the document, through every phase, stateful included.
    expect(report.operations.tested).toBe(report.operations.total);
    expect(report.operations.total).toBeGreaterThanOrEqual(20);
    for (const phase of ['examples', 'coverage', 'fuzzing', 'stateful']) expect(report.phases[phase]?.status, phase).toBe('success');
    expect(report.test_cases.generated).toBeGreaterThan(1000);
    expect(report.test_cases.with_failures).toBe(0);
    expect(report.failures).toEqual([]);
    expect(report.errors).toEqual([]);
    const junit = readFileSync(path.join(OUT, 'junit.xml'), 'utf8');
    expect(junit).toMatch(/<testsuite[^>]*failures="0"/);
    expect(junit).toMatch(/<testsuite[^>]*errors="0"/);
    expect(readFileSync(path.join(OUT, 'summary.txt'), 'utf8')).toMatch(/^OK$/m);
  }, LIMIT_MS + 60_000);
});
