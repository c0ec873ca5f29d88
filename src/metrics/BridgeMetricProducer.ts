import { type Attributes, type HrTime, ValueType } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  type CollectionResult,
  DataPointType,
  type GaugeMetricData,
  type MetricData,
  type MetricProducer,
} from '@opentelemetry/sdk-metrics';

/** One gauge whose series are exactly the points given at each collection. */
export interface StateGauge {
  readonly name: string;
  readonly description: string;
  readonly unit: string;
  readonly points: ReadonlyArray<{ readonly attributes: Attributes; readonly value: number }>;
}

/**
 * Hands the metrics the bridge computes itself to the SDK's readers (OTLP push and `/metrics`),
 * as a MetricProducer: https://opentelemetry.io/docs/specs/otel/metrics/sdk/#metricproducer
 *
 * - Gauges of current state (workers up, tasks in flight, queue lengths): a series that is no
 *   longer observed disappears at the next collection. The SDK's asynchronous gauges keep
 *   exporting the last value of a series that stopped being observed, which would leave a worker
 *   that is long gone reporting `up 1` (or a drained task name its old in-flight count) forever.
 * - Histograms aggregated by the bridge (SeriesHistogram), which are cheaper per event than the
 *   SDK's synchronous instruments.
 */
export class BridgeMetricProducer implements MetricProducer {
  constructor(
    private readonly metrics: (now: HrTime) => MetricData[],
    private readonly scope: { name: string; version: string },
  ) {}

  collect(): Promise<CollectionResult> {
    return Promise.resolve({
      resourceMetrics: {
        // Ignored: readers use the SDK's resource for producers' data.
        resource: resourceFromAttributes({}),
        scopeMetrics: [{ scope: this.scope, metrics: this.metrics(hrTime()) }],
      },
      errors: [],
    });
  }
}

/** A state gauge as SDK metric data: every point is current, so it starts and ends now. */
export function gaugeMetricData(gauge: StateGauge, now: HrTime): GaugeMetricData {
  return {
    descriptor: {
      name: gauge.name,
      description: gauge.description,
      unit: gauge.unit,
      valueType: ValueType.DOUBLE,
    },
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.GAUGE,
    dataPoints: gauge.points.map((point) => ({
      attributes: point.attributes,
      startTime: now,
      endTime: now,
      value: point.value,
    })),
  };
}
