import { type Attributes, type HrTime, ValueType } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  type HistogramMetricData,
  type MetricData,
  type SumMetricData,
} from '@opentelemetry/sdk-metrics';
import { gaugeMetricData, type StateGauge } from './BridgeMetricProducer.js';
import { hrTime } from '../export/taskSpans.js';
import { BEAT_OUTCOMES } from '../beat/BeatRun.js';
import { ATTR } from '../shared/attributeSpecs.js';
import { METRIC_SPECS, type MetricSpec } from '../shared/metricSpecs.js';
import {
  type BeatTracker,
  type Entry,
  LATENESS_BUCKETS_S,
  type UntrackedReason,
} from '../beat/BeatTracker.js';

const BOUNDARIES = [...LATENESS_BUCKETS_S];

/**
 * The beat metrics at one collection, built from the tracker's state (through
 * BridgeMetricProducer, like the bridge's other computed metrics): an entry removed from the
 * schedule, and so from the tracker, has no series at the next collection, counters included.
 * Names and attributes are declared in metricSpecs.ts (a documented contract, docs/metrics.md).
 */
export function beatMetricData(tracker: BeatTracker, nowS: number, now: HrTime): MetricData[] {
  const runs: SumMetricData['dataPoints'] = [];
  const lateness: HistogramMetricData['dataPoints'] = [];
  const sinceSuccess: StateGauge['points'][number][] = [];
  const nextRun: StateGauge['points'][number][] = [];
  const up: StateGauge['points'][number][] = [];
  for (const app of tracker.apps.values()) {
    if (app.lastHeartbeatAt !== undefined)
      up.push({ attributes: { [ATTR.BEAT_APP]: app.name }, value: app.up ? 1 : 0 });
    for (const entry of app.entries.values()) {
      const attributes = entryAttributes(entry);
      const startTime = hrTime(entry.since);
      for (const outcome of BEAT_OUTCOMES) {
        runs.push({
          attributes: { ...attributes, [ATTR.BEAT_OUTCOME]: outcome },
          startTime,
          endTime: now,
          value: entry.runs[outcome],
        });
      }
      const series = entry.lateness;
      if (series !== undefined) {
        lateness.push({
          attributes,
          startTime,
          endTime: now,
          value: {
            buckets: { boundaries: BOUNDARIES, counts: [...series.counts] },
            count: series.count,
            sum: series.sum,
            min: series.min,
            max: series.max,
          },
        });
      }
      if (entry.lastSuccessAt !== undefined)
        sinceSuccess.push({ attributes, value: Math.max(0, nowS - entry.lastSuccessAt) });
      if (entry.nextDue !== undefined) nextRun.push({ attributes, value: entry.nextDue });
    }
  }
  const untracked: SumMetricData['dataPoints'] = (
    Object.entries(tracker.untracked) as [UntrackedReason, number][]
  ).map(([reason, value]) => ({
    attributes: { [ATTR.REASON]: reason },
    startTime: hrTime(tracker.createdAt),
    endTime: now,
    value,
  }));
  return [
    sum(METRIC_SPECS.beatRuns, runs),
    {
      descriptor: descriptorOf(METRIC_SPECS.beatLateness),
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: lateness,
    },
    gaugeMetricData(
      {
        ...METRIC_SPECS.beatSinceLastSuccess,
        points: sinceSuccess,
      },
      now,
    ),
    gaugeMetricData(
      {
        ...METRIC_SPECS.beatNextRun,
        points: nextRun,
      },
      now,
    ),
    gaugeMetricData(
      {
        ...METRIC_SPECS.beatUp,
        points: up,
      },
      now,
    ),
    gaugeMetricData(
      {
        ...METRIC_SPECS.beatEntries,
        points: [{ attributes: {}, value: tracker.entries }],
      },
      now,
    ),
    sum(METRIC_SPECS.beatUntracked, untracked),
  ];
}

function entryAttributes(entry: Entry): Attributes {
  const attributes: Attributes = {
    [ATTR.BEAT_APP]: entry.app.name,
    [ATTR.BEAT_ENTRY]: entry.name,
  };
  if (entry.task !== undefined) attributes[ATTR.TASK_NAME] = entry.task;
  return attributes;
}

function descriptorOf(spec: MetricSpec): HistogramMetricData['descriptor'] {
  return {
    name: spec.name,
    unit: spec.unit,
    description: spec.description,
    valueType: ValueType.DOUBLE,
  };
}

function sum(spec: MetricSpec, dataPoints: SumMetricData['dataPoints']): SumMetricData {
  return {
    descriptor: descriptorOf(spec),
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.SUM,
    isMonotonic: true,
    dataPoints,
  };
}
