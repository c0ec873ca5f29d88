import { defineConfig } from 'vitest/config';

/** `npm run reliability`: the fault-injection report (docs/reliability.md, "Reliability report"). */
export default defineConfig({
  test: {
    include: ['test/reliability/**/*.suite.ts'],
    fileParallelism: false,
    // Threads and the bridge process run dist/: built first, so no test runs an old build.
    globalSetup: ['./test/support/buildBeforeTests.ts'],
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
