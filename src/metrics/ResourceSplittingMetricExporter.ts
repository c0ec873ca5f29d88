import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  type InstrumentType,
  type PushMetricExporter,
  type ResourceMetrics,
  type ScopeMetrics,
} from '@opentelemetry/sdk-metrics';

/**
 * The bridge's own health metrics: `celery_otel_bridge.*` and the process's own (`process.*`,
 * e.g. `process.memory.usage`); everything else describes Celery.
 */
export function isBridgeMetric(name: string): boolean {
  return name.startsWith('celery_otel_bridge.') || name.startsWith('process.');
}

/**
 * One MeterProvider collects every metric under the bridge's own resource (its service name,
 * host, process, instance id: what `/metrics` shows as its one target's `target_info`). On the
 * OTLP push this exporter hands the Celery metrics (`celery.*`: anything {@link isBridgeMetric}
 * does not claim) over with the Celery resource instead (`--service-name`,
 * `OTEL_RESOURCE_ATTRIBUTES`), as a separate export: the bridge's health and the Celery
 * cluster's state are two different things to a backend. Each export's outcome is the worse of
 * the two.
 */
export class ResourceSplittingMetricExporter implements PushMetricExporter {
  constructor(
    private readonly inner: PushMetricExporter,
    private readonly celeryResource: Resource,
  ) {}

  export(metrics: ResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    const celery: ScopeMetrics[] = [];
    const bridge: ScopeMetrics[] = [];
    for (const scope of metrics.scopeMetrics) {
      const own = scope.metrics.filter((m) => isBridgeMetric(m.descriptor.name));
      const rest = scope.metrics.filter((m) => !isBridgeMetric(m.descriptor.name));
      if (own.length > 0) bridge.push({ scope: scope.scope, metrics: own });
      if (rest.length > 0) celery.push({ scope: scope.scope, metrics: rest });
    }
    const parts: ResourceMetrics[] = [];
    if (celery.length > 0) parts.push({ resource: this.celeryResource, scopeMetrics: celery });
    if (bridge.length > 0 || parts.length === 0) {
      parts.push({ resource: metrics.resource, scopeMetrics: bridge });
    }
    let failed: ExportResult | undefined;
    const next = (index: number): void => {
      const part = parts[index];
      if (part === undefined) {
        resultCallback(failed ?? { code: ExportResultCode.SUCCESS });
        return;
      }
      this.inner.export(part, (result) => {
        if (result.code !== ExportResultCode.SUCCESS) failed ??= result;
        next(index + 1);
      });
    };
    next(0);
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  selectAggregationTemporality(instrumentType: InstrumentType): AggregationTemporality {
    return (
      this.inner.selectAggregationTemporality?.(instrumentType) ?? AggregationTemporality.CUMULATIVE
    );
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}
