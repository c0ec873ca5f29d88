import { describe, expect, it } from 'vitest';
import { decodeEventBody } from '../../src/decode/decodeEventBody.js';
import {
  decodeKombuEnvelope,
  isDecodeRejection,
} from '../../src/brokers/redis/decodeKombuEnvelope.js';
import type { CeleryEvent } from '../../src/decode/CeleryEvent.js';
import type { DecodeRejection } from '../../src/shared/DecodeRejection.js';
import type { RawEventMessage } from '../../src/shared/RawEventMessage.js';
import { amqpFixtureMessages, redisFixturePayloads } from '../support/fixtures.js';
import { decodeAll } from '../support/pipeline.js';

function countTypes(events: CeleryEvent[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const event of events) counts[event.type] = (counts[event.type] ?? 0) + 1;
  return counts;
}

function decodeOne(
  message: Partial<RawEventMessage> & { body: Buffer },
  maxMessageBytes = 1 << 20,
) {
  const events: CeleryEvent[] = [];
  const rejections: DecodeRejection[] = [];
  decodeEventBody(
    { routingKey: 'task.multi', contentType: 'application/json', ...message },
    { maxMessageBytes },
    { event: (e) => events.push(e), reject: (r) => rejections.push(r) },
  );
  return { events, rejections };
}

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

describe('decodeEventBody on the captured RabbitMQ stream', () => {
  const { events, rejections } = decodeAll(amqpFixtureMessages());

  it('flattens task.multi lists and decodes every event', () => {
    expect(rejections).toEqual([]);
    expect(countTypes(events)).toEqual({
      'worker-online': 1,
      'worker-heartbeat': 18,
      'task-sent': 20,
      'task-received': 20,
      'task-started': 19,
      'task-succeeded': 16,
      'task-failed': 1,
      'task-retried': 2,
      'task-revoked': 1,
    });
  });

  it('keeps the fields the span model needs, typed', () => {
    const failed = events.find((e) => e.type === 'task-failed');
    expect(failed).toMatchObject({
      uuid: 'ac326b74-438b-4631-ac1e-812d1b3f24f0',
      exception: "RuntimeError('payment step failed')",
      hostname: 'w1@vm',
    });
    expect(failed && 'traceback' in failed ? failed.traceback : '').toContain(
      'The above exception was the direct cause of the following exception',
    );
    const sent = events.find((e) => e.type === 'task-sent');
    expect(sent).toMatchObject({
      name: 'proj.add',
      queue: 'celery',
      retries: 0,
      timestamp: 1795736645.1673448,
    });
    // JSON null parent means "no parent", not the string "null".
    expect(sent && 'parentId' in sent ? sent.parentId : 'x').toBeUndefined();
  });
});

describe('decodeKombuEnvelope on the captured Redis stream', () => {
  it('unwraps every envelope into the same kinds of events as on RabbitMQ', () => {
    const messages: RawEventMessage[] = [];
    for (const { channel, payload } of redisFixturePayloads()) {
      const decoded = decodeKombuEnvelope(payload, channel.slice(channel.lastIndexOf('/') + 1));
      if (isDecodeRejection(decoded)) throw new Error(decoded.detail);
      expect(decoded.routingKey).toBe(channel.slice(channel.lastIndexOf('/') + 1));
      messages.push(decoded);
    }
    const { events, rejections } = decodeAll(messages);
    expect(rejections).toEqual([]);
    const counts = countTypes(events);
    expect(counts['task-received']).toBe(20);
    expect(counts['task-failed']).toBe(1);
    expect(counts['task-retried']).toBe(2);
    expect(counts['task-revoked']).toBe(1);
  });

  it('decodes envelopes the same whether the body comes first (fast path) or not', () => {
    const fixtures = redisFixturePayloads();
    // The capture is what kombu writes: every envelope takes the body-first path.
    expect(
      fixtures.every(({ payload }) => payload.subarray(0, 10).toString() === '{"body": "'),
    ).toBe(true);
    for (const { channel, payload } of fixtures) {
      const parsed = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
      // Same envelope, body last and written by another JSON writer: the general path.
      const { body, ...rest } = parsed;
      const reordered = Buffer.from(JSON.stringify({ ...rest, body }));
      const key = channel.slice(channel.lastIndexOf('/') + 1);
      const fast = decodeKombuEnvelope(payload, key);
      const general = decodeKombuEnvelope(reordered, key);
      expect(fast).toEqual(general);
      expect(isDecodeRejection(fast)).toBe(false);
    }
  });

  it('takes the general path for a body with escapes, and for a nested "body" key', () => {
    const event = { type: 'task-started', uuid: 'ü"\\', timestamp: 1 };
    const plain = decodeKombuEnvelope(
      Buffer.from(
        `{"body": ${JSON.stringify(JSON.stringify(event))}, "content-type": "application/json", "properties": {}}`,
      ),
      'task.started',
    );
    expect(plain).toMatchObject({ routingKey: 'task.started', contentType: 'application/json' });
    expect(JSON.parse((plain as RawEventMessage).body.toString('utf8'))).toEqual(event);
    const nested = decodeKombuEnvelope(
      Buffer.from(
        `{"headers": {"body": "x"}, "body": "${Buffer.from(JSON.stringify(event)).toString('base64')}", "properties": {"body_encoding": "base64"}}`,
      ),
      'k',
    );
    expect(JSON.parse((nested as RawEventMessage).body.toString('utf8'))).toEqual(event);
    // Body first, no escapes and not base64 (body_encoding absent): the body's bytes as they are.
    const raw = decodeKombuEnvelope(
      Buffer.from('{"body": "{ü: 1}", "content-type": "application/json", "properties": {}}'),
      'k',
    );
    expect((raw as RawEventMessage).body.toString('utf8')).toBe('{ü: 1}');
    // Body first but broken after it: still a clear rejection.
    expect(decodeKombuEnvelope(Buffer.from('{"body": "eA==", oops'), 'k')).toMatchObject({
      reason: 'invalid_envelope',
    });
  });

  it('reads the routing key from the envelope, for channels without a routing-key suffix', () => {
    const body = Buffer.from(
      JSON.stringify({ type: 'task-started', uuid: 'a', timestamp: 1 }),
    ).toString('base64');
    const envelope = json({
      body,
      'content-type': 'application/json',
      'content-encoding': 'utf-8',
      headers: {},
      properties: {
        body_encoding: 'base64',
        delivery_info: { exchange: 'celeryev', routing_key: 'task.started' },
      },
    });
    const decoded = decodeKombuEnvelope(envelope, '');
    expect(isDecodeRejection(decoded)).toBe(false);
    expect(decoded).toMatchObject({ routingKey: 'task.started', contentType: 'application/json' });
  });

  it('rejects what is not an envelope, and passes the compression header on', () => {
    expect(decodeKombuEnvelope(Buffer.from('not json'), 'x')).toMatchObject({
      reason: 'invalid_envelope',
    });
    expect(decodeKombuEnvelope(json([1, 2]), 'x')).toMatchObject({ reason: 'invalid_envelope' });
    expect(decodeKombuEnvelope(json({ body: 3 }), 'x')).toMatchObject({
      reason: 'invalid_envelope',
    });
    const compressed = decodeKombuEnvelope(
      json({
        body: 'eA==',
        'content-type': 'application/json',
        headers: { compression: 'application/x-gzip' },
        properties: { body_encoding: 'base64' },
      }),
      'task.multi',
    );
    expect(isDecodeRejection(compressed)).toBe(false);
    if (!isDecodeRejection(compressed)) {
      expect(decodeOne(compressed).rejections[0]?.reason).toBe('compressed');
    }
  });
});

describe('decodeEventBody on bad input', () => {
  it('rejects pickle, msgpack and yaml with the Celery setting to change', () => {
    for (const contentType of [
      'application/x-python-serialize',
      'application/x-msgpack',
      'application/x-yaml',
    ]) {
      const { events, rejections } = decodeOne({
        contentType,
        body: Buffer.from([0x80, 0x04, 0x95]),
      });
      expect(events).toEqual([]);
      expect(rejections).toHaveLength(1);
      expect(rejections[0]?.reason).toBe('unsupported_content_type');
      expect(rejections[0]?.detail).toContain("event_serializer = 'json'");
      expect(rejections[0]?.detail).toContain(contentType);
    }
  });

  it('accepts a charset parameter on the JSON content type', () => {
    const { events } = decodeOne({
      contentType: 'application/json; charset=utf-8',
      body: json({ type: 'task-started', uuid: 'a', timestamp: 1.5 }),
    });
    expect(events).toHaveLength(1);
  });

  it('counts each bad event in a list and keeps the good ones', () => {
    const { events, rejections } = decodeOne({
      body: json([
        { type: 'task-started', uuid: 'good', timestamp: 1 },
        { type: 'task-started', timestamp: 1 },
        { type: 'task-started', uuid: 42, timestamp: 1 },
        { type: 'task-started', uuid: 'x', timestamp: 'yesterday' },
        { type: 'exploded', uuid: 'x', timestamp: 1 },
        { uuid: 'x', timestamp: 1 },
        'a string',
        null,
        [1],
        { type: 'worker-heartbeat', timestamp: 1 },
        { type: 'task-succeeded', uuid: 'good', timestamp: 2, runtime: 'fast', result: { no: 1 } },
      ]),
    });
    expect(events.map((e) => e.type)).toEqual(['task-started', 'task-succeeded']);
    // A wrongly typed optional field is dropped, not trusted.
    expect(events[1]).toMatchObject({ runtime: undefined, result: undefined });
    expect(rejections.map((r) => r.reason)).toEqual([
      'invalid_field',
      'invalid_field',
      'invalid_field',
      'unknown_event_type',
      'not_an_event',
      'not_an_event',
      'not_an_event',
      'not_an_event',
      'invalid_field',
    ]);
  });

  it('rejects invalid JSON, oversized messages and survives prototype keys and broken UTF-8', () => {
    expect(decodeOne({ body: Buffer.from('{"type": "task-') }).rejections[0]?.reason).toBe(
      'invalid_json',
    );
    expect(decodeOne({ body: Buffer.alloc(2048, 0x20) }, 1024).rejections[0]?.reason).toBe(
      'message_too_large',
    );
    const hostile = decodeOne({
      body: Buffer.from(
        '{"__proto__": {"polluted": true}, "constructor": {"prototype": {"x": 1}}, "type": "task-received", "uuid": "p", "timestamp": 1, "name": "n\xff"}',
        'latin1',
      ),
    });
    expect(hostile.events).toHaveLength(1);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    const nonUtf8 = decodeOne({
      body: Buffer.concat([
        Buffer.from('{"type":"task-received","uuid":"u","timestamp":1,"name":"a'),
        Buffer.from([0xff, 0xfe]),
        Buffer.from('"}'),
      ]),
    });
    expect(nonUtf8.events[0]).toMatchObject({ name: 'a\ufffd\ufffd' });
  });
});
