import { type Attributes, type HrTime, ValueType } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import {
  AggregationTemporality,
  DataPointType,
  type HistogramMetricData,
} from '@opentelemetry/sdk-metrics';
import { forgetIdleSeries } from './forgetIdleSeries.js';

interface Series {
  readonly attributes: Attributes;
  /** The collection in which it last got a value (forgetIdleSeries). */
  used: number;
  /** One count per bucket: `boundaries.length + 1`, the last one above every boundary. */
  readonly counts: number[];
  count: number;
  sum: number;
  min: number;
  max: number;
}

export interface SeriesHistogramOptions {
  readonly name: string;
  readonly unit: string;
  readonly description: string;
  /** Inclusive upper bounds of the buckets, ascending (as the SDK's explicit buckets). */
  readonly boundaries: readonly number[];
  /** Series at most; past it, values go to one `otel.metric.overflow=true` series. */
  readonly maxSeries: number;
}

/**
 * An explicit-bucket histogram aggregated by the bridge itself, cumulative, reported by
 * BridgeMetricProducer at each collection.
 *
 * The SDK's synchronous `Histogram.record` hashes the attribute set on every call (sdk-metrics
 * `hashAttributes` + `AttributeHashMap`), which the benchmark's profile showed as the largest
 * metrics cost once the task counter stopped using it (README "Benchmark"). Here a value costs a
 * lookup by a caller-made key and a bucket search. The data points are the same as the SDK's
 * `HistogramAggregator` makes with its defaults: same buckets (value <= bound), sum, count, min,
 * max, start time = creation, cardinality overflow series.
 * https://opentelemetry.io/docs/specs/otel/metrics/sdk/#explicit-bucket-histogram-aggregation
 */
export class SeriesHistogram {
  private readonly series = new Map<string, Series>();
  private overflow: Series | undefined;
  private readonly startTime: HrTime = hrTime();
  /** Copied once and shared by every data point, as the SDK's aggregator shares its own. */
  private readonly boundaries: number[];
  /** Collections so far, and the one in which no series was idle (no sweep again in it). */
  private generation = 0;
  private fullIn = -1;

  constructor(private readonly options: SeriesHistogramOptions) {
    this.boundaries = [...options.boundaries];
  }

  /** `key` must identify `attributes`; `attributes` is only called for a new series. */
  record(key: string, attributes: () => Attributes, value: number): void {
    // As the SDK: a histogram takes no negative value (sdk-metrics Instruments.js
    // `HistogramInstrument.record`), and NaN belongs to no bucket. Queue waits and lag are
    // clamped at 0 by the caller; a negative `runtime` sent by a worker is dropped here.
    if (!(value >= 0)) return;
    let series = this.series.get(key);
    if (series === undefined) {
      if (this.series.size < this.options.maxSeries || this.makeRoom()) {
        series = this.newSeries(attributes());
        this.series.set(key, series);
      } else {
        series = this.overflow ??= this.newSeries({ 'otel.metric.overflow': true });
      }
    }
    series.used = this.generation;
    const bounds = this.boundaries;
    let bucket = 0;
    while (bucket < bounds.length && value > (bounds[bucket] as number)) bucket++;
    series.counts[bucket] = (series.counts[bucket] as number) + 1;
    series.count++;
    series.sum += value;
    if (value < series.min) series.min = value;
    if (value > series.max) series.max = value;
  }

  /** The cumulative data points now, as the SDK's metric readers take them. */
  toMetricData(endTime: HrTime): HistogramMetricData {
    this.generation++;
    const all = [...this.series.values()];
    if (this.overflow !== undefined) all.push(this.overflow);
    return {
      descriptor: {
        name: this.options.name,
        description: this.options.description,
        unit: this.options.unit,
        valueType: ValueType.DOUBLE,
      },
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: all.map((series) => ({
        attributes: series.attributes,
        startTime: this.startTime,
        endTime,
        value: {
          buckets: { boundaries: this.boundaries, counts: [...series.counts] },
          count: series.count,
          sum: series.sum,
          min: series.min,
          max: series.max,
        },
      })),
    };
  }

  /** Past `maxSeries`, a series idle for two collections makes room (forgetIdleSeries). */
  private makeRoom(): boolean {
    if (this.fullIn === this.generation) return false;
    if (forgetIdleSeries(this.series, this.generation)) return true;
    this.fullIn = this.generation;
    return false;
  }

  private newSeries(attributes: Attributes): Series {
    return {
      attributes,
      used: this.generation,
      counts: new Array<number>(this.boundaries.length + 1).fill(0),
      count: 0,
      sum: 0,
      min: Number.POSITIVE_INFINITY,
      max: Number.NEGATIVE_INFINITY,
    };
  }
}
