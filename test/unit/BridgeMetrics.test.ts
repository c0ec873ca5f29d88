import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { afterEach, describe, expect, it } from 'vitest';
import { TaskAssembler } from '../../src/assemble/TaskAssembler.js';
import {
  isTaskEvent,
  isWorkerEvent,
  type CeleryEvent,
  type WorkerEvent,
} from '../../src/decode/CeleryEvent.js';
import { HttpServer } from '../../src/http/HttpServer.js';
import { BridgeMetrics, MAX_QUEUE_LABEL_WAITS } from '../../src/metrics/BridgeMetrics.js';
import { MetricLabels } from '../../src/metrics/MetricLabels.js';
import { BridgeMetricProducer } from '../../src/metrics/BridgeMetricProducer.js';
import { WorkerLiveness } from '../../src/assemble/WorkerLiveness.js';
import { Logger } from '../../src/log/Logger.js';
import { BridgeStats } from '../../src/telemetry/BridgeStats.js';
import { SPAN_DROP_REASONS } from '../../src/shared/attributeSpecs.js';
import { METRIC_SPECS, type MetricSpec } from '../../src/shared/metricSpecs.js';
import { prometheusNames } from '../../src/shared/metricsTable.js';
import { amqpFixtureMessages } from '../support/fixtures.js';
import { ASSEMBLER_OPTIONS, decodeAll } from '../support/pipeline.js';
import {
  histogramCount,
  parsePrometheus,
  sumOf,
  type PrometheusFamily,
} from '../support/prometheusText.js';

interface Harness {
  feed(events: CeleryEvent[]): void;
  scrape(): Promise<PrometheusFamily[]>;
  lastText: () => string;
  advance(ms: number): void;
  labels: MetricLabels;
  stats: BridgeStats;
}

const servers: HttpServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
});

/** The real metric pipeline: assembler + BridgeMetrics + Prometheus exporter behind HttpServer. */
async function harness(
  options: {
    maxTaskNames?: number;
    strip?: RegExp;
    workerMode?: 'hostname' | 'off';
    /** The bridge's wall clock for ages (epoch ms). */
    epochMs?: () => number;
    /** When each event arrived (epoch ms); by default 50 ms after its timestamp. */
    arrivalMs?: () => number;
  } = {},
): Promise<Harness> {
  let now = 1_000_000;
  const stats = new BridgeStats(new Logger('error'));
  const assembler = new TaskAssembler(
    ASSEMBLER_OPTIONS,
    () => undefined,
    stats,
    () => now,
  );
  const labels = new MetricLabels(options.maxTaskNames ?? 1000, {
    mode: options.workerMode ?? 'hostname',
    strip: options.strip,
  });
  const liveness = new WorkerLiveness(60_000, 100, () => now);
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
    labels,
    liveness,
    forEachInFlight: (visit) => assembler.forEachInFlight(visit),
    forEachInFlightSince: (visit) => assembler.forEachInFlightSince(visit),
    maxExceptionTypes: options.maxTaskNames ?? 1000,
    nowMs: options.epochMs,
    inFlightCount: () => assembler.inFlightCount,
    queueLengths: () => new Map([['celery', 7]]),
  });
  const server = new HttpServer('127.0.0.1', 0, {
    metrics: (request, response) => prometheus.getMetricsRequestHandler(request, response),
    readiness: () => ({ ready: true, detail: 'test' }),
  });
  servers.push(server);
  const port = await server.start();
  let text = '';
  return {
    labels,
    stats,
    lastText: () => text,
    feed(events) {
      for (const event of events) {
        stats.event(event.type);
        if (isTaskEvent(event)) {
          metrics.onTaskEvent(
            event,
            assembler.peek(event.uuid),
            options.arrivalMs ?? (() => event.timestamp * 1000 + 50),
            assembler.isTerminalEcho(event),
          );
          assembler.handle(event);
        } else if (isWorkerEvent(event)) metrics.onWorkerEvent(event);
      }
    },
    async scrape() {
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(response.status).toBe(200);
      text = await response.text();
      return parsePrometheus(text);
    },
    advance(ms) {
      now += ms;
    },
  };
}

const fixture = decodeAll(amqpFixtureMessages()).events;

describe('BridgeMetrics through the Prometheus endpoint', () => {
  it('counts task events by state, as many as the captured stream holds', async () => {
    const h = await harness();
    h.feed(fixture);
    const families = await h.scrape();
    const count = (type: string) => fixture.filter((e) => e.type === type).length;
    expect(sumOf(families, 'celery_tasks_total', { celery_task_state: 'sent' })).toBe(
      count('task-sent'),
    );
    expect(sumOf(families, 'celery_tasks_total', { celery_task_state: 'succeeded' })).toBe(
      count('task-succeeded'),
    );
    expect(sumOf(families, 'celery_tasks_total', { celery_task_state: 'failed' })).toBe(1);
    expect(sumOf(families, 'celery_tasks_total', { celery_task_state: 'retried' })).toBe(2);
    expect(sumOf(families, 'celery_tasks_total', { celery_task_state: 'revoked' })).toBe(1);
    expect(
      sumOf(families, 'celery_tasks_total', {
        celery_task_name: 'proj.flaky',
        celery_task_state: 'started',
      }),
    ).toBe(3);
    // The queue comes from task-sent and sticks to the task's later events.
    expect(
      sumOf(families, 'celery_tasks_total', {
        celery_task_state: 'succeeded',
        messaging_destination_name: 'celery',
      }),
    ).toBe(count('task-succeeded'));
    expect(
      sumOf(families, 'celery_otel_bridge_events_total', {
        celery_event_type: 'worker_heartbeat',
      }) +
        sumOf(families, 'celery_otel_bridge_events_total', {
          celery_event_type: 'worker-heartbeat',
        }),
    ).toBe(18);
    for (const family of families) {
      for (const metric of family.metrics) {
        for (const value of Object.values(metric.labels ?? {}))
          expect(value).not.toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-/);
      }
    }
  });

  it("counts a task's events under its queue when its task-sent comes after them (the client publishes it after the task)", async () => {
    // Everything arrives within the grace of a count waiting for its queue.
    const arrival = Math.max(...fixture.map((e) => e.timestamp)) * 1000;
    const h = await harness({ arrivalMs: () => arrival });
    const sent = fixture.filter((e) => e.type === 'task-sent');
    const ids = new Set(sent.map((e) => (isTaskEvent(e) ? e.uuid : '')));
    // One task-sent first (so the bridge knows clients send them), every other one after the
    // task's own events, as when the worker's events overtake the client's.
    const [first, ...late] = sent;
    if (first === undefined) throw new Error('the fixture has no task-sent');
    const rest = fixture.filter((e) => e.type !== 'task-sent');
    h.feed([first, ...rest, ...late]);
    const families = await h.scrape();
    const count = (type: string) =>
      fixture.filter((e) => e.type === type && isTaskEvent(e) && ids.has(e.uuid)).length;
    for (const [type, state] of [
      ['task-received', 'received'],
      ['task-started', 'started'],
      ['task-succeeded', 'succeeded'],
    ] as const) {
      expect(count(type)).toBeGreaterThan(0);
      expect(
        sumOf(families, 'celery_tasks_total', {
          celery_task_state: state,
          messaging_destination_name: 'celery',
        }),
        state,
      ).toBe(count(type));
    }
  });

  it('counts them without a queue once no task-sent came within the grace', async () => {
    // One clock for arrivals and collections, moved by the test.
    let clock = Math.max(...fixture.map((e) => e.timestamp)) * 1000;
    const h = await harness({ arrivalMs: () => clock, epochMs: () => clock });
    const sent = fixture.find((e) => e.type === 'task-sent');
    if (sent === undefined || !isTaskEvent(sent)) throw new Error('the fixture has no task-sent');
    // The other tasks' task-sent never come.
    const rest = fixture.filter((e) => e.type !== 'task-sent');
    h.feed([sent, ...rest]);
    const received = rest.filter((e) => e.type === 'task-received');
    const last = received.at(-1);
    if (last === undefined) throw new Error('the fixture has no task-received');
    const ofSentTask = received.filter((e) => isTaskEvent(e) && e.uuid === sent.uuid).length;
    const receivedCounts = async (match: Record<string, string> = {}) =>
      sumOf(await h.scrape(), 'celery_tasks_total', { celery_task_state: 'received', ...match });
    // Within the grace only the sent task's counts are out; the rest wait.
    expect(ofSentTask).toBeLessThan(received.length);
    expect(await receivedCounts()).toBe(ofSentTask);
    // An event past the grace lets them out, without a queue; its own count waits in turn.
    clock += 3000;
    h.feed([last]);
    expect(await receivedCounts()).toBe(received.length);
    // A collection past its grace lets that one out too.
    clock += 3000;
    expect(await receivedCounts()).toBe(received.length + 1);
    expect(await receivedCounts({ messaging_destination_name: 'celery' })).toBe(ofSentTask);
  });

  it('counts at once, without a queue, past the tasks that may wait for one, and says how many', async () => {
    const arrival = Math.max(...fixture.map((e) => e.timestamp)) * 1000;
    const h = await harness({ arrivalMs: () => arrival });
    const sent = fixture.find((e) => e.type === 'task-sent');
    const received = fixture.find((e) => e.type === 'task-received');
    if (sent === undefined || received === undefined || !isTaskEvent(received))
      throw new Error('the fixture lacks a task-sent or a task-received');
    const bound = MAX_QUEUE_LABEL_WAITS;
    const flood = Array.from({ length: bound + 3 }, (_, i) => ({
      ...received,
      uuid: `flood-${i}`,
    }));
    h.feed([sent, ...flood]);
    const families = await h.scrape();
    expect(sumOf(families, 'celery_otel_bridge_task_counts_without_queue_total')).toBe(3);
    expect(sumOf(families, 'celery_tasks_total', { celery_task_state: 'received' })).toBe(
      bound + 3,
    );
  });

  it('has histograms with one runtime per finished attempt and one queue wait per start', async () => {
    const h = await harness();
    h.feed(fixture);
    const families = await h.scrape();
    const runtime = families.find((f) => f.name === 'celery_task_runtime');
    const wait = families.find((f) => f.name === 'celery_task_queue_wait');
    expect(runtime?.type).toBe('HISTOGRAM');
    const text = h.lastText();
    expect(histogramCount(text, 'celery_task_runtime', { celery_task_outcome: 'success' })).toBe(
      16,
    );
    expect(histogramCount(text, 'celery_task_runtime', { celery_task_outcome: 'failure' })).toBe(1);
    expect(histogramCount(text, 'celery_task_runtime', { celery_task_outcome: 'retry' })).toBe(2);
    expect(histogramCount(text, 'celery_task_runtime', { celery_task_name: 'proj.flaky' })).toBe(3);
    expect(wait?.type).toBe('HISTOGRAM');
    expect(histogramCount(text, 'celery_task_queue_wait')).toBe(
      fixture.filter((e) => e.type === 'task-started').length,
    );
    // Lag: one value per final event, the feed's clock 50 ms after each event's timestamp.
    const finals = fixture.filter((e) =>
      ['task-succeeded', 'task-failed', 'task-revoked', 'task-rejected'].includes(e.type),
    ).length;
    expect(finals).toBeGreaterThan(0);
    expect(histogramCount(text, 'celery_otel_bridge_lag')).toBe(finals);
    const lagSum = Number(/^celery_otel_bridge_lag_sum(?:\{.*\})? (\S+)$/m.exec(text)?.[1]);
    expect(lagSum).toBeCloseTo(finals * 0.05, 3);
  });

  it('reports workers up from heartbeats, down after 2 x freq, and forgets them', async () => {
    const h = await harness();
    const beat = (hostname: string, active: number): WorkerEvent => ({
      type: 'worker-heartbeat',
      hostname,
      timestamp: 1,
      freq: 2,
      active,
    });
    h.feed([beat('w1@a', 3), beat('w2@b', 0)]);
    let families = await h.scrape();
    expect(sumOf(families, 'celery_worker_up', { celery_worker_hostname: 'w1@a' })).toBe(1);
    expect(sumOf(families, 'celery_worker_tasks_active', { celery_worker_hostname: 'w1@a' })).toBe(
      3,
    );
    h.advance(3000);
    h.feed([beat('w2@b', 1)]);
    h.advance(1500);
    families = await h.scrape();
    expect(sumOf(families, 'celery_worker_up', { celery_worker_hostname: 'w1@a' })).toBe(0);
    expect(sumOf(families, 'celery_worker_up', { celery_worker_hostname: 'w2@b' })).toBe(1);
    h.feed([{ type: 'worker-offline', hostname: 'w2@b', timestamp: 2 }]);
    families = await h.scrape();
    expect(sumOf(families, 'celery_worker_up', { celery_worker_hostname: 'w2@b' })).toBe(0);
    h.advance(120_000);
    families = await h.scrape();
    const up = families.find((f) => f.name === 'celery_worker_up');
    expect(
      up?.metrics.filter((m) => m.labels?.['celery_worker_hostname'] === 'w1@a') ?? [],
    ).toHaveLength(0);
  });

  it('caps task names and never lets a flood of names grow series', async () => {
    const h = await harness({ maxTaskNames: 5 });
    const flood: CeleryEvent[] = Array.from({ length: 500 }, (_, i) => ({
      type: 'task-received',
      uuid: `id-${i}`,
      timestamp: 10 + i,
      name: `random.task.${i}`,
      hostname: 'w',
    }));
    h.feed(flood);
    const families = await h.scrape();
    const received = families.find((f) => f.name === 'celery_tasks_total')?.metrics ?? [];
    expect(new Set(received.map((m) => m.labels?.['celery_task_name'])).size).toBe(6);
    expect(sumOf(families, 'celery_tasks_total', { celery_task_name: '__other__' })).toBe(495);
    expect(
      sumOf(families, 'celery_otel_bridge_metrics_task_name_overflow_total'),
    ).toBeGreaterThanOrEqual(495);
  });

  it('strips pod suffixes from worker names or leaves workers out', async () => {
    const event: CeleryEvent = {
      type: 'task-received',
      uuid: 'x',
      timestamp: 1,
      name: 'proj.add',
      hostname: 'celery@worker-7d9f8b6c5-x2k4p',
    };
    const stripped = await harness({ strip: /-[a-z0-9]{8,10}-[a-z0-9]{5}$/g });
    stripped.feed([event]);
    expect(
      sumOf(await stripped.scrape(), 'celery_tasks_total', {
        celery_worker_hostname: 'celery@worker',
      }),
    ).toBe(1);
    const off = await harness({ workerMode: 'off' });
    off.feed([event]);
    const metric = (await off.scrape()).find((f) => f.name === 'celery_tasks_total')?.metrics[0];
    expect(metric?.labels?.['celery_worker_hostname']).toBeUndefined();
  });

  it('shows tasks in flight as waiting or running, and queue lengths', async () => {
    const h = await harness();
    h.feed([
      { type: 'task-received', uuid: 'a', timestamp: 1, name: 'proj.slow', hostname: 'w' },
      { type: 'task-received', uuid: 'b', timestamp: 1, name: 'proj.slow', hostname: 'w' },
      { type: 'task-started', uuid: 'b', timestamp: 2, hostname: 'w' },
    ]);
    const families = await h.scrape();
    expect(sumOf(families, 'celery_tasks_in_flight', { celery_task_state: 'waiting' })).toBe(1);
    expect(sumOf(families, 'celery_tasks_in_flight', { celery_task_state: 'running' })).toBe(1);
    expect(sumOf(families, 'celery_queue_length', { messaging_destination_name: 'celery' })).toBe(
      7,
    );
    expect(sumOf(families, 'celery_otel_bridge_tasks_tracked')).toBe(2);
  });
});

describe('metric label values a flood cannot hold for good', () => {
  const flood = (from: number, count: number): CeleryEvent[] =>
    Array.from({ length: count }, (_, i) => ({
      type: 'task-received' as const,
      uuid: `flood-${from + i}`,
      timestamp: 1,
      name: `made.up.${from + i}`,
      hostname: 'w',
    }));
  const real = (uuid: string): CeleryEvent => ({
    type: 'task-received',
    uuid,
    timestamp: 2,
    name: 'proj.real',
    hostname: 'w',
  });
  const namesOf = (families: PrometheusFamily[]): Set<string | undefined> =>
    new Set(
      families
        .find((f) => f.name === 'celery_tasks_total')
        ?.metrics.map((m) => m.labels?.['celery_task_name']),
    );

  it('keeps a flood out while it lasts, and gives real names their series once it went idle', async () => {
    const h = await harness({ maxTaskNames: 10 });
    h.feed(flood(0, 500));
    h.feed([real('r1')]);
    let families = await h.scrape();
    // During the flood: the first ten names have their places, everything else is __other__.
    expect(namesOf(families).has('proj.real')).toBe(false);
    expect(namesOf(families).has('__other__')).toBe(true);
    expect(namesOf(families).size).toBe(11);
    // Two collections without the flood's names (the flood's tasks still wait in flight).
    await h.scrape();
    await h.scrape();
    h.feed([real('r2')]);
    families = await h.scrape();
    expect(sumOf(families, 'celery_tasks_total', { celery_task_name: 'proj.real' })).toBe(1);
    // Both real tasks wait in flight, now under their own name.
    expect(sumOf(families, 'celery_tasks_in_flight', { celery_task_name: 'proj.real' })).toBe(2);
    // Still at most ten names (and __other__) at any time.
    expect(h.labels.currentTaskName('made.up.0')).toBe('__other__');
  });

  it('a name in use keeps its place through a flood', async () => {
    const h = await harness({ maxTaskNames: 10 });
    h.feed([real('r0')]);
    for (let round = 0; round < 4; round++) {
      h.feed(flood(round * 100, 100));
      h.feed([real(`r${round + 1}`)]);
      await h.scrape();
    }
    const families = await h.scrape();
    expect(sumOf(families, 'celery_tasks_total', { celery_task_name: 'proj.real' })).toBe(5);
  });
});

describe('issue 14 metrics: exceptions by type, oldest ages, prefetched, loadavg, processed', () => {
  const heartbeat = (extra: Partial<WorkerEvent> = {}): WorkerEvent => ({
    type: 'worker-heartbeat',
    hostname: 'w1@vm',
    timestamp: 100,
    freq: 2,
    active: 1,
    processed: 41,
    loadavg: [0.5, 0.25, 0.125],
    ...extra,
  });

  it('counts failures by task name and exception type, __other__ past the cap', async () => {
    const h = await harness({ maxTaskNames: 2 });
    const fail = (uuid: string, exception: string) =>
      ({
        type: 'task-failed',
        uuid,
        timestamp: 10,
        hostname: 'w1@vm',
        name: 'proj.fail',
        exception,
      }) as const;
    h.feed([
      fail('x1', "KeyError('a')"),
      fail('x2', "KeyError('b')"),
      fail('x3', "ValueError('c')"),
      fail('x4', "TypeError('d')"),
    ]);
    const families = await h.scrape();
    expect(sumOf(families, 'celery_task_exceptions_total', { celery_task_name: 'proj.fail' })).toBe(
      4,
    );
    expect(sumOf(families, 'celery_task_exceptions_total', { error_type: 'KeyError' })).toBe(2);
    expect(sumOf(families, 'celery_task_exceptions_total', { error_type: 'ValueError' })).toBe(1);
    expect(sumOf(families, 'celery_task_exceptions_total', { error_type: '__other__' })).toBe(1);
  });

  it("counts the captured stream's failure once, and a second task-failed of the same run not again", async () => {
    const h = await harness();
    const failed = fixture.filter((e) => e.type === 'task-failed');
    expect(failed).toHaveLength(1);
    h.feed(fixture.filter((e) => e.type !== 'task-failed'));
    // The first copy completes the task (exported); the second comes after it.
    h.feed([
      ...failed,
      { ...failed[0]!, timestamp: (failed[0] as { timestamp: number }).timestamp + 0.2 },
    ]);
    const families = await h.scrape();
    expect(sumOf(families, 'celery_task_exceptions_total', { celery_task_name: 'proj.fail' })).toBe(
      1,
    );
    expect(sumOf(families, 'celery_task_exceptions_total', { error_type: 'RuntimeError' })).toBe(1);
  });

  it('counts duplicate events, trace contexts not applied and broker disconnects', async () => {
    const h = await harness();
    const before = await h.scrape();
    expect(sumOf(before, 'celery_otel_bridge_events_duplicate_total')).toBe(0);
    // Each reason of a closed list is there at 0 before its first drop, so increase() sees it.
    const reasons = (family: string): string[] =>
      (before.find((f) => f.name === family)?.metrics ?? []).map((m) => m.labels?.['reason'] ?? '');
    expect(reasons('celery_otel_bridge_trace_contexts_dropped_total').sort()).toEqual([
      'evicted',
      'late',
    ]);
    expect(reasons('celery_otel_bridge_spans_dropped_total').sort()).toEqual(
      [...SPAN_DROP_REASONS].sort(),
    );
    const received = fixture.find((e) => e.type === 'task-received');
    const failed = fixture.find((e) => e.type === 'task-failed');
    if (received === undefined || failed === undefined) throw new Error('fixture incomplete');
    // A redelivered task-received of a task in flight, then the whole stream with a second
    // task-failed of its exported failure (a hard time limit sends two).
    h.feed([received, received]);
    h.feed(fixture.filter((e) => e !== received));
    h.feed([{ ...failed, timestamp: (failed as { timestamp: number }).timestamp + 0.2 }]);
    // The assembler's TraceTrees and the broker source report these (docs/companion.md).
    h.stats.traceContextsEvicted(3);
    h.stats.lateTraceContext();
    h.stats.brokerDisconnected();
    h.stats.brokerDisconnected();
    const families = await h.scrape();
    expect(sumOf(families, 'celery_otel_bridge_events_duplicate_total')).toBe(2);
    expect(
      sumOf(families, 'celery_otel_bridge_trace_contexts_dropped_total', { reason: 'evicted' }),
    ).toBe(3);
    expect(
      sumOf(families, 'celery_otel_bridge_trace_contexts_dropped_total', { reason: 'late' }),
    ).toBe(1);
    expect(sumOf(families, 'celery_otel_bridge_broker_disconnects_total')).toBe(2);
  });

  it('reports the oldest waiting and running task per name, and prefetched per worker', async () => {
    const h = await harness({ epochMs: () => 1000_000 });
    h.feed([
      heartbeat(),
      { type: 'task-received', uuid: 'w-old', timestamp: 900, hostname: 'w1@vm', name: 'proj.a' },
      { type: 'task-received', uuid: 'w-new', timestamp: 990, hostname: 'w1@vm', name: 'proj.a' },
      { type: 'task-received', uuid: 'r', timestamp: 500, hostname: 'w1@vm', name: 'proj.a' },
      { type: 'task-started', uuid: 'r', timestamp: 700, hostname: 'w1@vm' },
      // Waiting for an ETA in the future: not stuck (age 0).
      {
        type: 'task-received',
        uuid: 'eta',
        timestamp: 10,
        hostname: 'w1@vm',
        name: 'proj.b',
        eta: new Date(2000_000).toISOString(),
      },
      // A worker only task events name (no heartbeat): no prefetched series of its own.
      {
        type: 'task-received',
        uuid: 'ghost',
        timestamp: 990,
        hostname: 'forged@vm',
        name: 'proj.a',
      },
    ]);
    const families = await h.scrape();
    const age = (name: string, state: string) =>
      sumOf(families, 'celery_tasks_oldest_age', {
        celery_task_name: name,
        celery_task_state: state,
      });
    expect(age('proj.a', 'waiting')).toBe(100);
    expect(age('proj.a', 'running')).toBe(300);
    expect(age('proj.b', 'waiting')).toBe(0);
    // w-old, w-new, eta on w1; the running task is not prefetched.
    expect(
      sumOf(families, 'celery_worker_tasks_prefetched', { celery_worker_hostname: 'w1@vm' }),
    ).toBe(3);
    expect(h.lastText()).not.toMatch(/celery_worker_tasks_prefetched\{[^}]*forged@vm/);
  });

  it('exports loadavg and processed from heartbeats', async () => {
    const h = await harness();
    h.feed([heartbeat()]);
    const families = await h.scrape();
    expect(
      sumOf(families, 'celery_worker_tasks_processed', { celery_worker_hostname: 'w1@vm' }),
    ).toBe(41);
    expect(sumOf(families, 'celery_worker_loadavg', { celery_worker_loadavg_period: '1m' })).toBe(
      0.5,
    );
    expect(sumOf(families, 'celery_worker_loadavg', { celery_worker_loadavg_period: '5m' })).toBe(
      0.25,
    );
    expect(sumOf(families, 'celery_worker_loadavg', { celery_worker_loadavg_period: '15m' })).toBe(
      0.125,
    );
  });

  it('counts task-cancelled as state cancelled', async () => {
    const h = await harness();
    h.feed([{ type: 'task-cancelled', uuid: 'c', timestamp: 1, hostname: 'w1@vm' }]);
    const families = await h.scrape();
    expect(sumOf(families, 'celery_tasks_total', { celery_task_state: 'cancelled' })).toBe(1);
  });
});

describe('the metric tables', () => {
  async function readDoc(path: string): Promise<string> {
    const { readFile } = await import('node:fs/promises');
    return readFile(new URL(`../../${path}`, import.meta.url), 'utf8');
  }

  /** docs/metrics.md's metric table, between its markers. */
  async function metricTable(): Promise<string> {
    const doc = await readDoc('docs/metrics.md');
    const begin = doc.indexOf('<!-- metrics:begin -->');
    const end = doc.indexOf('<!-- metrics:end -->');
    expect(begin, 'docs/metrics.md metrics:begin marker').toBeGreaterThan(-1);
    expect(end, 'docs/metrics.md metrics:end marker').toBeGreaterThan(begin);
    return doc.slice(begin, end);
  }

  it('docs/metrics.md documents every Celery metric the endpoint serves', async () => {
    const table = await metricTable();
    const h = await harness({ epochMs: () => 1796_000_000_000 });
    h.feed([
      ...fixture,
      { type: 'worker-heartbeat', hostname: 'w1@vm', timestamp: 1, freq: 2, loadavg: [1, 2, 3] },
      { type: 'task-received', uuid: 'waiting', timestamp: 1, hostname: 'w1@vm', name: 'proj.a' },
    ]);
    const names = (await h.scrape())
      .map((family) => family.name)
      .filter((name) => name.startsWith('celery_') && !name.startsWith('celery_otel_bridge_'));
    for (const name of [
      'celery_task_exceptions_total',
      'celery_tasks_oldest_age',
      'celery_worker_tasks_prefetched',
      'celery_worker_tasks_processed',
      'celery_worker_loadavg',
    ]) {
      expect(names).toContain(name);
    }
    // A histogram's family is its base name; its samples are the _bucket, _sum and _count.
    const declared = new Set(
      Object.values(METRIC_SPECS).flatMap((spec: MetricSpec) =>
        spec.kind === 'histogram'
          ? [prometheusNames(spec)[0]?.replace(/_bucket$/, '')]
          : prometheusNames(spec),
      ),
    );
    for (const name of names) expect(declared.has(name), `${name} in metricSpecs.ts`).toBe(true);
    for (const name of names)
      expect(table, `docs/metrics.md row for ${name}`).toContain(`\`${name}`);
  });

  it('the README names only metrics of that table', async () => {
    const table = await metricTable();
    const readme = await readDoc('README.md');
    const start = readme.indexOf('\n## Metrics\n');
    expect(start, 'README section "Metrics"').toBeGreaterThan(-1);
    const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
    const named = [...section.matchAll(/`(celery_[a-z_]+)`/g)].map((match) => match[1] ?? '');
    expect(named.length).toBeGreaterThan(5);
    for (const name of named) {
      // A histogram is named by its family; the table spells out its `_bucket` series.
      expect(
        table.includes(`\`${name}\``) || table.includes(`\`${name}_bucket\``),
        `README names ${name}`,
      ).toBe(true);
    }
  });
});
