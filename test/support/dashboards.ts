import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The parts of a Grafana dashboard JSON model the tests rely on. */
export interface DashboardTarget {
  refId: string;
  expr: string;
  datasource?: { type?: string; uid?: string };
  exemplar?: boolean;
}
export interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: DashboardTarget[];
  panels?: DashboardPanel[];
}
export interface DashboardVariable {
  name: string;
  type: string;
  query?: string | { query: string };
  definition?: string;
  includeAll?: boolean;
  multi?: boolean;
  allValue?: string;
  datasource?: { type?: string; uid?: string };
}
export interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  tags: string[];
  panels: DashboardPanel[];
  templating: { list: DashboardVariable[] };
}

export const DASHBOARDS_DIR = fileURLToPath(
  new URL('../../deploy/grafana/dashboards/', import.meta.url),
);

/** Every dashboard of deploy/grafana/dashboards, by file name. */
export function loadDashboards(): Map<string, Dashboard> {
  const out = new Map<string, Dashboard>();
  for (const file of readdirSync(DASHBOARDS_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    out.set(file, JSON.parse(readFileSync(`${DASHBOARDS_DIR}${file}`, 'utf8')) as Dashboard);
  }
  return out;
}

/** Panels with queries, rows' nested panels included. */
export function queryPanels(dashboard: Dashboard): DashboardPanel[] {
  return dashboard.panels
    .flatMap((panel) => [panel, ...(panel.panels ?? [])])
    .filter((panel) => panel.type !== 'row');
}

/**
 * A panel expression as Grafana would send it, with the dashboard variables replaced by `values`
 * and Grafana's own interval variables by fixed ranges.
 * https://grafana.com/docs/grafana/latest/datasources/prometheus/template-variables/#use-__rate_interval
 */
export function substitute(expr: string, values: Record<string, string>, range = '5m'): string {
  return expr
    .replace(/\$__rate_interval/g, '1m')
    .replace(/\$__interval/g, '15s')
    .replace(/\$__range/g, range)
    .replace(/\$\{?(\w+)\}?/g, (whole: string, name: string) => values[name] ?? whole);
}
