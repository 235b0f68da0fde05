/**
 * Test runner configuration shared by the whole project.
 *
 * Tests mount FUSE filesystems and run a Ceph RGW on a 2-core machine, so test files
 * run one at a time in forked processes (fuse-native and better-sqlite3 are native
 * modules and do not belong in worker threads), with generous timeouts.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Starts (lazily) and stops the S3 test server: see test/setup/s3-server.ts.
    globalSetup: ['test/setup/s3-server.ts'],
    testTimeout: 120_000,
    // The first S3 test starts Ceph in its beforeAll (~20 s, plus ~20 s of apt-get on
    // a fresh machine).
    hookTimeout: 300_000,
    teardownTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    projects: [
      { extends: true, test: { name: 'native', include: ['test/**/*.test.ts'], env: { ROSET_TEST_FUSE_BINDING: 'native' } } },
      { extends: true, test: { name: 'fuse-native', include: ['test/e2e/**/*.test.ts'], env: { ROSET_TEST_FUSE_BINDING: 'fuse-native' } } },
    ],
  },
});
