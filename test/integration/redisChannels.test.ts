import { Redis } from 'ioredis';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type BridgeProcess, startBridge, startBridgeWithHttp } from '../support/bridgeProcess.js';
import {
  type CeleryWorker,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { OtlpReceiver, taskSpansOf } from '../support/OtlpReceiver.js';
import { parsePrometheus, sumOf } from '../support/prometheusText.js';

/**
 * The channel variants kombu's Redis transport can produce (kombu/transport/redis.py
 * `_get_publish_topic`): with and without the routing key in the channel (`fanout_patterns`),
 * with a `global_keyprefix`, on another database. Each case runs a real worker configured that
 * way and checks the bridge, configured to match, turns its events into spans.
 */
const variants = [
  { name: 'defaults on db 0', db: 0, transport: {}, flags: [] as string[] },
  {
    name: 'fanout_patterns off',
    db: 0,
    transport: { fanout_patterns: false },
    flags: [] as string[],
  },
  {
    name: 'global_keyprefix on db 2',
    db: 2,
    transport: { global_keyprefix: 'tenant-a:' },
    flags: ['--redis-global-keyprefix', 'tenant-a:'],
  },
  {
    name: 'fanout_prefix off',
    db: 0,
    transport: { fanout_prefix: false },
    flags: ['--redis-fanout-prefix', 'false'],
  },
];

describe('Redis channel variants', () => {
  let receiver: OtlpReceiver;
  let worker: CeleryWorker | undefined;
  let bridge: BridgeProcess | undefined;
  let cleanup: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    await requireBroker('redis');
    receiver = await OtlpReceiver.start();
    return () => receiver.close();
  });

  afterEach(async () => {
    await worker?.stop();
    await bridge?.stop();
    await cleanup?.();
    worker = undefined;
    bridge = undefined;
    cleanup = undefined;
  });

  it.each(variants)('exports tasks with $name', async ({ db, transport, flags }) => {
    const url = `redis://127.0.0.1:6379/${db}`;
    const queue = randomName('chan');
    const extraEnv = { CELERY_BROKER_TRANSPORT_OPTIONS: JSON.stringify(transport) };
    cleanup = () => deleteTestQueue(url, queue).catch(() => undefined);
    bridge = startBridge(flags, {
      CELERY_BROKER_URL: url,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    await bridge.waitForLog(/"msg":"subscribed/);
    worker = await startCeleryWorker({ brokerUrl: url, queue, pool: 'solo', extraEnv });
    const sent = (await produce(url, queue, 'chain', [], extraEnv)) as { chain: string[] };
    const spans = await receiver.waitForSpans((all) =>
      sent.chain.every((id) => taskSpansOf(all, id).length > 0),
    );
    const chain = sent.chain.map((id) => taskSpansOf(spans, id)[0]);
    expect(chain.map((s) => s?.attributes['messaging.system'])).toEqual([
      'redis',
      'redis',
      'redis',
    ]);
    expect(chain[1]?.parentSpanId).toBe(chain[0]?.spanId);
    expect(chain[2]?.parentSpanId).toBe(chain[1]?.spanId);
  });

  it('counts a broken message on the event channel and keeps going', async () => {
    const url = 'redis://127.0.0.1:6379/0';
    const running = await startBridgeWithHttp([], {
      CELERY_BROKER_URL: url,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    });
    bridge = running;
    await running.waitForLog(/"msg":"subscribed/);
    const publisher = new Redis(url);
    try {
      await publisher.publish('/0.celeryev/task.multi', 'not a kombu envelope');
      await publisher.publish(
        '/0.celeryev/task.multi',
        JSON.stringify({
          body: Buffer.from('gAR9lC4=').toString('base64'),
          'content-type': 'application/x-python-serialize',
          properties: { body_encoding: 'base64' },
        }),
      );
    } finally {
      publisher.disconnect();
    }
    await running.waitForLog(/invalid_envelope/);
    await running.waitForLog(/unsupported_content_type/);
    const families = parsePrometheus(await (await fetch(`${running.httpUrl}/metrics`)).text());
    const rejected = (reason: string): number =>
      sumOf(families, 'celery_otel_bridge_events_rejected_total', { reason });
    expect(rejected('invalid_envelope')).toBe(1);
    expect(rejected('unsupported_content_type')).toBe(1);
    expect(running.child.exitCode).toBeNull();
  });
});
