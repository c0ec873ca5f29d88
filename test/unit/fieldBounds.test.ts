import { describe, expect, it } from 'vitest';
import { type CeleryEvent, type TaskEvent, isTaskEvent } from '../../src/decode/CeleryEvent.js';
import { decodeEventBody } from '../../src/decode/decodeEventBody.js';
import type { DecodeRejection } from '../../src/shared/DecodeRejection.js';
import { MAX_NAME_LENGTH, cutName } from '../../src/decode/fieldBounds.js';
import { amqpFixtureMessages } from '../support/fixtures.js';

const NOW = 1_764_000_000; // epoch seconds of the fake arrival clock

function decode(body: unknown, clock: (() => number) | null = () => NOW) {
  const events: CeleryEvent[] = [];
  const rejections: DecodeRejection[] = [];
  const truncated = new Map<string, number>();
  decodeEventBody(
    {
      routingKey: 'task.multi',
      contentType: 'application/json',
      body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
    },
    { maxMessageBytes: 64 << 20, maxFieldLength: 1000, nowEpochSeconds: clock ?? undefined },
    {
      event: (e) => events.push(e),
      reject: (r) => rejections.push(r),
      truncated: (field, count) => truncated.set(field, (truncated.get(field) ?? 0) + count),
    },
  );
  return { events, rejections, truncated: Object.fromEntries(truncated) };
}

const huge = (length: number, char = 'x'): string => char.repeat(length);

describe('event fields bounded at intake', () => {
  it('cuts names, hosts, queues, exchanges and routing keys to 255 characters and counts each', () => {
    const { events, truncated } = decode({
      type: 'task-sent',
      uuid: 't1',
      timestamp: NOW,
      name: huge(1 << 20),
      hostname: huge(1 << 20, 'h'),
      queue: huge(300, 'q'),
      exchange: huge(256, 'e'),
      routing_key: huge(100_000, 'r'),
    });
    const event = events[0] as TaskEvent;
    for (const value of [
      event.name,
      event.hostname,
      event.queue,
      event.exchange,
      event.routingKey,
    ]) {
      expect(value?.length).toBe(MAX_NAME_LENGTH);
      expect(value?.endsWith('…')).toBe(true);
    }
    expect(truncated).toEqual({ name: 1, hostname: 1, queue: 1, exchange: 1, routing_key: 1 });
  });

  it('keeps names that fit as they are, and counts nothing for the captured real events', () => {
    const name = huge(MAX_NAME_LENGTH, 'n');
    expect(decode({ type: 'task-sent', uuid: 't', timestamp: NOW, name }).events[0]).toMatchObject({
      name,
    });
    const truncated = new Map<string, number>();
    for (const message of amqpFixtureMessages()) {
      decodeEventBody(
        message,
        { maxMessageBytes: 1 << 20, maxFieldLength: 32768 },
        {
          event: () => undefined,
          reject: () => undefined,
          truncated: (field) => truncated.set(field, 1),
        },
      );
    }
    expect([...truncated.keys()]).toEqual([]);
  });

  it('drops ids, eta, expires and signum that are too long to be real, and counts them', () => {
    const { events, truncated } = decode([
      {
        type: 'task-sent',
        uuid: 'a',
        timestamp: NOW,
        root_id: huge(257),
        parent_id: huge(1000),
        eta: huge(8 << 20),
        expires: huge(65),
      },
      { type: 'task-revoked', uuid: 'a', timestamp: NOW, signum: huge(1000) },
    ]);
    expect(events[0]).toMatchObject({
      rootId: undefined,
      parentId: undefined,
      eta: undefined,
      expires: undefined,
    });
    expect((events[1] as TaskEvent).signum).toBeUndefined();
    expect(truncated).toEqual({ root_id: 1, parent_id: 1, eta: 1, expires: 1, signum: 1 });
  });

  it('drops out-of-range numbers: negative or absurd runtime, fractional retries, huge freq', () => {
    const { events, truncated } = decode([
      { type: 'task-succeeded', uuid: 'a', timestamp: NOW, runtime: -5, retries: 1.5 },
      { type: 'task-succeeded', uuid: 'b', timestamp: NOW, runtime: 1e300 },
      { type: 'task-succeeded', uuid: 'c', timestamp: NOW, runtime: 0.25, retries: 2 },
      { type: 'worker-heartbeat', hostname: 'w@h', timestamp: NOW, freq: 1e300, active: -1 },
    ]);
    expect(events.map((e) => (isTaskEvent(e) ? e.runtime : undefined))).toEqual([
      undefined,
      undefined,
      0.25,
      undefined,
    ]);
    expect((events[2] as TaskEvent).retries).toBe(2);
    expect(events[3]).toMatchObject({ freq: undefined, active: undefined });
    expect(truncated).toEqual({ runtime: 2, retries: 1 });
  });

  it('counts free text cut to --max-attribute-length', () => {
    const { events, truncated } = decode({
      type: 'task-failed',
      uuid: 'a',
      timestamp: NOW,
      traceback: huge(5000),
      exception: 'short',
    });
    expect((events[0] as TaskEvent).traceback?.length).toBeLessThanOrEqual(1000);
    expect(truncated).toEqual({ traceback: 1 });
  });

  it('cuts a worker event hostname too (it is a map key and a label value)', () => {
    const { events, truncated } = decode({
      type: 'worker-heartbeat',
      hostname: huge(1 << 20),
      timestamp: NOW,
    });
    expect(events[0] && 'hostname' in events[0] ? events[0].hostname?.length : 0).toBe(255);
    expect(truncated).toEqual({ hostname: 1 });
  });

  it('never splits a surrogate pair when cutting', () => {
    const cut = cutName(`${'a'.repeat(253)}😀😀😀`);
    expect(cut.length).toBeLessThanOrEqual(255);
    expect(cut).toBe(`${'a'.repeat(253)}…`);
    expect(Buffer.from(cut, 'utf8').toString('utf8')).toBe(cut);
  });
});

describe('implausible timestamps', () => {
  const at = (timestamp: unknown) =>
    decode({ type: 'task-received', uuid: 'a', timestamp, name: 'n' });

  it.each([
    ['1e13 (year 318,857)', 1e13],
    ['negative', -1],
    ['zero', 0],
    ['JSON 1e400 (Infinity)', '1e400'],
    ['8 days before arrival', NOW - 8 * 86400],
    ['2 hours after arrival', NOW + 7200],
  ])('rejects %s as implausible_timestamp or invalid', (_, timestamp) => {
    const { events, rejections } =
      timestamp === '1e400'
        ? decode(`{"type": "task-received", "uuid": "a", "timestamp": 1e400}`)
        : at(timestamp);
    expect(events).toEqual([]);
    expect(rejections).toHaveLength(1);
    expect(['implausible_timestamp', 'invalid_field']).toContain(rejections[0]?.reason);
  });

  it('names the window and the sender in the rejection', () => {
    expect(at(1e13).rejections[0]).toMatchObject({ reason: 'implausible_timestamp' });
    expect(at(NOW + 7200).rejections[0]?.detail).toContain('in the future');
    expect(at(NOW - 8 * 86400).rejections[0]?.detail).toContain('in the past');
  });

  it('accepts clock skew and events that waited in a queue for days', () => {
    for (const timestamp of [NOW, NOW + 3000, NOW - 6 * 86400, NOW - 0.5]) {
      expect(at(timestamp).events).toHaveLength(1);
    }
  });

  it('without an arrival clock, checks only the absolute range', () => {
    const old = decode({ type: 'task-received', uuid: 'a', timestamp: 1 }, null);
    expect(old.events).toHaveLength(1);
    const absurd = decode({ type: 'task-received', uuid: 'a', timestamp: 1e13 }, null);
    expect(absurd.rejections[0]?.reason).toBe('implausible_timestamp');
  });
});
