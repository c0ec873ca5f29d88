import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * vitest globalSetup: `npm run build` before any test file runs, and again before every rerun of
 * watch mode. Worker threads (the Redis read thread, the OTLP send thread) cannot load TypeScript,
 * so the code under test starts them from dist/, and the integration tests start the bridge as
 * `node dist/main.js`: without this, a test run after an edit would test the previous build and
 * say nothing. The build is `tsc --build`, which compares sources and outputs and rebuilds only
 * what changed (nothing, in a fraction of a second), and rebuilds what is missing from dist/.
 * Building (rather than loading threads from source under a TypeScript loader) tests the very
 * files that ship, and covers the bridge process as well as its threads.
 */
export default async function setup(project: TestProject): Promise<void> {
  await build();
  project.onTestsRerun(build);
}

async function build(): Promise<void> {
  try {
    await promisify(execFile)('npm', ['run', '--silent', 'build'], { cwd: ROOT });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(
      `\`npm run build\` failed, so no test runs against an old build in dist/: fix the errors below and run the tests again\n${stdout ?? ''}${stderr ?? ''}`,
      { cause: error },
    );
  }
}
