import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseYaml, runTool } from '../support/tools.js';

/**
 * The Prometheus alert rules in deploy/prometheus/rules/, checked by Prometheus's own promtool
 * (Debian's prometheus package; scripts/setup-test-env.sh installs it): `promtool check rules`
 * parses every expression, `promtool test rules` runs the unit tests beside each rules file
 * (`<name>.test.yml`) on the Prometheus engine. Then every alert must have a severity, a summary
 * and a runbook, and a test case where it fires and one where it does not.
 */
const RULES_DIR = fileURLToPath(new URL('../../deploy/prometheus/rules/', import.meta.url));
const files = readdirSync(RULES_DIR).sort();
const ruleFiles = files.filter((f) => f.endsWith('.rules.yml'));
const testFiles = files.filter((f) => f.endsWith('.test.yml'));

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTest {
  alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }>;
}

const alerts: Rule[] = ruleFiles.flatMap((file) => {
  const doc = parseYaml(readFileSync(`${RULES_DIR}${file}`, 'utf8')) as {
    groups: Array<{ rules: Rule[] }>;
  };
  return doc.groups.flatMap((group) => group.rules).filter((rule) => rule.alert !== undefined);
});
const cases = testFiles.flatMap((file) => {
  const doc = parseYaml(readFileSync(`${RULES_DIR}${file}`, 'utf8')) as { tests: RuleTest[] };
  return doc.tests.flatMap((test) => test.alert_rule_test ?? []);
});

describe('Prometheus alert rules (deploy/prometheus/rules)', () => {
  it('has the celery rules and a test file for each rules file', () => {
    expect(ruleFiles).toContain('celery.rules.yml');
    for (const file of ruleFiles)
      expect(testFiles).toContain(file.replace('.rules.yml', '.test.yml'));
    expect(alerts.length).toBeGreaterThanOrEqual(12);
  });

  it.each(ruleFiles)('promtool check rules %s', (file) => {
    expect(runTool('promtool', ['check', 'rules', file], { cwd: RULES_DIR })).toMatch(/SUCCESS/);
  });

  it.each(testFiles)('promtool test rules %s', (file) => {
    expect(runTool('promtool', ['test', 'rules', file], { cwd: RULES_DIR })).toMatch(/SUCCESS/);
  });

  it.each(alerts.map((rule) => [rule.alert, rule] as const))(
    '%s has a severity, a summary, a runbook, and tests where it fires and where it does not',
    (name, rule) => {
      expect(['critical', 'warning', 'info']).toContain(rule.labels?.['severity']);
      expect(rule.annotations?.['summary']).toMatch(/\S/);
      expect(rule.annotations?.['runbook']).toMatch(/docs\/dashboards\.md#|\S{20}/);
      const mine = cases.filter((c) => c.alertname === name);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${name}: a case where it fires`,
      ).toBe(true);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${name}: a case where it does not fire`,
      ).toBe(true);
    },
  );
});
