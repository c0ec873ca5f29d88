// The metric declarations (src/shared/metricSpecs.ts) against what the bridge really emits, and
// the generated reference tables against the pages that hold them.
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { hrTime } from '@opentelemetry/core';
import {
  AggregationTemporality,
  DataPointType,
  MeterProvider,
  MetricReader,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import * as prettier from 'prettier';
import { describe, expect, it } from 'vitest';
import { BeatTracker } from '../../src/beat/BeatTracker.js';
import { beatMetricData } from '../../src/metrics/beatMetricData.js';
import { EventStreamDiagnosis } from '../../src/diagnose/EventStreamDiagnosis.js';
import { Logger } from '../../src/log/Logger.js';
import { BridgeMetrics } from '../../src/metrics/BridgeMetrics.js';
import { registerIntakeMetrics } from '../../src/metrics/IntakeMetrics.js';
import { MetricLabels } from '../../src/metrics/MetricLabels.js';
import { WorkerLiveness } from '../../src/assemble/WorkerLiveness.js';
import {
  GENERATED_DOC_FILES,
  GENERATED_SECTIONS,
  withGeneratedSections,
} from '../../src/shared/generatedDocs.js';
import { METRIC_SPECS, type MetricKind, type MetricSpec } from '../../src/shared/metricSpecs.js';
import { prometheusNames } from '../../src/shared/metricsTable.js';
import { ATTRIBUTE_SPECS } from '../../src/shared/attributeSpecs.js';
import { BridgeStats } from '../../src/telemetry/BridgeStats.js';

const SPECS: readonly MetricSpec[] = Object.values(METRIC_SPECS);

class CollectingReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

/** Every metric of a bridge whose sources all have something to report. */
async function everythingEmitted(): Promise<MetricData[]> {
  const logger = new Logger('error', () => undefined);
  const stats = new BridgeStats(logger);
  const reader = new CollectingReader();
  const provider = new MeterProvider({ readers: [reader] });
  const meter = provider.getMeter('test');
  const metrics = new BridgeMetrics(meter, {
    stats,
    labels: new MetricLabels(10, { mode: 'hostname' }),
    liveness: new WorkerLiveness(60_000, 10),
    forEachInFlight: () => undefined,
    forEachInFlightSince: () => undefined,
    inFlightCount: () => 0,
    inFlightBytes: () => 0,
    queueLengths: () => new Map(),
    brokerConnected: () => true,
  });
  registerIntakeMetrics(meter, {
    paused: () => false,
    pausedSeconds: () => 0,
    brokerBacklog: () => 0,
    bufferedBytes: () => 0,
    spansQueued: () => 0,
  });
  // The counters with an attribute have a series only once counted.
  stats.event('task-sent');
  stats.rejected({ reason: 'invalid_json', detail: 'test' }, 1);
  stats.truncated('name', 1);
  stats.dropped('queue_full', 1, 'test');
  stats.traceContextsEvicted(1);
  stats.internalError('test', new Error('test'));
  const now = hrTime();
  const tracker = new BeatTracker(
    { toleranceMs: 1000, lateAfterMs: 1000, runTimeoutMs: 1000, maxEntries: 10 },
    () => undefined,
    logger,
  );
  const sdk = await reader.collect();
  return [
    ...sdk.resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics),
    ...metrics.collect(now),
    ...beatMetricData(tracker, Date.now() / 1000, now),
    ...new EventStreamDiagnosis(logger).metrics(now),
  ];
}

function kindOf(data: MetricData): MetricKind | 'other' {
  if (data.dataPointType === DataPointType.HISTOGRAM) return 'histogram';
  if (data.dataPointType === DataPointType.GAUGE) return 'gauge';
  if (
    data.dataPointType === DataPointType.SUM &&
    data.isMonotonic &&
    data.aggregationTemporality === AggregationTemporality.CUMULATIVE
  )
    return 'counter';
  return 'other';
}

describe('metric declarations', () => {
  it('are what the bridge emits: every metric declared once, with its kind, unit and description', async () => {
    const emitted = await everythingEmitted();
    const names = emitted.map((data) => data.descriptor.name);
    expect(new Set(names).size, 'each metric made once').toBe(names.length);
    expect([...names].sort()).toEqual(SPECS.map((spec) => spec.name).sort());
    for (const data of emitted) {
      const spec = SPECS.find((s) => s.name === data.descriptor.name);
      expect(
        {
          kind: kindOf(data),
          unit: data.descriptor.unit,
          description: data.descriptor.description,
        },
        data.descriptor.name,
      ).toEqual({ kind: spec?.kind, unit: spec?.unit, description: spec?.description });
    }
  });

  it('record only the attributes they declare', async () => {
    const declared = new Set(ATTRIBUTE_SPECS.map((spec) => spec.name));
    for (const data of await everythingEmitted()) {
      const spec = SPECS.find((s) => s.name === data.descriptor.name);
      const allowed = new Set([...(spec?.attributes ?? []).map((a) => a.name)]);
      for (const point of data.dataPoints as { attributes: Record<string, unknown> }[]) {
        for (const key of Object.keys(point.attributes)) {
          expect(allowed.has(key), `${data.descriptor.name} ${key}`).toBe(true);
        }
      }
      for (const name of allowed) expect(declared.has(name), name).toBe(true);
    }
  });

  it('have distinct names and Prometheus spellings, and counted ones at most one attribute', () => {
    const prometheus = SPECS.flatMap(prometheusNames);
    expect(new Set(prometheus).size).toBe(prometheus.length);
    expect(new Set(SPECS.map((s) => s.name)).size).toBe(SPECS.length);
    for (const spec of SPECS.filter((s) => s.counted === true)) {
      expect(spec.kind, spec.name).toBe('counter');
      expect(spec.attributes.length, spec.name).toBeLessThanOrEqual(1);
    }
  });
});

describe('generated reference tables', () => {
  it('are up to date in every page that holds them (npm run docs writes them)', async () => {
    const found = new Set<string>();
    for (const path of GENERATED_DOC_FILES) {
      const url = new URL(`../../${path}`, import.meta.url);
      if (!existsSync(url)) continue;
      const text = await readFile(url, 'utf8');
      for (const section of GENERATED_SECTIONS) {
        if (text.includes(`<!-- ${section.marker}:begin -->`)) found.add(section.marker);
      }
      const config = (await prettier.resolveConfig(url.pathname)) ?? {};
      const expected = await prettier.format(withGeneratedSections(text), {
        ...config,
        filepath: url.pathname,
      });
      expect(text === expected, `${path} is out of date: run npm run docs`).toBe(true);
    }
    expect([...found].sort()).toEqual(GENERATED_SECTIONS.map((s) => s.marker).sort());
  });

  it('name every metric in docs/metrics.md, with its Prometheus spelling', async () => {
    const doc = await readFile(new URL('../../docs/metrics.md', import.meta.url), 'utf8');
    for (const spec of SPECS) {
      const row = doc.split('\n').find((line) => line.startsWith(`| \`${spec.name}\` `));
      expect(row, spec.name).toBeDefined();
      for (const name of prometheusNames(spec)) expect(row, spec.name).toContain(`\`${name}\``);
    }
  });

  it('are replaced whole between their markers', () => {
    const text = 'a\n<!-- metrics:begin -->\nstale\n<!-- metrics:end -->\nb\n';
    const out = withGeneratedSections(text);
    expect(out).not.toContain('stale');
    expect(out.startsWith('a\n<!-- metrics:begin -->\n')).toBe(true);
    expect(out.endsWith('<!-- metrics:end -->\nb\n')).toBe(true);
    expect(withGeneratedSections(out)).toBe(out);
    expect(() => withGeneratedSections('<!-- metrics:begin -->')).toThrow(/metrics:end/);
  });
});
