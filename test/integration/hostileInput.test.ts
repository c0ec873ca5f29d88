import amqp from 'amqplib';
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
import { parsePrometheus, sumOf } from '../support/prometheusText.js';
import { peakRssMiB } from '../support/testUtils.js';

/**
 * A corpus of broken and hostile input published on the real `celeryev` exchange: the bridge
 * must survive all of it with bounded memory, count each kind by reason, and keep tracing the
 * real tasks that follow.
 */
describe('hostile input through RabbitMQ', () => {
  const queue = randomName('hostile');
  const bridgeQueue = randomName('bridge-hostile');
  let receiver: OtlpReceiver;
  let worker: CeleryWorker;
  let bridge: HttpBridgeProcess;
  let connection: amqp.ChannelModel;

  beforeAll(async () => {
    await requireBroker('amqp');
    receiver = await OtlpReceiver.start();
    bridge = await startBridgeWithHttp([], {
      CELERY_BROKER_URL: AMQP_URL,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '200',
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
      CELERY_OTEL_BRIDGE_MAX_IN_FLIGHT_TASKS: '20000',
      CELERY_OTEL_BRIDGE_METRICS_MAX_TASK_NAMES: '100',
    });
    await bridge.waitForLog(/"msg":"consuming/);
    connection = await amqp.connect(AMQP_URL);
    worker = await startCeleryWorker({ brokerUrl: AMQP_URL, queue, pool: 'solo' });
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    await bridge?.stop();
    await receiver?.close();
    await connection.close();
    await deleteBridgeQueue(AMQP_URL, bridgeQueue);
    await deleteTestQueue(AMQP_URL, queue).catch(() => undefined);
  });

  it('survives the corpus, counts it by reason, bounds memory and keeps tracing', async () => {
    const channel = await connection.createChannel();
    const publish = (
      body: Buffer | string,
      contentType = 'application/json',
      routingKey = 'task.multi',
    ): void => {
      channel.publish('celeryev', routingKey, Buffer.isBuffer(body) ? body : Buffer.from(body), {
        contentType,
        contentEncoding: 'utf-8',
      });
    };
    const now = Date.now() / 1000;
    publish('{"type": "task-received", "uuid": ');
    publish(JSON.stringify([{ type: 'task-started', uuid: 42, timestamp: 'soon' }, { type: 7 }]));
    publish(JSON.stringify({ type: 'task-received', timestamp: now, name: 'no.uuid' }));
    publish(JSON.stringify({ type: 'exploded', uuid: 'x', timestamp: now }));
    publish(Buffer.from([0xff, 0xfe, 0x7b, 0x22, 0x80]));
    publish(
      '{"__proto__": {"polluted": 1}, "constructor": {"prototype": {"p": 1}}, "type": "task-received", "uuid": "proto-1", "timestamp": 1, "name": "proto.task"}',
    );
    publish(Buffer.from([0x80, 0x04, 0x95]), 'application/x-python-serialize');
    publish(Buffer.from([0x81, 0xa4]), 'application/x-msgpack');
    // 100k events in one list, each a distinct task with a distinct random name.
    const flood = Array.from({ length: 100_000 }, (_, i) => ({
      type: 'task-received',
      uuid: `flood-${i}`,
      timestamp: now,
      name: `random.name.${i}.${Math.random().toString(36).slice(2)}`,
      hostname: 'hostile@test',
    }));
    publish(JSON.stringify(flood));
    // A 10 MB traceback.
    const traceback = `Traceback (most recent call last):\n${'  File "/x.py", line 1, in f\n'.repeat(360_000)}RuntimeError: huge`;
    publish(
      JSON.stringify([
        {
          type: 'task-received',
          uuid: 'huge-tb',
          timestamp: now,
          name: 'proj.huge',
          hostname: 'hostile@test',
        },
        { type: 'task-started', uuid: 'huge-tb', timestamp: now + 0.1, hostname: 'hostile@test' },
        {
          type: 'task-failed',
          uuid: 'huge-tb',
          timestamp: now + 0.2,
          exception: "RuntimeError('huge')",
          traceback,
          hostname: 'hostile@test',
        },
      ]),
    );
    await channel.close();

    // Real work afterwards is still traced.
    const { adds } = (await produce(AMQP_URL, queue, 'adds', ['3'])) as { adds: string[] };
    const spans = await receiver
      .waitForSpans(
        (all) =>
          adds.every((id) => taskSpansOf(all, id).length > 0) &&
          all.some((s) => s.attributes['celery.task.id'] === 'huge-tb'),
        60_000,
      )
      .catch(async (error: unknown) => {
        const metrics = await (await fetch(`${bridge.httpUrl}/metrics`)).text();
        throw new Error(
          `${String(error)}\n--- bridge ---\n${bridge.logLines.join('\n')}\n--- metrics ---\n${metrics
            .split('\n')
            .filter((l) => l.startsWith('celery_otel_bridge'))
            .join('\n')}`,
        );
      });
    const [huge] = taskSpansOf(spans, 'huge-tb');
    const stack = String(
      huge?.events.find((e) => e.name === 'exception')?.attributes['exception.stacktrace'],
    );
    expect(stack.length).toBeLessThanOrEqual(32768);
    expect(stack.endsWith('RuntimeError: huge')).toBe(true);

    const families = parsePrometheus(await (await fetch(`${bridge.httpUrl}/metrics`)).text());
    const rejected = (reason: string): number =>
      sumOf(families, 'celery_otel_bridge_events_rejected_total', { reason });
    expect(rejected('invalid_json')).toBeGreaterThanOrEqual(2);
    expect(rejected('invalid_field')).toBeGreaterThanOrEqual(2);
    expect(rejected('not_an_event')).toBeGreaterThanOrEqual(1);
    expect(rejected('unknown_event_type')).toBeGreaterThanOrEqual(1);
    expect(rejected('unsupported_content_type')).toBe(2);
    expect(sumOf(families, 'celery_otel_bridge_tasks_evicted_total')).toBeGreaterThanOrEqual(
      80_000,
    );
    expect(sumOf(families, 'celery_otel_bridge_tasks_tracked')).toBeLessThanOrEqual(20_000);
    expect(sumOf(families, 'celery_otel_bridge_metrics_task_name_overflow_total')).toBeGreaterThan(
      0,
    );
    const names = new Set(
      families
        .find((f) => f.name === 'celery_tasks_total')
        ?.metrics.map((m) => m.labels?.['celery_task_name']),
    );
    expect(names.size).toBeLessThanOrEqual(102);

    const peak = peakRssMiB(bridge.child.pid ?? 0);
    process.stdout.write(`hostile corpus: bridge peak RSS ${peak.toFixed(0)} MiB\n`);
    expect(peak).toBeLessThan(1024);
    expect(bridge.child.exitCode).toBeNull();
  }, 120_000);
});
