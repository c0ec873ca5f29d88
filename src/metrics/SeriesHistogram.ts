import { type Attributes, type HrTime, ValueType } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import {
  AggregationTemporality,
  type DataPoint,
  DataPointType,
  type Histogram,
  type HistogramMetricData,
} from '@opentelemetry/sdk-metrics';
import { forgetIdleSeries } from './forgetIdleSeries.js';
import type { ExemplarCandidate } from './TaskExemplars.js';
import { ATTR } from '../shared/attributeSpecs.js';

/** An exemplar of one bucket: a value observed in it and the task span it came from. */
export interface HistogramExemplar {
  /** Index into the bucket counts (`boundaries.length` is the bucket above every boundary). */
  readonly bucket: number;
  readonly value: number;
  /** Epoch milliseconds of the observation. */
  readonly timeMs: number;
  readonly traceId: string;
  readonly spanId: string;
}

/**
 * A histogram data point with its exemplars. The SDK's data point type has none (sdk-metrics
 * keeps exemplars to its own reservoirs), so they ride along in this extra field, which the
 * OpenMetrics serializer and the OTLP metrics serializers of this bridge read.
 */
export type ExemplarHistogramDataPoint = DataPoint<Histogram> & {
  readonly exemplars?: readonly HistogramExemplar[];
};

/** Per bucket: the best candidate since the last collection, and the exemplar last shown. */
interface ExemplarSlots {
  readonly pending: (ExemplarCandidate | undefined)[];
  /** The pending candidate survived a collection unresolved: any new observation replaces it. */
  readonly stale: boolean[];
  readonly shown: (HistogramExemplar | undefined)[];
}

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
  /** Allocated at the series' first exemplar candidate. */
  exemplars?: ExemplarSlots;
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
 * metrics cost once the task counter stopped using it (bench/README.md). Here a value costs a
 * lookup by a caller-made key and a bucket search. The data points are the same as the SDK's
 * `HistogramAggregator` makes with its defaults: same buckets (value <= bound), sum, count, min,
 * max, start time = creation, cardinality overflow series.
 * https://opentelemetry.io/docs/specs/otel/metrics/sdk/#explicit-bucket-histogram-aggregation
 *
 * Exemplars: each bucket of each series keeps at most one, so a collection carries at most one
 * exemplar per bucket. Between two collections the slowest observation of the bucket wins (ties
 * keep the first): the slow end of every bucket is what a user clicks on, and the buckets above
 * make the slowest tasks visible; failures and retries are series of their own (the runtime's
 * `celery.task.outcome`), so their exemplars never compete with successes. A candidate is shown
 * once its task span exists (TaskExemplars); until then the bucket keeps showing its previous
 * exemplar. This is the SDK's AlignedHistogramBucketExemplarReservoir (one per bucket) with
 * "slowest" instead of "last" as the rule.
 * https://opentelemetry.io/docs/specs/otel/metrics/sdk/#alignedhistogrambucketexemplarreservoir
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

  /**
   * `key` must identify `attributes`; `attributes` is only called for a new series. `exemplar`
   * is only called when the value becomes its bucket's exemplar candidate.
   */
  record(
    key: string,
    attributes: () => Attributes,
    value: number,
    exemplar?: (value: number) => ExemplarCandidate,
  ): void {
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
        series = this.overflow ??= this.newSeries({ [ATTR.METRIC_OVERFLOW]: true });
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
    if (exemplar !== undefined) offerExemplar(series, bucket, value, exemplar);
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
      dataPoints: all.map((series): ExemplarHistogramDataPoint => {
        const point: ExemplarHistogramDataPoint = {
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
        };
        return series.exemplars === undefined
          ? point
          : { ...point, exemplars: collectExemplars(series.exemplars) };
      }),
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

function offerExemplar(
  series: Series,
  bucket: number,
  value: number,
  exemplar: (value: number) => ExemplarCandidate,
): void {
  const buckets = series.counts.length;
  const slots = (series.exemplars ??= {
    pending: new Array<ExemplarCandidate | undefined>(buckets).fill(undefined),
    stale: new Array<boolean>(buckets).fill(false),
    shown: new Array<HistogramExemplar | undefined>(buckets).fill(undefined),
  });
  const current = slots.pending[bucket];
  if (current !== undefined && !slots.stale[bucket] && value <= current.value) return;
  slots.pending[bucket] = exemplar(value);
  slots.stale[bucket] = false;
}

/** Closes the period: resolved candidates become the buckets' exemplars. */
function collectExemplars(slots: ExemplarSlots): HistogramExemplar[] {
  const out: HistogramExemplar[] = [];
  for (let bucket = 0; bucket < slots.pending.length; bucket++) {
    const candidate = slots.pending[bucket];
    if (candidate !== undefined) {
      if (candidate.traceId !== undefined && candidate.spanId !== undefined) {
        slots.shown[bucket] = {
          bucket,
          value: candidate.value,
          timeMs: candidate.timeMs,
          traceId: candidate.traceId,
          spanId: candidate.spanId,
        };
        slots.pending[bucket] = undefined;
        slots.stale[bucket] = false;
      } else {
        slots.stale[bucket] = true;
      }
    }
    const shown = slots.shown[bucket];
    if (shown !== undefined) out.push(shown);
  }
  return out;
}
