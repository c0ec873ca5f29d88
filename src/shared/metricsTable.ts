import { METRIC_SPECS, type MetricAttributeSpec, type MetricSpec } from './metricSpecs.js';

/**
 * The metrics reference (docs/metrics.md), one row per declared metric, as `npm run docs` writes
 * it between `<!-- metrics:begin -->` and `<!-- metrics:end -->`.
 */
export function metricsTable(): string {
  const rows = Object.values(METRIC_SPECS as Record<string, MetricSpec>).map((spec) => [
    `\`${spec.name}\``,
    spec.unit === '1' ? spec.kind : `${spec.kind} (\`${spec.unit}\`)`,
    prometheusNames(spec)
      .map((name) => `\`${name}\``)
      .join(', '),
    spec.description,
    spec.attributes.map(attributeCell).join('; '),
    spec.flower ?? '',
    spec.celeryExporter ?? '',
  ]);
  return markdownTable(
    [
      'OpenTelemetry',
      'kind (unit)',
      'Prometheus',
      'description',
      'attributes',
      'Flower',
      'celery-exporter',
    ],
    rows,
  );
}

/**
 * How /metrics spells a metric: the Prometheus exporter turns every character a Prometheus name
 * may not hold into `_`, adds `_total` to counters and serves a histogram as its three series;
 * it does not append the unit.
 * https://opentelemetry.io/docs/specs/otel/compatibility/prometheus_and_openmetrics/#metric-metadata-1
 */
export function prometheusNames(spec: MetricSpec): string[] {
  const base = spec.name.replace(/[^a-zA-Z0-9_:]/g, '_');
  if (spec.kind === 'counter') return [base.endsWith('_total') ? base : `${base}_total`];
  if (spec.kind === 'histogram') return [`${base}_bucket`, `${base}_sum`, `${base}_count`];
  return [base];
}

function attributeCell(attribute: MetricAttributeSpec): string {
  const details = [
    ...(attribute.values === undefined ? [] : [attribute.values.map((v) => `\`${v}\``).join(', ')]),
    ...(attribute.note === undefined ? [] : [attribute.note]),
  ];
  return details.length === 0
    ? `\`${attribute.name}\``
    : `\`${attribute.name}\` (${details.join('; ')})`;
}

/** A Markdown table, unpadded (prettier aligns it when the page is formatted). */
export function markdownTable(header: readonly string[], rows: readonly string[][]): string {
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((cell) => cell.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}
