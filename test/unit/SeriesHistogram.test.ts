import type { Attributes } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  type HistogramMetricData,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { SeriesHistogram } from '../../src/metrics/SeriesHistogram.js';
import { seededRandom } from '../support/seededRandom.js';

const BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Seeded values: bucket edges exactly, between them, 0, negatives, huge, NaN. */
function values(seed: number, count: number): number[] {
  const next = seededRandom(seed);
  const out = [...BOUNDS, 0, -1, 1e9, Number.NaN, 0.0050000001];
  while (out.length < count)
    out.push(next() < 0.1 ? (BOUNDS[Math.floor(next() * 13)] ?? 0) : next() ** 3 * 100);
  return out;
}

/** What the SDK's own synchronous histogram reports for the same values and attributes. */
async function sdkPoints(
  recorded: Array<[number, Attributes]>,
  maxSeries: number,
): Promise<HistogramMetricData> {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({
    exporter,
    exportIntervalMillis: 1_000_000,
    cardinalityLimits: { default: maxSeries },
  });
  const provider = new MeterProvider({ readers: [reader] });
  const histogram = provider.getMeter('t').createHistogram('h', {
    unit: 's',
    description: 'd',
    advice: { explicitBucketBoundaries: BOUNDS },
  });
  for (const [value, attributes] of recorded) histogram.record(value, attributes);
  await reader.forceFlush();
  const metric = exporter.getMetrics()[0]?.scopeMetrics[0]?.metrics[0];
  await provider.shutdown();
  if (metric?.dataPointType !== DataPointType.HISTOGRAM) throw new Error('no SDK histogram');
  return metric;
}

function comparable(metric: HistogramMetricData) {
  return metric.dataPoints
    .map((p) => ({ attributes: p.attributes, value: p.value }))
    .sort((a, b) => JSON.stringify(a.attributes).localeCompare(JSON.stringify(b.attributes)));
}

describe('SeriesHistogram', () => {
  it('reports the same points as the SDK histogram for the same values', async () => {
    const all = values(7, 5000);
    const recorded: Array<[number, Attributes]> = all.map((value, i) => [
      value,
      {
        'celery.task.name': `task${i % 5}`,
        'celery.task.outcome': i % 3 === 0 ? 'failure' : 'success',
      },
    ]);
    const ours = new SeriesHistogram({
      name: 'h',
      unit: 's',
      description: 'd',
      boundaries: BOUNDS,
      maxSeries: 2000,
    });
    for (const [value, attributes] of recorded) {
      ours.record(JSON.stringify(attributes), () => attributes, value);
    }
    const mine = ours.toMetricData([1, 0]);
    const sdk = await sdkPoints(recorded, 2000);
    expect(mine.descriptor).toMatchObject({ name: 'h', unit: 's', description: 'd' });
    expect(mine.aggregationTemporality).toBe(AggregationTemporality.CUMULATIVE);
    expect(comparable(mine)).toEqual(comparable(sdk));
    expect(mine.dataPoints).toHaveLength(10);
  });

  it('folds series past the cap into one overflow series, as the SDK does', async () => {
    const recorded: Array<[number, Attributes]> = values(3, 400).map((value, i) => [
      value,
      { 'celery.task.name': `task${i % 40}` },
    ]);
    const ours = new SeriesHistogram({
      name: 'h',
      unit: 's',
      description: 'd',
      boundaries: BOUNDS,
      maxSeries: 10,
    });
    for (const [value, attributes] of recorded) {
      ours.record(String(attributes['celery.task.name']), () => attributes, value);
    }
    const mine = comparable(ours.toMetricData([1, 0]));
    expect(mine.find((p) => p.attributes['otel.metric.overflow'] === true)).toBeDefined();
    // The SDK keeps limit - 1 series and the overflow series; ours keeps `maxSeries` of them:
    // compare totals, which must agree whatever the split.
    const sdk = comparable(await sdkPoints(recorded, 11));
    const total = (points: typeof mine) => points.reduce((sum, p) => sum + p.value.count, 0);
    expect(total(mine)).toBe(total(sdk));
    expect(mine).toHaveLength(11);
  });
});
