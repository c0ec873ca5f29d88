import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import type { Resource } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  MeterProvider,
  PeriodicExportingMetricReader,
  type MetricProducer,
  type MetricReader,
} from '@opentelemetry/sdk-metrics';
import type { MetricsOptions } from './MetricsOptions.js';
import { createExemplarMetricExporter } from './exemplarMetricExporter.js';
import { ResourceSplittingMetricExporter } from './ResourceSplittingMetricExporter.js';

/**
 * Series per instrument at most: past it the SDK folds new ones into one `otel.metric.overflow`
 * series (the SDK default, 2000, stated here because docs/metrics.md promises it).
 * https://opentelemetry.io/docs/specs/otel/metrics/sdk/#cardinality-limits
 */
const CARDINALITY_LIMIT = 2000;

export interface MeterSetup {
  readonly provider: MeterProvider;
  /** Serves the Prometheus text format on our own HTTP listener (no server of its own). */
  readonly prometheus: PrometheusExporter;
}

/**
 * One MeterProvider, under `resource` (the bridge's own when it differs from `celeryResource`:
 * then the OTLP push gives the Celery metrics `celeryResource`, see
 * ResourceSplittingMetricExporter), two readers: periodic OTLP push to the same collector as the traces
 * (OTEL_EXPORTER_OTLP_METRICS_*, OTEL_METRIC_EXPORT_INTERVAL) and a pull reader for `/metrics`.
 * Cumulative temporality, as Prometheus and most backends expect.
 */
export function createMeterProvider(
  options: MetricsOptions,
  resource: Resource,
  producers: MetricProducer[],
  celeryResource: Resource = resource,
): MeterSetup {
  const prometheus = new PrometheusExporter({
    preventServerStart: true,
    metricProducers: producers,
  });
  const readers: MetricReader[] = [prometheus];
  if (options.otlpEnabled) {
    const config = {
      url: options.otlp.url,
      headers: options.otlp.headers,
      compression:
        options.otlp.compression === 'gzip' ? CompressionAlgorithm.GZIP : CompressionAlgorithm.NONE,
      timeoutMillis: options.otlp.timeoutMs,
      temporalityPreference: AggregationTemporality.CUMULATIVE,
    };
    // The SDK's OTLP/HTTP exporter, plus the histograms' exemplars (exemplarMetricExporter.ts).
    const exporter = createExemplarMetricExporter(options.otlp.protocol, config);
    readers.push(
      new PeriodicExportingMetricReader({
        exporter:
          celeryResource === resource
            ? exporter
            : new ResourceSplittingMetricExporter(exporter, celeryResource),
        exportIntervalMillis: options.exportIntervalMs,
        exportTimeoutMillis: Math.min(options.exportTimeoutMs, options.exportIntervalMs),
        cardinalityLimits: { default: CARDINALITY_LIMIT },
        metricProducers: producers,
      }),
    );
  }
  return { provider: new MeterProvider({ resource, readers }), prometheus };
}
