/**
 * The compiled script of a worker thread, beside the module that starts it (`from`: its
 * `import.meta.url`). Under the test runner that module is TypeScript source in src/, and a worker
 * thread cannot load TypeScript, so the script comes from the build in dist/ (the test runner
 * builds it before any test: test/support/buildBeforeTests.ts).
 */
export function workerScriptUrl(script: string, from: string): URL {
  if (!from.endsWith('.ts')) return new URL(`./${script}`, from);
  const source = new URL('.', from).pathname;
  const srcRoot = source.slice(0, source.lastIndexOf('/src/') + 1);
  return new URL(`file://${srcRoot}dist/${source.slice(srcRoot.length + 'src/'.length)}${script}`);
}
