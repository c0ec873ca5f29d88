import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BridgeProcess,
  deleteBridgeQueue,
  startBridge,
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
import { OtlpReceiver, taskIdsWithSpans, taskSpansOf } from '../support/OtlpReceiver.js';
import { parsePrometheus, sumOf } from '../support/prometheusText.js';

/**
 * The bridge's own RabbitMQ queue: events published while the bridge is down are consumed when
 * it is back, and bad messages on the real exchange are counted and reported once, while the
 * good ones around them still become spans.
 */
describe('bridge queue on RabbitMQ', () => {
  const queue = randomName('amqpq');
  const bridgeQueue = randomName('bridge-q');
  let receiver: OtlpReceiver;
  let worker: CeleryWorker;
  let bridge: BridgeProcess | undefined;
  let connection: amqp.ChannelModel;

  const env = (): Record<string, string> => ({
    CELERY_BROKER_URL: AMQP_URL,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '100',
    CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
  });

  beforeAll(async () => {
    await requireBroker('amqp');
    receiver = await OtlpReceiver.start();
    connection = await amqp.connect(AMQP_URL);
    worker = await startCeleryWorker({ brokerUrl: AMQP_URL, queue, pool: 'solo' });
  }, 60_000);

  afterAll(async () => {
    await bridge?.stop();
    await worker?.stop();
    await connection.close();
    await deleteBridgeQueue(AMQP_URL, bridgeQueue);
    await deleteTestQueue(AMQP_URL, queue).catch(() => undefined);
    await receiver?.close();
  });

  it('reports undecodable events once, counts them, and keeps serving the rest', async () => {
    const running = await startBridgeWithHttp([], env());
    bridge = running;
    await running.waitForLog(/"msg":"consuming/);
    const channel = await connection.createChannel();
    const publish = (body: Buffer, contentType: string, routingKey = 'task.multi'): void => {
      channel.publish('celeryev', routingKey, body, { contentType, contentEncoding: 'utf-8' });
    };
    for (let i = 0; i < 5; i++)
      publish(Buffer.from([0x80, 0x04, 0x95, i]), 'application/x-python-serialize');
    publish(Buffer.from('{"type": "task-rec'), 'application/json');
    publish(
      Buffer.from(
        JSON.stringify([
          { type: 'task-started' },
          42,
          // Not a task-* type (those are custom task events): unknown, counted quietly.
          { type: 'bogus', uuid: 'x', timestamp: Date.now() / 1000 },
        ]),
      ),
      'application/json',
    );
    await channel.close();
    const sent = (await produce(AMQP_URL, queue, 'adds', ['3'])) as { adds: string[] };
    await receiver.waitForSpans((spans) =>
      sent.adds.every((id) => taskIdsWithSpans(spans).has(id)),
    );
    const rejectedLines = running.logLines.filter((line) =>
      line.includes('"msg":"event rejected"'),
    );
    const pickleLines = rejectedLines.filter((line) => line.includes('unsupported_content_type'));
    expect(pickleLines).toHaveLength(1);
    expect(pickleLines[0]).toContain("event_serializer = 'json'");
    expect(rejectedLines.some((line) => line.includes('invalid_json'))).toBe(true);
    expect(rejectedLines.some((line) => line.includes('unknown_event_type'))).toBe(false);
    const families = parsePrometheus(await (await fetch(`${running.httpUrl}/metrics`)).text());
    const rejected = (reason: string): number =>
      sumOf(families, 'celery_otel_bridge_events_rejected_total', { reason });
    expect(rejected('unsupported_content_type')).toBe(5);
    expect(rejected('invalid_json')).toBe(1);
    expect(rejected('unknown_event_type')).toBe(1);
  });

  it('consumes the events published while it was stopped when it comes back', async () => {
    expect(await bridge?.stop()).toBe(0);
    const whileDown = (await produce(AMQP_URL, queue, 'adds', ['5'])) as { adds: string[] };
    // Let the worker run them all while no bridge consumes.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(whileDown.adds.some((id) => taskIdsWithSpans(receiver.spans).has(id))).toBe(false);
    bridge = startBridge([], env());
    await bridge.waitForLog(/"msg":"consuming/);
    const spans = await receiver.waitForSpans((all) =>
      whileDown.adds.every((id) => taskIdsWithSpans(all).has(id)),
    );
    for (const id of whileDown.adds) {
      const [span] = taskSpansOf(spans, id);
      expect(span?.attributes['celery.task.state']).toBe('SUCCESS');
      expect(span?.attributes['celery.task.incomplete']).toBeUndefined();
    }
  });

  it('declares its queue again and keeps consuming when the queue is deleted under it', async () => {
    const running = bridge as BridgeProcess;
    const before = (await produce(AMQP_URL, queue, 'adds', ['3'])) as { adds: string[] };
    await receiver.waitForSpans((all) => before.adds.every((id) => taskIdsWithSpans(all).has(id)));
    const channel = await connection.createChannel();
    await channel.deleteQueue(bridgeQueue);
    // RabbitMQ cancels the consumer; the read thread reports it and consumes on a new channel.
    await running.waitForLog(/"msg":"consuming .* after [0-9.]+ s away"/);
    await channel.checkQueue(bridgeQueue);
    await channel.close();
    const after = (await produce(AMQP_URL, queue, 'adds', ['4'])) as { adds: string[] };
    const spans = await receiver.waitForSpans((all) =>
      after.adds.every((id) => taskIdsWithSpans(all).has(id)),
    );
    for (const id of after.adds) {
      expect(taskSpansOf(spans, id)[0]?.attributes['celery.task.state']).toBe('SUCCESS');
    }
    // An acknowledgement meant for the cancelled channel, applied to the new one, would close it
    // with PRECONDITION_FAILED (unknown delivery tag).
    expect(running.logLines.filter((line) => /PRECONDITION|channel error/i.test(line))).toEqual([]);
    expect(running.logLines.filter((line) => line.includes('cancelled the consumer'))).toHaveLength(
      1,
    );
  });
});
