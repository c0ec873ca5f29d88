import { describe, expect, it } from 'vitest';
import { isTaskEvent, type CeleryEvent } from '../../src/decode/CeleryEvent.js';
import { decodeEventBody } from '../../src/decode/decodeEventBody.js';
import {
  decodeKombuEnvelope,
  isDecodeRejection,
} from '../../src/brokers/redis/decodeKombuEnvelope.js';
import type { RawEventMessage } from '../../src/shared/RawEventMessage.js';
import { amqpFixtureMessages, redisFixturePayloads } from '../support/fixtures.js';
import { assemble } from '../support/pipeline.js';
import { seededRandom } from '../support/seededRandom.js';

const WEIRD_VALUES: unknown[] = [
  null,
  true,
  -1,
  0,
  1e308,
  -0,
  '',
  'x'.repeat(5000),
  '\u0000\ud800',
  [],
  {},
  [1, [2, [3]]],
  { __proto__: { polluted: 1 } },
  { constructor: { prototype: { polluted: 1 } } },
  'task-received',
  '2026-11-26T23:44:05.414875+00:00',
];

/** Mutates a JSON value structurally: replaces, deletes or adds fields with weird values. */
function mutateValue(value: unknown, next: () => number, depth = 0): unknown {
  const pick = <T>(items: T[]): T => items[Math.floor(next() * items.length)] as T;
  if (depth > 3 || next() < 0.1) return pick(WEIRD_VALUES);
  if (Array.isArray(value)) {
    const out = (value as unknown[]).map((item) =>
      next() < 0.3 ? mutateValue(item, next, depth + 1) : item,
    );
    if (next() < 0.2) out.push(pick(WEIRD_VALUES));
    return out;
  }
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    for (const key of Object.keys(out)) {
      const roll = next();
      if (roll < 0.15) out[key] = pick(WEIRD_VALUES);
      else if (roll < 0.2) delete out[key];
    }
    if (next() < 0.1)
      out[pick(['__proto__', 'constructor', 'type', 'uuid', 'zz'])] = pick(WEIRD_VALUES);
    return out;
  }
  return value;
}

/** Mutates raw bytes: flips, truncates, splices. */
function mutateBytes(body: Buffer, next: () => number): Buffer {
  const out = Buffer.from(body);
  const flips = 1 + Math.floor(next() * 4);
  for (let i = 0; i < flips && out.length > 0; i++) {
    out[Math.floor(next() * out.length)] = Math.floor(next() * 256);
  }
  return next() < 0.3 ? out.subarray(0, Math.floor(next() * out.length)) : out;
}

function checkEvent(event: CeleryEvent): void {
  expect(typeof event.type).toBe('string');
  expect(Number.isFinite(event.timestamp)).toBe(true);
  if (isTaskEvent(event)) {
    expect(typeof event.uuid).toBe('string');
    for (const key of ['name', 'rootId', 'parentId', 'traceback', 'exception', 'args'] as const) {
      const value = event[key];
      if (value !== undefined) expect(typeof value).toBe('string');
    }
    for (const key of ['retries', 'runtime'] as const) {
      const value = event[key];
      if (value !== undefined) expect(Number.isFinite(value)).toBe(true);
    }
  }
}

describe('decoder fuzzing (seeded)', () => {
  const messages = amqpFixtureMessages();
  const envelopes = redisFixturePayloads();

  it('never throws on mutated bodies and only emits well-typed events, which assemble into spans', () => {
    let emitted = 0;
    let rejected = 0;
    for (let seed = 1; seed <= 1500; seed++) {
      const next = seededRandom(seed);
      const original = messages[Math.floor(next() * messages.length)] as RawEventMessage;
      const body =
        next() < 0.5
          ? mutateBytes(original.body, next)
          : Buffer.from(
              JSON.stringify(mutateValue(JSON.parse(original.body.toString('utf8')), next)),
            );
      const events: CeleryEvent[] = [];
      expect(() =>
        decodeEventBody(
          { ...original, body },
          { maxMessageBytes: 1 << 20, maxFieldLength: 2048 },
          { event: (e) => events.push(e), reject: () => rejected++ },
        ),
      ).not.toThrow();
      for (const event of events) checkEvent(event);
      emitted += events.length;
      const taskEvents = events.filter(isTaskEvent);
      expect(() => assemble(taskEvents)).not.toThrow();
    }
    // The fuzzer must exercise both paths to mean anything.
    expect(emitted).toBeGreaterThan(300);
    expect(rejected).toBeGreaterThan(500);
  });

  it('never throws on mutated kombu envelopes', () => {
    for (let seed = 1; seed <= 1500; seed++) {
      const next = seededRandom(seed);
      const original = envelopes[Math.floor(next() * envelopes.length)];
      if (original === undefined) continue;
      const payload =
        next() < 0.5
          ? mutateBytes(original.payload, next)
          : Buffer.from(
              JSON.stringify(mutateValue(JSON.parse(original.payload.toString('utf8')), next)),
            );
      let decoded: ReturnType<typeof decodeKombuEnvelope> | undefined;
      expect(() => (decoded = decodeKombuEnvelope(payload, 'task.multi'))).not.toThrow();
      if (decoded !== undefined && !isDecodeRejection(decoded)) {
        expect(() =>
          decodeEventBody(
            decoded as RawEventMessage,
            { maxMessageBytes: 1 << 20 },
            { event: checkEvent, reject: () => undefined },
          ),
        ).not.toThrow();
      }
    }
  });

  it('cuts huge free-text fields at intake, keeping head and tail', () => {
    const traceback = `Traceback (most recent call last):\n${'  File "x.py", line 1, in f\n'.repeat(400_000)}RuntimeError: end`;
    expect(traceback.length).toBeGreaterThan(10_000_000);
    const events: CeleryEvent[] = [];
    decodeEventBody(
      {
        routingKey: 'task.multi',
        contentType: 'application/json',
        body: Buffer.from(
          JSON.stringify([
            {
              type: 'task-failed',
              uuid: 'big',
              timestamp: 1,
              exception: "RuntimeError('end')",
              traceback,
            },
          ]),
        ),
      },
      { maxMessageBytes: 64 << 20, maxFieldLength: 32768 },
      { event: (e) => events.push(e), reject: () => undefined },
    );
    const event = events[0];
    expect(event && isTaskEvent(event) ? event.traceback?.length : 0).toBeLessThanOrEqual(32768);
    expect(
      event && isTaskEvent(event) ? event.traceback?.endsWith('RuntimeError: end') : false,
    ).toBe(true);
  });
});
