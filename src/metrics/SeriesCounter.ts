import { type Attributes, type HrTime, ValueType } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import {
  AggregationTemporality,
  DataPointType,
  type SumMetricData,
} from '@opentelemetry/sdk-metrics';
import { forgetIdleSeries } from './forgetIdleSeries.js';
import { ATTR } from '../shared/attributeSpecs.js';

export interface SeriesCounterOptions {
  readonly name: string;
  readonly unit: string;
  readonly description: string;
  /** Series at most; past it, see `add`. */
  readonly maxSeries: number;
}

interface Series {
  readonly attributes: Attributes;
  /** When the series (re)started: a series forgotten and made again counts from 0. */
  readonly startTime: HrTime;
  value: number;
  /** The collection in which it last got a value (forgetIdleSeries). */
  used: number;
}

/**
 * A monotonic counter kept in a plain map and reported by BridgeMetricProducer at each
 * collection, as a cumulative sum (what the SDK's counters make of it: Prometheus `_total`).
 *
 * The SDK's synchronous `Counter.add` hashes the attribute set on every call; counting every
 * Celery event that way was the bridge's largest CPU cost (bench/README.md). Here an event
 * costs one string key lookup. The number of series is capped like the SDK's own cardinality
 * limit: past it, a series idle for two collections makes room (forgetIdleSeries), else counts
 * go to one `otel.metric.overflow=true` series. (An SDK observable counter would keep reporting
 * a forgotten series with its last value for good, so the cap would fill first-come.)
 * https://opentelemetry.io/docs/specs/otel/metrics/sdk/#overflow-attribute
 */
export class SeriesCounter {
  private readonly series = new Map<string, Series>();
  private overflow: Series | undefined;
  /** Collections so far, and the one in which no series was idle (no sweep again in it). */
  private generation = 0;
  private fullIn = -1;

  constructor(private readonly options: SeriesCounterOptions) {}

  /**
   * Adds to the series of `key` if it exists, and says whether it did: the caller then makes the
   * attributes (and the closure `add` takes) only for a new series.
   */
  increment(key: string, value = 1): boolean {
    const entry = this.series.get(key);
    if (entry === undefined) return false;
    entry.value += value;
    entry.used = this.generation;
    return true;
  }

  /** `key` must identify `attributes`; `attributes` is only built when the series is new. */
  add(key: string, attributes: () => Attributes, value = 1): void {
    const entry = this.series.get(key);
    if (entry !== undefined) {
      entry.value += value;
      entry.used = this.generation;
    } else if (this.series.size < this.options.maxSeries || this.makeRoom()) {
      this.series.set(key, this.newSeries(attributes(), value));
    } else {
      this.overflow ??= this.newSeries({ [ATTR.METRIC_OVERFLOW]: true }, 0);
      this.overflow.value += value;
    }
  }

  /** The cumulative data points now, as the SDK's metric readers take them. */
  toMetricData(endTime: HrTime): SumMetricData {
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
      dataPointType: DataPointType.SUM,
      isMonotonic: true,
      dataPoints: all.map((series) => ({
        attributes: series.attributes,
        startTime: series.startTime,
        endTime,
        value: series.value,
      })),
    };
  }

  private makeRoom(): boolean {
    if (this.fullIn === this.generation) return false;
    if (forgetIdleSeries(this.series, this.generation)) return true;
    this.fullIn = this.generation;
    return false;
  }

  private newSeries(attributes: Attributes, value: number): Series {
    return { attributes, startTime: hrTime(), value, used: this.generation };
  }
}
