import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type HttpBridgeProcess,
  deleteBridgeQueue,
  startBridgeWithHttp,
} from '../support/bridgeProcess.js';
import {
  AMQP_URL,
  type CeleryWorker,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { OtlpReceiver, taskSpansOf } from '../support/OtlpReceiver.js';
import { parsePrometheus, sumOf, type PrometheusFamily } from '../support/prometheusText.js';
import { until } from '../support/testUtils.js';

/**
 * Issue 14 with a real Celery 5.2.6 worker on RabbitMQ: custom task events from user code
 * (`self.send_event('task-progress', ...)`) on the task span, and the metrics from its events and
 * heartbeats: failures by exception type, oldest running age, prefetched, loadavg, processed.
 */
describe('custom task events and worker metrics with a real worker', () => {
  const queue = randomName('custom');
  const bridgeQueue = randomName('bridge-custom');
  let receiver: OtlpReceiver;
  let worker: CeleryWorker;
  let bridge: HttpBridgeProcess;

  const scrape = async (): Promise<PrometheusFamily[]> =>
    parsePrometheus(await (await fetch(`${bridge.httpUrl}/metrics`)).text());

  beforeAll(async () => {
    await requireBroker('amqp');
    receiver = await OtlpReceiver.start();
    bridge = await startBridgeWithHttp([], {
      CELERY_BROKER_URL: AMQP_URL,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
    });
    await bridge.waitForLog(/"msg":"consuming/);
    worker = await startCeleryWorker({
      brokerUrl: AMQP_URL,
      queue,
      pool: 'prefork',
      concurrency: 1,
    });
  }, 60_000);

  afterAll(async () => {
    await bridge?.stop();
    await worker?.stop();
    await receiver?.close();
    await deleteTestQueue(AMQP_URL, queue).catch(() => undefined);
    await deleteBridgeQueue(AMQP_URL, bridgeQueue);
  });

  it("puts the task's task-progress events on its span", async () => {
    const { progress: id } = (await produce(AMQP_URL, queue, 'progress')) as { progress: string };
    await receiver.waitForSpans((all) => taskSpansOf(all, id).length > 0, 30_000);
    const [span] = taskSpansOf(receiver.spans, id);
    expect(span?.attributes['celery.task.state']).toBe('SUCCESS');
    const events = span?.events.filter((e) => e.name === 'task-progress') ?? [];
    expect(events.map((e) => e.attributes)).toEqual(
      [1, 2, 3].map((current) => ({ current, total: 3, stage: `step ${current}` })),
    );
    // Nothing about them was rejected.
    const families = await scrape();
    expect(
      sumOf(families, 'celery_otel_bridge_events_total', { celery_event_type: 'task-custom' }),
    ).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('reports failures by exception type, the running task age, prefetched, loadavg and processed', async () => {
    const { fail } = (await produce(AMQP_URL, queue, 'fail')) as { fail: string };
    await receiver.waitForSpans((all) => taskSpansOf(all, fail).length > 0, 30_000);
    // One running (concurrency 1) and one waiting behind it, prefetched by the worker.
    await produce(AMQP_URL, queue, 'slow');
    await produce(AMQP_URL, queue, 'slow');
    const families = await until(
      'the running slow task and the prefetched one in /metrics',
      async () => {
        const found = await scrape();
        const running = sumOf(found, 'celery_tasks_oldest_age', {
          celery_task_name: 'proj.slow',
          celery_task_state: 'running',
        });
        const prefetched = sumOf(found, 'celery_worker_tasks_prefetched', {
          celery_worker_hostname: worker.hostname,
        });
        return running > 0.5 && prefetched >= 1 ? found : undefined;
      },
      30_000,
    );
    expect(
      sumOf(families, 'celery_task_exceptions_total', {
        celery_task_name: 'proj.fail',
        error_type: 'RuntimeError',
      }),
    ).toBe(1);
    const loadavg = (period: string): number =>
      sumOf(families, 'celery_worker_loadavg', {
        celery_worker_hostname: worker.hostname,
        celery_worker_loadavg_period: period,
      });
    // The worker's host is this machine, busy with the tests: some load over 15 minutes.
    expect(loadavg('15m')).toBeGreaterThan(0);
    expect(loadavg('1m') + loadavg('5m')).toBeGreaterThan(0);
    // The progress and fail tasks are done: the heartbeat counts them.
    // The wait is the assertion: it throws unless the worker's processed count reaches 2.
    await until(
      'a heartbeat counting the finished tasks',
      async () => {
        const value = sumOf(await scrape(), 'celery_worker_tasks_processed', {
          celery_worker_hostname: worker.hostname,
        });
        return value >= 2 ? value : undefined;
      },
      20_000,
    );
  }, 90_000);
});
