import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests share one RabbitMQ and one Redis (and the `celeryev` exchange), so files
    // run one after another; each test still uses its own random queue names.
    fileParallelism: false,
    // Threads and the bridge process run dist/: built first, so no test runs an old build.
    globalSetup: ['./test/support/buildBeforeTests.ts'],
    testTimeout: 60_000,
    hookTimeout: 90_000,
    reporters: ['default', './test/support/summaryReporter.ts'],
  },
});
