import { type Attributes, ValueType } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  type CollectionResult,
  DataPointType,
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
 * Reports gauges of current state (workers up, tasks in flight, queue lengths) as a
 * MetricProducer, so a series that is no longer observed disappears at the next collection.
 * The SDK's asynchronous gauges keep exporting the last value of a series that stopped being
 * observed, which would leave a worker that is long gone reporting `up 1` (or a drained task
 * name reporting its old in-flight count) forever.
 * https://opentelemetry.io/docs/specs/otel/metrics/sdk/#metricproducer
 */
export class StateGaugeProducer implements MetricProducer {
  constructor(
    private readonly gauges: () => StateGauge[],
    private readonly scope: { name: string; version: string },
  ) {}

  collect(): Promise<CollectionResult> {
    const now = hrTime();
    return Promise.resolve({
      resourceMetrics: {
        // Ignored: readers use the SDK's resource for producers' data.
        resource: resourceFromAttributes({}),
        scopeMetrics: [
          {
            scope: this.scope,
            metrics: this.gauges().map((gauge) => ({
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
            })),
          },
        ],
      },
      errors: [],
    });
  }
}
