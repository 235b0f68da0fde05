/**
 * vitest globalSetup for the S3 test server (Ceph RGW, scripts/s3-test-server).
 *
 * Owns: the server's lifetime for one test run.
 * - ROSET_TEST_S3_ENDPOINT set: the run uses that server (and the AWS_* variables);
 *   it is provided to the workers as `rosetS3` and never stopped by us.
 * - Otherwise the server is started on first use, by `s3TestConfig()` in a worker
 *   (test/support/s3.ts); with ROSET_TEST_S3_EAGER=1 it is started here instead. In
 *   teardown it is stopped if it was not already running when the run began, so a run
 *   leaves no Ceph daemons or data behind, while a server a developer started by hand
 *   (`scripts/s3-test-server start`, to skip the ~20 s start on every run) is kept.
 *
 * Invariant: nothing here skips tests. A server that cannot start makes every test
 * that needs it fail with the reason (CI=true or not).
 */
import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { configFromEnv, S3_TEST_SERVER_SCRIPT, startS3TestServer } from '../support/s3.js';

let stopAtTeardown = false;

function serverRunning(): boolean {
  try {
    execFileSync(S3_TEST_SERVER_SCRIPT, ['status'], { stdio: 'ignore', timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

export function setup(project: TestProject): void {
  if (process.env.ROSET_TEST_S3_ENDPOINT) {
    project.provide('rosetS3', configFromEnv(process.env));
    return;
  }
  stopAtTeardown = !serverRunning();
  if (process.env.ROSET_TEST_S3_EAGER === '1') {
    project.provide('rosetS3', startS3TestServer());
  } else {
    project.provide('rosetS3', null);
  }
}

export function teardown(): void {
  if (!stopAtTeardown) return;
  execFileSync(S3_TEST_SERVER_SCRIPT, ['stop'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000 });
}
