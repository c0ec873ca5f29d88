import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { afterEach, describe, expect, it } from 'vitest';
import { TaskAssembler } from '../../src/assemble/TaskAssembler.js';
import { isTaskEvent, isWorkerEvent } from '../../src/decode/CeleryEvent.js';
import { taskSpans } from '../../src/export/taskSpans.js';
import { HttpServer } from '../../src/http/HttpServer.js';
import { Logger } from '../../src/log/Logger.js';
import { BridgeMetricProducer } from '../../src/metrics/BridgeMetricProducer.js';
import { BridgeMetrics } from '../../src/metrics/BridgeMetrics.js';
import { MetricLabels } from '../../src/metrics/MetricLabels.js';
import {
  type ExemplarHistogramDataPoint,
  SeriesHistogram,
} from '../../src/metrics/SeriesHistogram.js';
import { prefersOpenMetrics, serveMetrics } from '../../src/metrics/serveMetrics.js';
import { TaskExemplars } from '../../src/metrics/TaskExemplars.js';
import { WorkerLiveness } from '../../src/assemble/WorkerLiveness.js';
import { BridgeStats } from '../../src/telemetry/BridgeStats.js';
import { amqpFixtureMessages } from '../support/fixtures.js';
import { ASSEMBLER_OPTIONS, SPAN_OPTIONS, decodeAll } from '../support/pipeline.js';

/** What Prometheus 2.42 sends (scrape/scrape.go `scrapeAcceptHeader`). */
const PROMETHEUS_ACCEPT =
  'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,' +
  'text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

const servers: HttpServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
});

/** The real pipeline on the captured stream: assembler -> spans -> exemplars, as Bridge wires it. */
async function pipeline(): Promise<{ url: string; traceIds: Set<string>; spanIds: Set<string> }> {
  const stats = new BridgeStats(new Logger('error'));
  const traceIds = new Set<string>();
  const spanIds = new Set<string>();
  const assembler: TaskAssembler = new TaskAssembler(
    ASSEMBLER_OPTIONS,
    (task) => {
      const context = taskSpans(task, SPAN_OPTIONS)[0]!.spanContext();
      traceIds.add(context.traceId);
      spanIds.add(context.spanId);
      metrics.onTaskExported(task.record.id, context.traceId, context.spanId);
    },
    stats,
  );
  const producer = new BridgeMetricProducer((now) => metrics.collect(now), {
    name: 'test',
    version: '0',
  });
  const prometheus = new PrometheusExporter({
    preventServerStart: true,
    metricProducers: [producer],
  });
  const provider = new MeterProvider({ readers: [prometheus] });
  const metrics: BridgeMetrics = new BridgeMetrics(provider.getMeter('test'), {
    stats,
    labels: new MetricLabels(1000, { mode: 'hostname' }),
    liveness: new WorkerLiveness(60_000, 100),
    forEachInFlight: (visit) => assembler.forEachInFlight(visit),
    inFlightCount: () => assembler.inFlightCount,
    queueLengths: () => new Map(),
    brokerConnected: () => true,
  });
  for (const event of decodeAll(amqpFixtureMessages()).events) {
    if (isTaskEvent(event)) {
      metrics.onTaskEvent(event, assembler.peek(event.uuid), Date.now);
      assembler.handle(event);
    } else if (isWorkerEvent(event)) metrics.onWorkerEvent(event);
  }
  assembler.flushHeld();
  const server = new HttpServer('127.0.0.1', 0, {
    metrics: (request, response) => serveMetrics(prometheus, request, response),
    readiness: () => ({ ready: true, detail: 'test' }),
  });
  servers.push(server);
  const port = await server.start();
  return { url: `http://127.0.0.1:${port}/metrics`, traceIds, spanIds };
}

/** Sample lines only, exemplars cut off: `name{labels} value`. */
function samples(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.replace(/ # \{.*$/, ''))
    .sort();
}

describe('OpenMetrics exposition with exemplars', () => {
  it('serves OpenMetrics when Prometheus asks for it, and the SDK text format otherwise', async () => {
    const { url } = await pipeline();
    const om = await fetch(url, { headers: { accept: PROMETHEUS_ACCEPT } });
    expect(om.headers.get('content-type')).toMatch(
      /^application\/openmetrics-text; version=1\.0\.0/,
    );
    const omText = await om.text();
    expect(omText.endsWith('\n# EOF\n')).toBe(true);
    const plain = await fetch(url);
    expect(plain.headers.get('content-type')).toBe('text/plain');
    const plainText = await plain.text();
    expect(plainText).not.toContain('# EOF');
    expect(plainText).not.toContain('trace_id');
    // The same series and values whichever format was negotiated (gauges of memory aside,
    // which move between the two scrapes).
    const stable = (lines: string[]) => lines.filter((l) => !l.startsWith('process_memory_usage'));
    expect(stable(samples(omText))).toEqual(stable(samples(plainText)));
    // Counter families are named without _total in OpenMetrics; samples keep it.
    expect(omText).toContain('# TYPE celery_tasks counter\n');
    expect(omText).toMatch(/^celery_tasks_total\{/m);
    expect(omText).not.toContain('# UNIT');
  });

  it("puts task spans' trace ids on runtime and queue-wait buckets, each value inside its bucket", async () => {
    const { url, traceIds, spanIds } = await pipeline();
    const text = await (await fetch(url, { headers: { accept: PROMETHEUS_ACCEPT } })).text();
    const exemplarLines = text.split('\n').filter((line) => line.includes(' # {'));
    const families = new Set<string>();
    const previous = new Map<string, number>();
    for (const line of text.split('\n')) {
      const bucket =
        /^(\w+)_bucket\{(.*),le="([^"]+)"\} \d+(?: # \{trace_id="(\w+)",span_id="(\w+)"\} (\S+) (\S+))?$/.exec(
          line,
        );
      if (bucket === null) continue;
      const [, name, labels, le, traceId, spanId, value, time] = bucket;
      const lower = previous.get(`${name}{${labels}}`) ?? -Infinity;
      const upper = le === '+Inf' ? Infinity : Number(le);
      previous.set(`${name}{${labels}}`, upper);
      if (traceId === undefined) continue;
      families.add(name!);
      expect(traceIds.has(traceId), `${traceId} is an exported task span's trace`).toBe(true);
      expect(spanIds.has(spanId!)).toBe(true);
      expect(Number(value)).toBeGreaterThan(lower);
      expect(Number(value)).toBeLessThanOrEqual(upper);
      expect(Math.abs(Number(time) * 1000 - Date.now())).toBeLessThan(60_000);
    }
    expect([...families].sort()).toEqual(['celery_task_queue_wait', 'celery_task_runtime']);
    expect(exemplarLines.length).toBeGreaterThan(0);
    // The failure series has its own exemplar: a failing task is always one click away.
    expect(exemplarLines.some((l) => l.includes('celery_task_outcome="failure"'))).toBe(true);
    // The lag histogram has no task to point at.
    expect(text).not.toMatch(/^celery_otel_bridge_lag_bucket.* # \{/m);
  });
});

describe('SeriesHistogram exemplars', () => {
  const histogram = () =>
    new SeriesHistogram({
      name: 'h',
      unit: 's',
      description: 'd',
      boundaries: [1, 10],
      maxSeries: 10,
    });
  const exemplarsOf = (h: SeriesHistogram) =>
    (h.toMetricData([0, 0]).dataPoints[0] as ExemplarHistogramDataPoint).exemplars ?? [];

  it('keeps the slowest observation of each bucket per collection, shown once its span exists', () => {
    const h = histogram();
    const pending = new TaskExemplars(100);
    const record = (task: string, value: number) =>
      h.record(
        '',
        () => ({}),
        value,
        (v) => pending.candidate(task, v, 1000),
      );
    record('a', 0.5);
    record('b', 0.9);
    record('c', 0.7);
    record('d', 5);
    expect(exemplarsOf(h)).toEqual([]); // no span yet: nothing to link to
    pending.resolve('b', 'tb', 'sb');
    pending.resolve('c', 'tc', 'sc'); // c was never the bucket's candidate
    expect(exemplarsOf(h)).toEqual([
      { bucket: 0, value: 0.9, timeMs: 1000, traceId: 'tb', spanId: 'sb' },
    ]);
    // d survived a collection unresolved: any later observation of its bucket replaces it.
    record('e', 2);
    pending.resolve('d', 'td', 'sd');
    pending.resolve('e', 'te', 'se');
    expect(exemplarsOf(h).map((e) => e.traceId)).toEqual(['tb', 'te']);
    // A new period: a faster observation than the one shown still becomes the new exemplar.
    record('f', 0.1);
    pending.resolve('f', 'tf', 'sf');
    expect(exemplarsOf(h).map((e) => [e.bucket, e.traceId])).toEqual([
      [0, 'tf'],
      [1, 'te'],
    ]);
    // Only a, replaced in its slot before its task was exported, still waits (until exported
    // or pushed out by the bound).
    expect(pending.size).toBe(1);
  });

  it('forgets the oldest waiting task past its bound', () => {
    const pending = new TaskExemplars(2);
    pending.candidate('a', 1, 0);
    pending.candidate('b', 1, 0);
    const late = pending.candidate('c', 1, 0);
    expect(pending.size).toBe(2);
    pending.resolve('a', 't', 's');
    pending.resolve('c', 'tc', 'sc');
    expect(late.traceId).toBe('tc');
    expect(pending.size).toBe(1);
  });
});

describe('prefersOpenMetrics', () => {
  it.each([
    [PROMETHEUS_ACCEPT, true],
    ['application/openmetrics-text; version=0.0.1', true],
    [undefined, false],
    ['text/plain;version=0.0.4', false],
    ['*/*', false],
    ['text/plain, application/openmetrics-text;q=0.5', false],
    ['application/openmetrics-text;q=0, text/plain;q=0.1', false],
    ['application/openmetrics-text;q=0.9, */*;q=0.1', true],
  ])('%s -> %s', (accept, expected) => {
    expect(prefersOpenMetrics(accept)).toBe(expected);
  });
});
