// parse-prometheus-text-format ships no types: this is the shape its README documents.
// @ts-expect-error -- untyped module
import parsePrometheusTextFormat from 'parse-prometheus-text-format';

export interface PrometheusFamily {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: Array<{
    value?: string;
    labels?: Record<string, string>;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }>;
}

/** Parses Prometheus text exposition with a real third-party parser (not ours). */
export function parsePrometheus(text: string): PrometheusFamily[] {
  return (parsePrometheusTextFormat as (text: string) => PrometheusFamily[])(text);
}

/** Sums the values of a family's samples whose labels include `match`. */
export function sumOf(
  families: PrometheusFamily[],
  name: string,
  match: Record<string, string> = {},
): number {
  const family = families.find((f) => f.name === name);
  if (family === undefined) return 0;
  let total = 0;
  for (const metric of family.metrics) {
    const labels = metric.labels ?? {};
    if (Object.entries(match).every(([key, value]) => labels[key] === value)) {
      total += Number(metric.value ?? metric.count ?? 0);
    }
  }
  return total;
}

/**
 * Sums `<name>_count` samples whose labels include `match`. parse-prometheus-text-format merges
 * the series of a labelled histogram into one (its `flattenMetrics`), so histogram counts are
 * read from the sample lines here; the document as a whole is still parsed by the library.
 */
export function histogramCount(
  text: string,
  name: string,
  match: Record<string, string> = {},
): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const sample = new RegExp(`^${name}_count(?:\\{(.*)\\})? (\\S+)$`).exec(line);
    if (sample === null) continue;
    const labels: Record<string, string> = {};
    for (const pair of (sample[1] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] ?? ''] = pair[2] ?? '';
    }
    if (Object.entries(match).every(([key, value]) => labels[key] === value))
      total += Number(sample[2]);
  }
  return total;
}
