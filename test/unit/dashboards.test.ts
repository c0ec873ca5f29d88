import { describe, expect, it } from 'vitest';
import { type Dashboard, loadDashboards, queryPanels } from '../support/dashboards.js';

/**
 * The Grafana dashboards of deploy/grafana/dashboards: the structure Grafana needs and the
 * integration test (test/integration/prometheus.test.ts) relies on. Grafana publishes its
 * dashboard schema on npm only as TypeScript types (@grafana/schema) and CUE, not as a JSON
 * Schema a test can validate a file against, so the fields used are checked here; every
 * expression is run on a real Prometheus by the integration test.
 */
const dashboards = loadDashboards();
const CELERY_DASHBOARDS = ['overview.json', 'by-task.json', 'workers-queues.json'];
const all = [...dashboards.entries()];

/**
 * Metrics with a unit, which an OpenTelemetry Collector's Prometheus exporters spell with a unit
 * suffix: every query must accept both spellings (docs/dashboards.md#metric-names).
 */
const UNIT_SUFFIXED = [
  ['celery_task_runtime', '_seconds'],
  ['celery_task_queue_wait', '_seconds'],
  ['celery_otel_bridge_lag', '_seconds'],
  ['celery_worker_up', '_ratio'],
  ['celery_otel_bridge_broker_connected', '_ratio'],
  ['celery_otel_bridge_intake_paused', '_ratio'],
  ['celery_otel_bridge_intake_paused_time', '_seconds'],
  ['celery_otel_bridge_intake_buffered', '_bytes'],
  ['celery_tasks_oldest_age', '_seconds'],
  ['celery_worker_loadavg', '_ratio'],
  ['process_memory_usage', '_bytes'],
] as const;

describe('Grafana dashboards (deploy/grafana/dashboards)', () => {
  it('are the four dashboards, with distinct uids and titles', () => {
    expect([...dashboards.keys()]).toEqual(
      expect.arrayContaining([
        'overview.json',
        'by-task.json',
        'workers-queues.json',
        'bridge-health.json',
      ]),
    );
    const uids = all.map(([, d]) => d.uid);
    expect(new Set(uids).size).toBe(uids.length);
    for (const [file, d] of all) {
      expect(d.uid, file).toMatch(/^[a-z0-9-]{1,40}$/);
      expect(d.title, file).toMatch(/\S/);
      expect(d.schemaVersion, file).toBeGreaterThanOrEqual(36);
      expect(d.tags, file).toContain('celery-otel-bridge');
    }
  });

  it.each(all)(
    '%s picks its Prometheus through a datasource variable, no uid hard-coded',
    (file, d) => {
      const datasource = d.templating.list.find((v) => v.type === 'datasource');
      expect(datasource?.name).toBe('datasource');
      expect(datasource?.query).toBe('prometheus');
      for (const panel of queryPanels(d)) {
        expect(panel.datasource, `${file}: ${panel.title}`).toEqual({
          type: 'prometheus',
          uid: '${datasource}',
        });
        for (const target of panel.targets ?? []) {
          expect(target.datasource, `${file}: ${panel.title}`).toEqual(panel.datasource);
        }
      }
      // No other datasource uid anywhere in the file.
      const uids = [...JSON.stringify(d).matchAll(/"uid":"([^"]*)"/g)].map((m) => m[1]);
      expect(new Set(uids)).toEqual(new Set([d.uid, '${datasource}', '-- Grafana --']));
    },
  );

  // The Celery dashboards of this directory; others (e.g. a beat dashboard beside them) may have
  // variables of their own.
  it.each(all.filter(([file]) => CELERY_DASHBOARDS.includes(file)))(
    '%s has queue, worker and task variables that filter its queries',
    (file, d) => {
      for (const name of ['queue', 'worker', 'task']) {
        const variable = d.templating.list.find((v) => v.name === name);
        expect(variable, `${file}: $${name}`).toBeDefined();
        expect(variable?.datasource?.uid).toBe('${datasource}');
        expect(variable?.definition).toMatch(/^label_values\(\w+\)$/);
        if (variable?.includeAll) expect(variable.allValue).toBe('.*');
      }
      const exprs = queryPanels(d).flatMap((p) => (p.targets ?? []).map((t) => t.expr));
      expect(exprs.some((e) => e.includes('$task'))).toBe(true);
      expect(exprs.some((e) => e.includes('$worker'))).toBe(true);
    },
  );

  it.each(all)(
    '%s: panels have unique ids, queries and a place on the 24-column grid',
    (file, d) => {
      const panels = d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
      const ids = panels.map((p) => p.id);
      expect(new Set(ids).size, file).toBe(ids.length);
      const cells = new Set<string>();
      for (const panel of panels) {
        const { x, y, w, h } = panel.gridPos;
        expect(x + w, `${file}: ${panel.title}`).toBeLessThanOrEqual(24);
        for (let i = x; i < x + w; i++)
          for (let j = y; j < y + h; j++) {
            expect(cells.has(`${i},${j}`), `${file}: ${panel.title} overlaps`).toBe(false);
            cells.add(`${i},${j}`);
          }
      }
      for (const panel of queryPanels(d)) {
        expect(panel.targets?.length, `${file}: ${panel.title}`).toBeGreaterThan(0);
        const refIds = (panel.targets ?? []).map((t) => t.refId);
        expect(new Set(refIds).size).toBe(refIds.length);
        for (const target of panel.targets ?? []) expect(target.expr).toMatch(/\S/);
      }
    },
  );

  it.each(all)(
    '%s accepts both the bridge and the Collector spellings of unit metrics',
    (_f, d) => {
      for (const expr of exprsOf(d)) {
        for (const [name, suffix] of UNIT_SUFFIXED) {
          for (const match of expr.matchAll(
            new RegExp(`${name}(?![a-z_]*\\()[^"\\s{,)=!]*`, 'g'),
          )) {
            // celery_otel_bridge_intake_paused is a prefix of intake_paused_time: check each alone.
            const longer = UNIT_SUFFIXED.some(
              ([other]) => other.length > name.length && match[0].startsWith(other),
            );
            // A label name (celery_worker_loadavg_period=...), not a metric.
            const label = /[=!]/.test(expr[(match.index ?? 0) + match[0].length] ?? '');
            if (longer || label) continue;
            const rest = match[0].slice(name.length);
            expect(rest, expr).toMatch(new RegExp(`^\\(${suffix}\\)\\?`));
            expect(expr.slice(0, match.index), expr).toMatch(/__name__=~"$/);
          }
        }
      }
    },
  );

  it('shows exemplars on the runtime and queue-wait panels', () => {
    const exemplarTargets = all.flatMap(([, d]) =>
      queryPanels(d).flatMap((p) => (p.targets ?? []).filter((t) => t.exemplar === true)),
    );
    expect(exemplarTargets.length).toBeGreaterThanOrEqual(6);
    for (const target of exemplarTargets)
      expect(target.expr).toMatch(/celery_task_(runtime|queue_wait)\(_seconds\)\?_bucket/);
  });
});

function exprsOf(d: Dashboard): string[] {
  return queryPanels(d).flatMap((p) => (p.targets ?? []).map((t) => t.expr));
}
