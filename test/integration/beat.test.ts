import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type HttpBridgeProcess,
  deleteBridgeQueue,
  startBridgeWithHttp,
} from '../support/bridgeProcess.js';
import { type CeleryBeat, celeryControl, startCeleryBeat } from '../support/celeryBeat.js';
import {
  AMQP_URL,
  type CeleryWorker,
  REDIS_URL,
  deleteTestQueue,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { OtlpReceiver, type ReceivedSpan, STATUS_CODE_ERROR } from '../support/OtlpReceiver.js';
import { histogramCount, parsePrometheus, sumOf } from '../support/prometheusText.js';
import { until } from '../support/testUtils.js';

/**
 * A real `celery beat` (Celery 5.2.6, beat companion loaded), a real prefork worker, the bridge as
 * its CLI and a real OTLP receiver, on the shared RabbitMQ and Redis. The app name (the companion's `app`),
 * entry names and the queue are random, and every assertion filters by them: other engineers'
 * events may be on the exchange.
 *
 * Tolerances are short so the test runs in about a minute; the outcomes below depend on them only
 * with wide margins (a run is late after 3 s in the queue, missed after 8 s).
 */
const TOLERANCE_MS = 8000;
const LATE_AFTER_MS = 3000;
const HEARTBEAT_S = 1;

const cases = [
  { broker: 'amqp' as const, url: AMQP_URL },
  { broker: 'redis' as const, url: REDIS_URL },
];

describe.each(cases)('celery beat runs as OpenTelemetry signals on $broker', ({ broker, url }) => {
  const queue = randomName('beat');
  const bridgeQueue = randomName('bridge-beat');
  const app = randomName('beatapp');
  const ok = randomName('every-2s');
  const bad = randomName('failing');
  let receiver: OtlpReceiver;
  let bridge: HttpBridgeProcess;
  let worker: CeleryWorker;
  let beat: CeleryBeat | undefined;

  const scrape = async (): Promise<ReturnType<typeof parsePrometheus>> => {
    const response = await fetch(`${bridge.httpUrl}/metrics`);
    expect(response.status).toBe(200);
    return parsePrometheus(await response.text());
  };
  const runs = (
    families: ReturnType<typeof parsePrometheus>,
    entry: string,
    outcome: string,
  ): number =>
    sumOf(families, 'celery_beat_runs_total', {
      celery_beat_app: app,
      celery_beat_entry: entry,
      celery_beat_outcome: outcome,
    });
  const runSpans = (entry: string): ReceivedSpan[] =>
    receiver.spans.filter(
      (s) => s.name === `beat/${entry}` && s.attributes['celery.beat.app'] === app,
    );

  beforeAll(async () => {
    await requireBroker(broker);
    receiver = await OtlpReceiver.start();
    bridge = await startBridgeWithHttp([], {
      CELERY_BROKER_URL: url,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '200',
      OTEL_METRICS_EXPORTER: 'prometheus',
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
      CELERY_OTEL_BRIDGE_BEAT_TOLERANCE_MS: String(TOLERANCE_MS),
      CELERY_OTEL_BRIDGE_BEAT_LATE_AFTER_MS: String(LATE_AFTER_MS),
      CELERY_OTEL_BRIDGE_BEAT_RUN_TIMEOUT_MS: '60000',
    });
    await bridge.waitForLog(/"msg":"(consuming|subscribed)/);
    worker = await startCeleryWorker({ brokerUrl: url, queue, concurrency: 2 });
    beat = await startCeleryBeat({
      brokerUrl: url,
      queue,
      appName: app,
      heartbeatS: HEARTBEAT_S,
      entries: {
        [ok]: { task: 'proj.add', seconds: 2, args: [1, 2] },
        [bad]: { task: 'proj.fail', seconds: 3 },
      },
    });
  }, 120_000);

  afterAll(async () => {
    await beat?.stop();
    await worker?.stop();
    await bridge?.stop();
    await receiver?.close();
    await deleteTestQueue(url, queue).catch(() => undefined);
    await deleteBridgeQueue(url, bridgeQueue);
  });

  it('counts on-time runs and failed ones, with the schedule, beat up and the next run', async () => {
    const families = await until(
      'two on-time runs and a failed one',
      async () => {
        const current = await scrape();
        return runs(current, ok, 'on_time') >= 2 && runs(current, bad, 'failed') >= 1
          ? current
          : undefined;
      },
      60_000,
    );
    expect(runs(families, ok, 'missed')).toBe(0);
    expect(runs(families, ok, 'failed')).toBe(0);
    expect(runs(families, bad, 'on_time')).toBe(0);
    expect(sumOf(families, 'celery_beat_up', { celery_beat_app: app })).toBe(1);
    const next = sumOf(families, 'celery_beat_next_run', {
      celery_beat_app: app,
      celery_beat_entry: ok,
    });
    // Due within one interval (2 s) of now, give or take the machine's load.
    expect(Math.abs(next - Date.now() / 1000)).toBeLessThan(30);
    const family = families.find((f) => f.name === 'celery_beat_since_last_success');
    expect(
      family?.metrics.some(
        (m) =>
          m.labels?.['celery_beat_entry'] === ok && m.labels['celery_task_name'] === 'proj.add',
      ),
    ).toBe(true);
    // One lateness (sent -> started) per run that started.
    const text = await (await fetch(`${bridge.httpUrl}/metrics`)).text();
    expect(
      histogramCount(text, 'celery_beat_lateness', { celery_beat_app: app, celery_beat_entry: ok }),
    ).toBeGreaterThanOrEqual(2);

    // Spans: each run in its task's trace, linked to the task span and to the run before it.
    const spans = await receiver.waitForSpans(() => runSpans(ok).length >= 2, 30_000);
    const okRuns = runSpans(ok);
    const run = okRuns[1] as ReceivedSpan;
    const taskId = run.attributes['celery.task.id'] as string;
    expect(run.attributes['celery.beat.outcome']).toMatch(/^(on_time|late)$/);
    expect(run.traceId).toBe(taskId.replaceAll('-', ''));
    const taskLink = run.links.find((l) => l.attributes['celery.link.type'] === 'beat_task');
    const taskSpan = await receiver.waitForSpans(
      (all) => all.some((s) => s.kind === 5 && s.attributes['celery.task.id'] === taskId),
      30_000,
    );
    const consumer = taskSpan.find(
      (s) => s.kind === 5 && s.attributes['celery.task.id'] === taskId,
    );
    expect(taskLink).toMatchObject({ traceId: consumer?.traceId, spanId: consumer?.spanId });
    const previous = run.links.find(
      (l) => l.attributes['celery.link.type'] === 'beat_previous_run',
    );
    expect(previous, 'link to the previous run').toBeDefined();
    expect(spans.some((s) => s.spanId === previous?.spanId)).toBe(true);
    const failed = runSpans(bad).find((s) => s.attributes['celery.beat.outcome'] === 'failed');
    expect(failed?.status.code).toBe(STATUS_CODE_ERROR);
  }, 120_000);

  it('a worker queue stopped makes runs late, then missed', async () => {
    // Stop consuming the queue briefly: the runs sent meanwhile wait, start late.
    await celeryControl(url, queue, worker.hostname, 'cancel_consumer', [queue]);
    await new Promise((resolve) => setTimeout(resolve, 5000));
    await celeryControl(url, queue, worker.hostname, 'add_consumer', [queue]);
    await until('a late run', async () => runs(await scrape(), ok, 'late') >= 1, 60_000);
    // Stop it for longer than the tolerance: runs sent meanwhile never start in time.
    const missedBefore = runs(await scrape(), ok, 'missed');
    await celeryControl(url, queue, worker.hostname, 'cancel_consumer', [queue]);
    await until(
      'a missed run',
      async () => runs(await scrape(), ok, 'missed') > missedBefore,
      60_000,
    );
    await celeryControl(url, queue, worker.hostname, 'add_consumer', [queue]);
    const missed = await receiver.waitForSpans(
      () => runSpans(ok).some((s) => s.attributes['celery.beat.missed_reason'] === 'not_started'),
      30_000,
    );
    expect(missed.length).toBeGreaterThan(0);
  }, 180_000);

  it('beat stopped: beat is gone, and its runs are missed within the tolerance', async () => {
    const before = runs(await scrape(), ok, 'missed');
    await beat?.stop();
    beat = undefined;
    const stoppedAt = Date.now();
    await until(
      'celery_beat_up 0',
      async () =>
        sumOf(await scrape(), 'celery_beat_up', { celery_beat_app: app }) === 0 || undefined,
      30_000,
    );
    const goneAfterMs = Date.now() - stoppedAt;
    await until(
      'runs missed while beat is gone',
      async () => runs(await scrape(), ok, 'missed') > before,
      TOLERANCE_MS + 30_000,
    );
    await receiver.waitForSpans(
      () =>
        runSpans(ok).some(
          (s) =>
            s.attributes['celery.beat.missed_reason'] === 'not_sent' &&
            s.attributes['celery.task.id'] === undefined,
        ),
      30_000,
    );
    // Figures for the report, not assertions (heartbeat 1 s, tolerance 8 s, 200 ms polling).
    console.log(
      `[${broker}] beat stopped -> celery_beat_up 0 after ${goneAfterMs} ms, first run missed as not sent (its span) after ${Date.now() - stoppedAt} ms`,
    );
    expect(bridge.logLines.some((line) => line.includes('celery beat is gone'))).toBe(true);
  }, 120_000);
  it('an entry removed from the schedule disappears from the metrics', async () => {
    expect(runs(await scrape(), bad, 'failed')).toBeGreaterThan(0);
    beat = await startCeleryBeat({
      brokerUrl: url,
      queue,
      appName: app,
      heartbeatS: HEARTBEAT_S,
      entries: { [ok]: { task: 'proj.add', seconds: 2, args: [1, 2] } },
    });
    await until(
      `the series of ${bad} gone`,
      async () => {
        const families = await scrape();
        const series = families
          .filter((f) => f.name.startsWith('celery_beat_'))
          .flatMap((f) => f.metrics)
          .filter((m) => m.labels?.['celery_beat_entry'] === bad);
        return series.length === 0 && runs(families, ok, 'on_time') > 0;
      },
      60_000,
    );
    expect(sumOf(await scrape(), 'celery_beat_up', { celery_beat_app: app })).toBe(1);
  }, 120_000);
});
