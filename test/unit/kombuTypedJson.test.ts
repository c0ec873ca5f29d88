import { describe, expect, it } from 'vitest';
import type { TaskCustomEvent } from '../../src/decode/TaskCustomEvent.js';
import { kombuTypedString, unwrapKombuTyped } from '../../src/decode/kombuTypedJson.js';
import type { WorkerEvent } from '../../src/decode/CeleryEvent.js';
import { decodeAll } from '../support/pipeline.js';

// What kombu >= 5.3 writes (kombu/utils/json.py `JSONEncoder.default`, `_as`, the registered
// default types), and what `object_hook` would turn it into on the Python side.
describe('kombu typed JSON values', () => {
  it('reads each of kombu default types as the string an older kombu sent', () => {
    const hex = '0d00000000004000800000000000000a';
    expect(kombuTypedString({ __type__: 'uuid', __value__: { hex } })).toBe(
      '0d000000-0000-4000-8000-00000000000a',
    );
    expect(kombuTypedString({ __type__: 'uuid', __value__: { hex: hex.toUpperCase() } })).toBe(
      '0d000000-0000-4000-8000-00000000000a',
    );
    for (const marker of ['datetime', 'date', 'time', 'decimal', 'bytes']) {
      expect(kombuTypedString({ __type__: marker, __value__: 'v' })).toBe('v');
    }
    expect(
      kombuTypedString({ __type__: 'base64', __value__: Buffer.from('hé').toString('base64') }),
    ).toBe('hé');
    const binary = Buffer.from([0xff, 0x00]).toString('base64');
    expect(kombuTypedString({ __type__: 'base64', __value__: binary })).toBe(binary);
  });

  it('leaves anything else alone', () => {
    expect(kombuTypedString({ __type__: 'uuid', __value__: { hex: 'nothex' } })).toBeUndefined();
    expect(kombuTypedString({ __type__: 'pickle', __value__: 'x' })).toBeUndefined();
    expect(kombuTypedString({ __type__: 'bytes', __value__: 'x', extra: 1 })).toBeUndefined();
    expect(kombuTypedString({ __type__: 'datetime', __value__: 5 })).toBeUndefined();
    expect(unwrapKombuTyped({ a: 1 })).toEqual({ a: 1 });
    expect(unwrapKombuTyped(7)).toBe(7);
  });
});

describe('decoding the event types issue 14 adds', () => {
  const message = (body: unknown) => ({
    routingKey: 'x',
    contentType: 'application/json',
    body: Buffer.from(JSON.stringify(body)),
  });

  it('keeps the heartbeat loadavg', () => {
    const { events } = decodeAll([
      message({ type: 'worker-heartbeat', hostname: 'w', timestamp: 1, loadavg: [0.1, 0.2, 0.3] }),
      message({ type: 'worker-heartbeat', hostname: 'w', timestamp: 1, loadavg: [0.1, 'x', 0.3] }),
    ]);
    expect((events[0] as WorkerEvent).loadavg).toEqual([0.1, 0.2, 0.3]);
    expect((events[1] as WorkerEvent).loadavg).toBeUndefined();
  });

  it('decodes task-cancelled, custom task events, and rejects other unknown types', () => {
    const { events, rejections } = decodeAll([
      message({ type: 'task-cancelled', uuid: 'a', timestamp: 1, hostname: 'w' }),
      message({
        type: 'task-progress',
        uuid: 'a',
        timestamp: 2,
        hostname: 'w',
        pid: 1,
        clock: 3,
        done: 1,
      }),
      message({ type: 'task-progress', timestamp: 2 }),
      message({ type: 'bogus', uuid: 'a', timestamp: 2 }),
      message({ type: `task-${'x'.repeat(100)}`, uuid: 'a', timestamp: 2 }),
    ]);
    expect(events.map((e) => e.type)).toEqual(['task-cancelled', 'task-progress']);
    expect((events[1] as TaskCustomEvent).fields).toEqual({ done: 1 });
    expect(rejections.map((r) => r.reason)).toEqual([
      'unknown_event_type',
      'unknown_event_type',
      'unknown_event_type',
    ]);
  });
});
