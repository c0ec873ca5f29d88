import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * deploy/grafana/dashboards/periodic-tasks.json: the structure Grafana needs, its Prometheus
 * picked through a datasource variable (no uid hard-coded), and every query parsed by
 * Prometheus's own promtool (each expression, with the dashboard variables filled in, as a
 * recording rule: `promtool check rules` parses PromQL exactly as the server does).
 */
interface Target {
  refId: string;
  expr: string;
  datasource: unknown;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: unknown;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Target[];
}
const dashboard = JSON.parse(
  readFileSync(
    new URL('../../deploy/grafana/dashboards/periodic-tasks.json', import.meta.url),
    'utf8',
  ),
) as {
  uid: string;
  title: string;
  schemaVersion: number;
  tags: string[];
  templating: { list: { name: string; type: string; query: unknown; datasource?: unknown }[] };
  panels: Panel[];
};
const queryPanels = dashboard.panels.filter((p) => p.type !== 'row');
const exprs = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

/** Metrics with a unit, spelled with a suffix by an OpenTelemetry Collector's exporters. */
const UNIT_SUFFIXED = [
  ['celery_beat_lateness', '_seconds'],
  ['celery_beat_since_last_success', '_seconds'],
  ['celery_beat_next_run', '_seconds'],
  ['celery_beat_up', '_ratio'],
  ['celery_task_runtime', '_seconds'],
] as const;

describe('Periodic tasks dashboard (deploy/grafana/dashboards/periodic-tasks.json)', () => {
  it('is a tagged dashboard with a stable uid', () => {
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(dashboard.title).toMatch(/Periodic tasks/);
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.tags).toContain('celery-otel-bridge');
  });

  it('picks its Prometheus through a datasource variable, no uid hard-coded', () => {
    const variable = dashboard.templating.list.find((v) => v.type === 'datasource');
    expect(variable).toMatchObject({ name: 'datasource', query: 'prometheus' });
    for (const panel of queryPanels) {
      expect(panel.datasource, panel.title).toEqual(DATASOURCE);
      for (const target of panel.targets ?? []) expect(target.datasource).toEqual(DATASOURCE);
    }
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query'))
      expect(v.datasource, v.name).toEqual(DATASOURCE);
    const uids = [...JSON.stringify(dashboard).matchAll(/"uid":"([^"]*)"/g)].map((m) => m[1]);
    expect(new Set(uids)).toEqual(new Set([dashboard.uid, '${datasource}', '-- Grafana --']));
  });

  it('lays its panels out on the 24-column grid without overlap, with unique ids', () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const panel of dashboard.panels) {
      const { x, y, w, h } = panel.gridPos;
      expect(x + w, panel.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++)
        for (let j = y; j < y + h; j++) {
          expect(cells.has(`${i},${j}`), `${panel.title} overlaps`).toBe(false);
          cells.add(`${i},${j}`);
        }
    }
  });

  it('shows every beat metric, filtered by the app, entry and task variables', () => {
    for (const name of ['celery_beat_runs_total', ...UNIT_SUFFIXED.map(([n]) => n)])
      expect(
        exprs.some((e) => e.includes(name)),
        name,
      ).toBe(true);
    const beat = exprs.filter((e) => e.includes('celery_beat_'));
    for (const expr of beat) expect(expr).toContain('celery_beat_app=~"$app"');
    for (const expr of beat.filter((e) => !e.includes('celery_beat_up')))
      expect(expr).toContain('celery_beat_entry=~"$entry", celery_task_name=~"$task"');
    // The tasks' own panels follow the task, worker and queue variables, as the other dashboards.
    expect(exprs.some((e) => e.includes('celery_worker_hostname=~"$worker"'))).toBe(true);
    expect(exprs.some((e) => e.includes('messaging_destination_name=~"$queue"'))).toBe(true);
  });

  it('accepts both the bridge and the Collector spellings of unit metrics', () => {
    for (const expr of exprs) {
      for (const [name, suffix] of UNIT_SUFFIXED) {
        for (const match of expr.matchAll(new RegExp(`${name}[^"\\s{,]*`, 'g'))) {
          expect(match[0].slice(name.length), expr).toMatch(new RegExp(`^\\(${suffix}\\)\\?`));
          expect(expr.slice(0, match.index), expr).toMatch(/__name__=~"$/);
        }
      }
    }
  });

  it('has queries Prometheus parses', () => {
    const dir = mkdtempSync(join(tmpdir(), 'periodic-tasks-dashboard-'));
    try {
      const rules = exprs.map(
        (expr, i) =>
          `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(
            expr.replaceAll('$__range', '1h').replaceAll('$app', '.*').replaceAll('$entry', '.*'),
          )}`,
      );
      writeFileSync(
        join(dir, 'queries.yml'),
        `groups:\n  - name: q\n    rules:\n${rules.join('\n')}\n`,
      );
      const result = spawnSync('promtool', ['check', 'rules', 'queries.yml'], {
        cwd: dir,
        encoding: 'utf8',
      });
      expect(
        result.error,
        'promtool (Debian prometheus; scripts/setup-test-env.sh)',
      ).toBeUndefined();
      expect(result.stdout + result.stderr).toContain(`SUCCESS: ${exprs.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
