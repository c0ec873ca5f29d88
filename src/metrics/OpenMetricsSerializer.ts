import type { Attributes } from '@opentelemetry/api';
import {
  DataPointType,
  type MetricData,
  type ResourceMetrics,
  type ScopeMetrics,
} from '@opentelemetry/sdk-metrics';
import type { ExemplarHistogramDataPoint, HistogramExemplar } from './SeriesHistogram.js';
import { ATTR } from '../shared/attributeSpecs.js';

/** The media type Prometheus asks for first when it can store exemplars. */
export const OPENMETRICS_CONTENT_TYPE =
  'application/openmetrics-text; version=1.0.0; charset=utf-8';

/**
 * The collected metrics as OpenMetrics 1.0 text, with the histograms' exemplars.
 *
 * Why a serializer of our own: @opentelemetry/exporter-prometheus writes only the
 * Prometheus 0.0.4 text format and knows no exemplars (its PrometheusSerializer has no exemplar
 * code, and sdk-metrics data points carry none), and exemplars exist only in OpenMetrics.
 * prom-client writes OpenMetrics with exemplars but aggregates observations in its own registry;
 * the bridge's data are already aggregated OpenTelemetry points, which prom-client cannot take.
 * So this writes the same series as the SDK's serializer (same names: dots and other characters
 * to `_`, `_total` on monotonic sums; same labels, `otel_scope_name` / `otel_scope_version`
 * included; same `le` spellings; `target_info` from the resource), so that Prometheus keeps the
 * same series whichever format it negotiated, plus what OpenMetrics requires: counter families
 * named without `_total`, escaped HELP, `# EOF`, and `# {trace_id="…",span_id="…"} value
 * timestamp` after a bucket sample. No `# UNIT` line: OpenMetrics requires the unit to be a
 * suffix of the name, and the bridge's names carry no unit (docs/metrics.md).
 * https://github.com/prometheus/OpenMetrics/blob/main/specification/OpenMetrics.md
 */
export function serializeOpenMetrics(resourceMetrics: ResourceMetrics): string {
  const families = new Map<string, { header: string; samples: string[] }>();
  const add = (family: string, header: string, samples: string[]): void => {
    const existing = families.get(family);
    if (existing === undefined) families.set(family, { header, samples });
    else existing.samples.push(...samples);
  };
  add('target_info', '# HELP target_info Target metadata\n# TYPE target_info gauge\n', [
    sample('target_info', resourceMetrics.resource.attributes, 1),
  ]);
  for (const scopeMetrics of resourceMetrics.scopeMetrics) {
    for (const metric of scopeMetrics.metrics) serializeMetric(metric, scopeMetrics, add);
  }
  let out = '';
  for (const { header, samples } of families.values()) out += header + samples.join('');
  return `${out}# EOF\n`;
}

function serializeMetric(
  metric: MetricData,
  scopeMetrics: ScopeMetrics,
  add: (family: string, header: string, samples: string[]) => void,
): void {
  let name = metricName(metric.descriptor.name);
  if (name === '' || name === '_') return;
  const scope: Attributes = { [ATTR.OTEL_SCOPE_NAME]: scopeMetrics.scope.name };
  if (scopeMetrics.scope.schemaUrl)
    scope[ATTR.OTEL_SCOPE_SCHEMA_URL] = scopeMetrics.scope.schemaUrl;
  if (scopeMetrics.scope.version) scope[ATTR.OTEL_SCOPE_VERSION] = scopeMetrics.scope.version;
  const help = escapeHelp(metric.descriptor.description || 'description missing');
  const samples: string[] = [];
  let family = name;
  let type: string;
  switch (metric.dataPointType) {
    case DataPointType.SUM:
    case DataPointType.GAUGE: {
      const counter = metric.dataPointType === DataPointType.SUM && metric.isMonotonic;
      if (counter) {
        if (!name.endsWith('_total')) name += '_total';
        family = name.slice(0, -'_total'.length);
        type = 'counter';
      } else {
        type = 'gauge';
      }
      for (const point of metric.dataPoints)
        samples.push(sample(name, { ...point.attributes, ...scope }, point.value));
      break;
    }
    case DataPointType.HISTOGRAM: {
      type = 'histogram';
      for (const point of metric.dataPoints as ExemplarHistogramDataPoint[]) {
        const attributes = { ...point.attributes, ...scope };
        const { boundaries, counts } = point.value.buckets;
        const exemplars = new Map<number, HistogramExemplar>();
        for (const exemplar of point.exemplars ?? []) exemplars.set(exemplar.bucket, exemplar);
        let cumulative = 0;
        for (let bucket = 0; bucket < counts.length; bucket++) {
          cumulative += counts[bucket] ?? 0;
          const bound = boundaries[bucket];
          const le = bound === undefined || bound === Infinity ? '+Inf' : String(bound);
          samples.push(
            sample(`${name}_bucket`, { ...attributes, le }, cumulative, exemplars.get(bucket)),
          );
          if (bound === Infinity) break;
        }
        samples.push(sample(`${name}_count`, attributes, point.value.count));
        if (point.value.sum !== undefined)
          samples.push(sample(`${name}_sum`, attributes, point.value.sum));
      }
      break;
    }
    default:
      return;
  }
  add(family, `# HELP ${family} ${help}\n# TYPE ${family} ${type}\n`, samples);
}

/** As the SDK's PrometheusSerializer (exporter-prometheus) names metrics. */
function metricName(otelName: string): string {
  const name = sanitize(otelName);
  return name !== '' && name[0]! >= '0' && name[0]! <= '9' ? `_${name}` : name;
}

function sanitize(name: string): string {
  return name.replace(/[^a-z0-9_]/gi, '_').replace(/_{2,}/g, '_');
}

function sample(
  name: string,
  attributes: Attributes,
  value: number,
  exemplar?: HistogramExemplar,
): string {
  const labels = labelSet(attributes);
  let line = `${name}${labels} ${numberText(value)}`;
  if (exemplar !== undefined) {
    line +=
      ` # {trace_id="${exemplar.traceId}",span_id="${exemplar.spanId}"} ` +
      `${numberText(exemplar.value)} ${(exemplar.timeMs / 1000).toFixed(3)}`;
  }
  return `${line}\n`;
}

function labelSet(attributes: Attributes): string {
  const pairs: string[] = [];
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined) continue;
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    pairs.push(`${sanitize(key)}="${escapeLabelValue(text)}"`);
  }
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
}

function numberText(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** OpenMetrics escapes `\`, `"` and line feeds in label values and HELP text alike. */
function escapeLabelValue(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(text: string): string {
  return escapeLabelValue(text);
}
