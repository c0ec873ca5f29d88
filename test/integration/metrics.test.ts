import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type HttpBridgeProcess,
  deleteBridgeQueue,
  startBridgeWithHttp,
} from '../support/bridgeProcess.js';
import {
  AMQP_URL,
  type CeleryWorker,
  REDIS_URL,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { OtlpReceiver } from '../support/OtlpReceiver.js';
import { histogramCount, parsePrometheus, sumOf } from '../support/prometheusText.js';
import { until } from '../support/testUtils.js';

/** What the broker itself says about a queue's length, to compare with the bridge's gauge. */
async function brokerQueueLength(broker: 'amqp' | 'redis', queue: string): Promise<number> {
  if (broker === 'amqp') {
    const connection = await amqp.connect(AMQP_URL);
    try {
      const channel = await connection.createChannel();
      return (await channel.checkQueue(queue)).messageCount;
    } finally {
      await connection.close();
    }
  }
  const redis = new Redis(REDIS_URL);
  try {
    return await redis.llen(queue);
  } finally {
    redis.disconnect();
  }
}

const cases = [
  { broker: 'amqp' as const, url: AMQP_URL, protocol: 'http/protobuf' },
  { broker: 'redis' as const, url: REDIS_URL, protocol: 'http/json' },
];

describe.each(cases)('metrics and health on $broker', ({ broker, url, protocol }) => {
  const queue = randomName(`metrics-${broker}`);
  const idleQueue = randomName(`idle-${broker}`);
  const bridgeQueue = randomName('bridge-metrics');
  let receiver: OtlpReceiver;
  let worker: CeleryWorker;
  let bridge: HttpBridgeProcess;

  const scrape = async (): Promise<string> => {
    const response = await fetch(`${bridge.httpUrl}/metrics`);
    expect(response.status).toBe(200);
    return response.text();
  };

  beforeAll(async () => {
    await requireBroker(broker);
    receiver = await OtlpReceiver.start();
    bridge = await startBridgeWithHttp([], {
      CELERY_BROKER_URL: url,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_METRIC_EXPORT_INTERVAL: '1000',
      OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: protocol,
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
      CELERY_OTEL_BRIDGE_QUEUES: idleQueue,
      CELERY_OTEL_BRIDGE_QUEUE_LENGTH_INTERVAL_MS: '300',
    });
    await bridge.waitForLog(/"msg":"(consuming|subscribed)/);
    worker = await startCeleryWorker({ brokerUrl: url, queue, pool: 'prefork', concurrency: 2 });
  }, 90_000);

  afterAll(async () => {
    await worker?.stop();
    await bridge?.stop();
    await receiver?.close();
    await deleteTestQueue(url, queue).catch(() => undefined);
    await deleteTestQueue(url, idleQueue).catch(() => undefined);
    await deleteBridgeQueue(url, bridgeQueue);
  });

  it('answers /healthz and /readyz', async () => {
    const health = await fetch(`${bridge.httpUrl}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${bridge.httpUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { ready: boolean }).ready).toBe(true);
  });

  it('counts the tasks actually run, with runtime and queue-wait histograms', async () => {
    await produce(url, queue, 'adds', ['5']);
    await produce(url, queue, 'fail');
    await produce(url, queue, 'flaky');
    const mine = { celery_worker_hostname: worker.hostname };
    const text = await until('all tasks counted', async () => {
      const current = await scrape();
      const families = parsePrometheus(current);
      const succeeded = sumOf(families, 'celery_tasks_total', {
        ...mine,
        celery_task_state: 'succeeded',
      });
      const failed = sumOf(families, 'celery_tasks_total', {
        ...mine,
        celery_task_state: 'failed',
      });
      return succeeded >= 6 && failed >= 1 ? current : undefined;
    });
    const families = parsePrometheus(text);
    expect(sumOf(families, 'celery_tasks_total', { ...mine, celery_task_state: 'succeeded' })).toBe(
      6,
    );
    expect(sumOf(families, 'celery_tasks_total', { ...mine, celery_task_state: 'failed' })).toBe(1);
    expect(sumOf(families, 'celery_tasks_total', { ...mine, celery_task_state: 'retried' })).toBe(
      2,
    );
    expect(sumOf(families, 'celery_tasks_total', { ...mine, celery_task_state: 'started' })).toBe(
      9,
    );
    expect(
      sumOf(families, 'celery_tasks_total', {
        celery_task_state: 'sent',
        messaging_destination_name: queue,
      }),
    ).toBe(9);
    expect(
      histogramCount(text, 'celery_task_runtime', { ...mine, celery_task_outcome: 'success' }),
    ).toBe(6);
    expect(
      histogramCount(text, 'celery_task_runtime', { ...mine, celery_task_outcome: 'failure' }),
    ).toBe(1);
    expect(
      histogramCount(text, 'celery_task_runtime', { ...mine, celery_task_outcome: 'retry' }),
    ).toBe(2);
    // Under their queue, every one: only task-sent names it, and the client publishes it after
    // the task, so the worker's events often come first (QueueLabelWait holds their counts).
    const inQueue = { ...mine, messaging_destination_name: queue };
    for (const [state, expected] of [
      ['received', 9],
      ['started', 9],
      ['succeeded', 6],
      ['failed', 1],
      ['retried', 2],
    ] as const) {
      expect(
        sumOf(families, 'celery_tasks_total', { ...inQueue, celery_task_state: state }),
        state,
      ).toBe(expected);
    }
    expect(histogramCount(text, 'celery_task_queue_wait', mine)).toBe(9);
    expect(sumOf(families, 'celery_worker_up', { celery_worker_hostname: worker.hostname })).toBe(
      1,
    );
    // No task id in any series (target_info's service.instance.id is the bridge's own UUID).
    const series = text.replace(/^target_info\{.*$/m, '');
    expect(series).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/);
  });

  it('reports the length of a queue with waiting tasks as the broker does', async () => {
    await produce(url, idleQueue, 'adds', ['4']);
    const fromBroker = await brokerQueueLength(broker, idleQueue);
    expect(fromBroker).toBe(4);
    await until('queue length 4', async () => {
      const families = parsePrometheus(await scrape());
      return sumOf(families, 'celery_queue_length', { messaging_destination_name: idleQueue }) ===
        fromBroker
        ? true
        : undefined;
    });
  });

  it('pushes metrics over OTLP too', async () => {
    // Cumulative: the latest request holds every instrument recorded so far.
    await until(
      'celery.tasks in an OTLP metrics request',
      () => Promise.resolve(receiver.metrics.some((m) => m.name === 'celery.tasks')),
      10_000,
    );
    expect(receiver.metrics).toContainEqual({ name: 'celery.tasks', unit: '{task}', kind: 'sum' });
    const requests = receiver.requests.filter((r) => r.path === '/v1/metrics');
    expect(new Set(requests.map((r) => r.contentType))).toEqual(
      new Set([protocol === 'http/json' ? 'application/json' : 'application/x-protobuf']),
    );
    expect(receiver.errors).toEqual([]);
  });

  it('reports a worker killed with kill -9 as down within 2 x heartbeat freq', async () => {
    const killedAt = Date.now();
    worker.kill9();
    await until(
      'worker down',
      async () => {
        const families = parsePrometheus(await scrape());
        return sumOf(families, 'celery_worker_up', { celery_worker_hostname: worker.hostname }) ===
          0 && (families.find((f) => f.name === 'celery_worker_up')?.metrics.length ?? 0) > 0
          ? true
          : undefined;
      },
      15_000,
    );
    // Celery's heartbeat freq is 2 s: down after at most 2 x 2 s without one, plus scrape slack.
    expect(Date.now() - killedAt).toBeLessThan(6_000);
  });
});
