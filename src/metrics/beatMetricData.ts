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
 * Names and attributes are a documented contract (docs/periodic-tasks.md).
 */
export function beatMetricData(tracker: BeatTracker, nowS: number, now: HrTime): MetricData[] {
  const runs: SumMetricData['dataPoints'] = [];
  const lateness: HistogramMetricData['dataPoints'] = [];
  const sinceSuccess: StateGauge['points'][number][] = [];
  const nextRun: StateGauge['points'][number][] = [];
  const up: StateGauge['points'][number][] = [];
  for (const app of tracker.apps.values()) {
    if (app.lastHeartbeatAt !== undefined)
      up.push({ attributes: { 'celery.beat.app': app.name }, value: app.up ? 1 : 0 });
    for (const entry of app.entries.values()) {
      const attributes = entryAttributes(entry);
      const startTime = hrTime(entry.since);
      for (const outcome of BEAT_OUTCOMES) {
        runs.push({
          attributes: { ...attributes, 'celery.beat.outcome': outcome },
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
    attributes: { reason },
    startTime: hrTime(tracker.createdAt),
    endTime: now,
    value,
  }));
  return [
    sum('celery.beat.runs', '{run}', 'Beat runs by outcome: on_time, late, missed, failed', runs),
    {
      descriptor: {
        name: 'celery.beat.lateness',
        unit: 's',
        description: 'Time from beat sending a run to its task starting',
        valueType: ValueType.DOUBLE,
      },
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: lateness,
    },
    gaugeMetricData(
      {
        name: 'celery.beat.since_last_success',
        unit: 's',
        description: 'Time since the last run of the entry that succeeded (seen by this bridge)',
        points: sinceSuccess,
      },
      now,
    ),
    gaugeMetricData(
      {
        name: 'celery.beat.next_run',
        unit: 's',
        description: 'When the next run of the entry is expected (Unix time)',
        points: nextRun,
      },
      now,
    ),
    gaugeMetricData(
      {
        name: 'celery.beat.up',
        unit: '1',
        description: '1 while celery beat heartbeats (gone after twice its interval without one)',
        points: up,
      },
      now,
    ),
    gaugeMetricData(
      {
        name: 'celery_otel_bridge.beat.entries',
        unit: '{entry}',
        description: 'Beat schedule entries tracked (at most --beat-max-entries)',
        points: [{ attributes: {}, value: tracker.entries }],
      },
      now,
    ),
    sum(
      'celery_otel_bridge.beat.untracked',
      '{item}',
      'Beat entries, apps or waiting runs not tracked because a bound was reached, by reason',
      untracked,
    ),
  ];
}

function entryAttributes(entry: Entry): Attributes {
  const attributes: Attributes = {
    'celery.beat.app': entry.app.name,
    'celery.beat.entry': entry.name,
  };
  if (entry.task !== undefined) attributes['celery.task.name'] = entry.task;
  return attributes;
}

function sum(
  name: string,
  unit: string,
  description: string,
  dataPoints: SumMetricData['dataPoints'],
): SumMetricData {
  return {
    descriptor: { name, unit, description, valueType: ValueType.DOUBLE },
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.SUM,
    isMonotonic: true,
    dataPoints,
  };
}
