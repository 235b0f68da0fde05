/**
 * vitest globalSetup for the S3 test server (Ceph RGW, scripts/s3-test-server).
 *
 * Owns: this test run's claim on the server.
 * - ROSET_TEST_S3_ENDPOINT set: the run uses that server (and the AWS_* variables);
 *   it is provided to the workers as `rosetS3` and never stopped by us.
 * - Otherwise the server is started on first use, by `s3TestConfig()` in a worker
 *   (test/support/s3.ts), under a lease named by this process's pid; with
 *   ROSET_TEST_S3_EAGER=1 it is started here instead. Teardown releases the lease, and
 *   the script stops the server when the last live lease of a run-started server is
 *   released. So a run leaves no Ceph daemons or data behind, concurrent runs on one
 *   machine (several engineers, one /tmp) never stop the server under each other, and
 *   a server a developer started by hand (`scripts/s3-test-server start`, to skip the
 *   start on every run) is kept.
 *
 * Invariant: nothing here skips tests. A server that cannot start makes every test
 * that needs it fail with the reason (CI=true or not).
 */
import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { configFromEnv, S3_TEST_SERVER_SCRIPT, startS3TestServer } from '../support/s3.js';

let external = false;

export function setup(project: TestProject): void {
  external = Boolean(process.env.ROSET_TEST_S3_ENDPOINT);
  if (external) {
    project.provide('rosetS3', configFromEnv(process.env));
    project.provide('rosetS3Lease', null);
    return;
  }
  project.provide('rosetS3Lease', process.pid);
  project.provide('rosetS3', process.env.ROSET_TEST_S3_EAGER === '1' ? startS3TestServer(process.pid) : null);
}

export function teardown(): void {
  if (external) return;
  execFileSync(S3_TEST_SERVER_SCRIPT, ['release', String(process.pid)], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000 });
}
