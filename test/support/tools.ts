import { spawnSync } from 'node:child_process';

/**
 * Runs a tool the tests need from Debian (promtool, docker-compose, /usr/bin/python3 + PyYAML)
 * and returns its stdout; a missing tool or a non-zero exit fails with its output and how to
 * install it (scripts/setup-test-env.sh), never skips.
 */
export function runTool(
  command: string,
  args: string[],
  options: { cwd?: string; input?: string } = {},
): string {
  const env = { ...process.env };
  delete env['PYTHONHOME'];
  delete env['PYTHONPATH'];
  const result = spawnSync(command, args, { ...options, encoding: 'utf8', env });
  if (result.error !== undefined || result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} failed (${result.error?.message ?? `exit ${result.status}`}):\n` +
        `${result.stdout}\n${result.stderr}\n` +
        'Install the test tools with scripts/setup-test-env.sh (Debian: prometheus, docker-compose, python3-yaml).',
    );
  }
  return result.stdout;
}

/** YAML -> plain data with PyYAML's safe loader (what docker-compose itself parses with). */
export function parseYaml(text: string): unknown {
  return JSON.parse(
    runTool(
      '/usr/bin/python3',
      ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'],
      { input: text },
    ),
  ) as unknown;
}
