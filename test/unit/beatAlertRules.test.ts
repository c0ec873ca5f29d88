import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * deploy/prometheus/rules/beat.rules.yml, checked by Prometheus's own promtool (Debian's
 * prometheus package, installed by scripts/setup-test-env.sh): `check rules` parses every
 * expression, `test rules` runs beat.test.yml on the Prometheus engine (each alert firing and not).
 */
const RULES_DIR = fileURLToPath(new URL('../../deploy/prometheus/rules/', import.meta.url));

function promtool(args: string[]): string {
  const result = spawnSync('promtool', args, { cwd: RULES_DIR, encoding: 'utf8' });
  if (result.error !== undefined || result.status !== 0) {
    throw new Error(
      `promtool ${args.join(' ')} failed (${result.error?.message ?? `exit ${result.status}`}):\n` +
        `${result.stdout}\n${result.stderr}\nInstall it with scripts/setup-test-env.sh (Debian: prometheus).`,
    );
  }
  return result.stdout + result.stderr;
}

describe('celery beat alert rules (deploy/prometheus/rules/beat.rules.yml)', () => {
  it('parse', () => {
    expect(promtool(['check', 'rules', 'beat.rules.yml'])).toMatch(/SUCCESS: 3 rules found/);
  });

  it('pass their promtool tests', () => {
    expect(promtool(['test', 'rules', 'beat.test.yml'])).toMatch(/SUCCESS/);
  });

  it('test every alert firing and not firing, with a severity and a runbook', () => {
    const rules = readFileSync(`${RULES_DIR}beat.rules.yml`, 'utf8');
    const tests = readFileSync(`${RULES_DIR}beat.test.yml`, 'utf8');
    const alerts = [...rules.matchAll(/- alert: (\w+)/g)].map((m) => m[1] as string);
    expect(alerts).toEqual(['CeleryBeatRunMissed', 'CeleryBeatDown', 'CeleryBeatRunFailed']);
    for (const alert of alerts) {
      const cases = tests.split('- eval_time:').filter((c) => c.includes(`alertname: ${alert}\n`));
      expect(
        cases.some((c) => c.includes('exp_alerts: []')),
        `${alert} not firing`,
      ).toBe(true);
      expect(
        cases.some((c) => c.includes('exp_labels:')),
        `${alert} firing`,
      ).toBe(true);
      expect(rules).toContain(`docs/periodic-tasks.md#${alert.toLowerCase()}`);
    }
    expect(rules.match(/severity: (critical|warning)/g)).toHaveLength(alerts.length);
  });
});
