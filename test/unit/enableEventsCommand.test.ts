import { describe, expect, it } from 'vitest';
import { parseBrokerUrl } from '../../src/config/brokerUrl.js';
import {
  decodeKombuEnvelope,
  isDecodeRejection,
} from '../../src/brokers/redis/decodeKombuEnvelope.js';
import { Logger } from '../../src/log/Logger.js';
import { commandHeaders, enableEventsCommand } from '../../src/brokers/ControlPublisher.js';
import { EnableEventsBroadcaster } from '../../src/brokers/EnableEventsBroadcaster.js';
import { AmqpControlPublisher } from '../../src/brokers/amqp/AmqpControlPublisher.js';
import {
  RedisControlPublisher,
  redisControlEnvelope,
} from '../../src/brokers/redis/RedisControlPublisher.js';

/**
 * What Celery 5.2.6 / kombu 5.2.4 put on the wire for `app.control.enable_events()`, captured on
 * this machine: on Redis with `redis-cli psubscribe '/0.celery.pidbox*'`, on RabbitMQ from a queue
 * bound to `celery.pidbox` (amqplib `fields` / `properties` / content).
 */
const CELERY_REDIS_CHANNEL = '/0.celery.pidbox';
const CELERY_REDIS_ENVELOPE =
  '{"body": "eyJtZXRob2QiOiAiZW5hYmxlX2V2ZW50cyIsICJhcmd1bWVudHMiOiB7fSwgImRlc3RpbmF0aW9uIjogbnVsbCwgInBhdHRlcm4iOiBudWxsLCAibWF0Y2hlciI6IG51bGx9", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"clock": 1, "expires": 1795747260.6424155}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "celery.pidbox", "routing_key": ""}, "priority": 0, "body_encoding": "base64", "delivery_tag": "84b1dd34-5e45-4e8b-8faa-edafe3943098"}}';
const CELERY_AMQP = {
  fields: { exchange: 'celery.pidbox', routingKey: '' },
  properties: {
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: { clock: 1, expires: 1795747271.8257458 },
    deliveryMode: 2,
    priority: 0,
  },
  content:
    '{"method": "enable_events", "arguments": {}, "destination": null, "pattern": null, "matcher": null}',
};

const quiet = new Logger('error', () => undefined);

describe('the enable_events broadcast', () => {
  it('has the body Celery sends, with no reply_to or ticket', () => {
    expect(enableEventsCommand()).toEqual(JSON.parse(CELERY_AMQP.content));
    expect(Object.keys(enableEventsCommand())).not.toContain('reply_to');
  });

  it("carries kombu's clock and expires (now + Control.broadcast's 1 s timeout) headers", () => {
    expect(commandHeaders(7, 1_795_747_260_000)).toEqual({ clock: 7, expires: 1_795_747_261 });
  });

  it("wraps it on Redis in kombu's envelope exactly as kombu does", () => {
    const ours = JSON.parse(
      redisControlEnvelope(
        'celery.pidbox',
        enableEventsCommand(),
        { clock: 1, expires: 1795747260.6424155 },
        '84b1dd34-5e45-4e8b-8faa-edafe3943098',
      ),
    ) as Record<string, unknown>;
    const celerys = JSON.parse(CELERY_REDIS_ENVELOPE) as Record<string, unknown>;
    // The body differs only in JSON spacing (Python's `, ` and `: `); it decodes to the same.
    const decode = (envelope: Record<string, unknown>): unknown =>
      JSON.parse(Buffer.from(String(envelope['body']), 'base64').toString('utf8'));
    expect(decode(ours)).toEqual(decode(celerys));
    expect({ ...ours, body: undefined }).toEqual({ ...celerys, body: undefined });
    // And the bridge's own kombu envelope decoder reads it like any kombu message.
    const decoded = decodeKombuEnvelope(Buffer.from(JSON.stringify(ours)), '');
    expect(isDecodeRejection(decoded)).toBe(false);
    if (!isDecodeRejection(decoded)) {
      expect(decoded.contentType).toBe('application/json');
      expect(JSON.parse(decoded.body.toString('utf8'))).toEqual(enableEventsCommand());
    }
  });

  it('publishes to <control_exchange>.pidbox, on Redis behind the same prefixes as events', () => {
    const redis = (url: string, controlExchange: string, globalKeyPrefix = '') =>
      new RedisControlPublisher(
        parseBrokerUrl(url),
        controlExchange,
        { globalKeyPrefix, fanoutPrefix: `/${parseBrokerUrl(url).db}.` },
        quiet,
      );
    const amqp = new AmqpControlPublisher(parseBrokerUrl('amqp://localhost//'), 'celery', quiet);
    expect(amqp.exchange).toBe(CELERY_AMQP.fields.exchange);
    expect(redis('redis://localhost:6379/0', 'celery').channel).toBe(CELERY_REDIS_CHANNEL);
    expect(redis('redis://localhost:6379/3', 'myapp', 'tenant:').channel).toBe(
      'tenant:/3.myapp.pidbox',
    );
  });

  it('reports an unreachable broker as a failed broadcast, never as an exception', async () => {
    const broker = parseBrokerUrl('redis://127.0.0.1:1/0');
    const broadcaster = new EnableEventsBroadcaster(
      new RedisControlPublisher(
        broker,
        'celery',
        { globalKeyPrefix: '', fanoutPrefix: '/0.' },
        quiet,
      ),
      { brokerUrl: broker.redactedUrl, intervalMs: 60_000 },
      quiet,
    );
    expect(await broadcaster.broadcastOnce()).toBe(false);
    expect(broadcaster.sent).toBe(0);
    await broadcaster.stop();
  });
});
