import { describe, expect, it } from 'vitest';
import {
  type AmqpMessageMeta,
  AmqpMetaReader,
  MAX_META_BYTES,
  writeAmqpMeta,
} from '../../src/brokers/amqp/amqpMessageMeta.js';

/** Reads `meta` where a batch has it: between other bytes, by offsets. */
function readAt(reader: AmqpMetaReader, meta: Buffer): AmqpMessageMeta {
  const batch = Buffer.concat([Buffer.from('before'), meta, Buffer.from('{"after":1}')]);
  return reader.read(batch, 6, 6 + meta.length);
}

const roundTrip = (meta: AmqpMessageMeta): AmqpMessageMeta =>
  readAt(new AmqpMetaReader(), Buffer.from(writeAmqpMeta(meta, Buffer.alloc(MAX_META_BYTES))));

describe('amqpMessageMeta', () => {
  it('reads back what was written, telling an absent property from an empty one', () => {
    const celery = {
      routingKey: 'task.multi',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      compression: undefined,
    };
    expect(roundTrip(celery)).toEqual(celery);
    const empty = { routingKey: '', contentType: '', contentEncoding: '', compression: '' };
    expect(roundTrip(empty)).toEqual(empty);
    const gzip = { ...celery, contentEncoding: undefined, compression: 'application/x-gzip' };
    expect(roundTrip(gzip)).toEqual(gzip);
  });

  it('keeps a routing key with newlines, NULs and non-ASCII characters as it was', () => {
    const meta = {
      routingKey: 'task.\n\u0000multi.é✓',
      contentType: 'application/json',
      contentEncoding: undefined,
      compression: undefined,
    };
    expect(roundTrip(meta)).toEqual(meta);
  });

  it('cuts a field longer than an AMQP short string to 255 bytes, on a character boundary', () => {
    const meta = roundTrip({
      routingKey: 'k',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      compression: 'é'.repeat(200),
    });
    expect(meta.compression).toBe('é'.repeat(127));
    expect(meta.routingKey).toBe('k');
    const longest = writeAmqpMeta(
      {
        routingKey: 'r'.repeat(300),
        contentType: 'c'.repeat(300),
        contentEncoding: 'e'.repeat(300),
        compression: 'z'.repeat(300),
      },
      Buffer.alloc(MAX_META_BYTES),
    );
    expect(longest.length).toBe(MAX_META_BYTES);
  });

  it('returns the same object for consecutive equal metas, and a new one when they change', () => {
    const scratch = Buffer.alloc(MAX_META_BYTES);
    const reader = new AmqpMetaReader();
    const write = (routingKey: string): Buffer =>
      Buffer.from(
        writeAmqpMeta(
          {
            routingKey,
            contentType: 'application/json',
            contentEncoding: 'utf-8',
            compression: undefined,
          },
          scratch,
        ),
      );
    const first = readAt(reader, write('task.multi'));
    expect(readAt(reader, write('task.multi'))).toBe(first);
    const other = readAt(reader, write('worker.heartbeat'));
    expect(other.routingKey).toBe('worker.heartbeat');
    expect(readAt(reader, write('task.multi'))).not.toBe(first);
    expect(readAt(reader, write('task.multi')).routingKey).toBe('task.multi');
    // Same length, other bytes: read anew.
    expect(readAt(reader, write('task.multX')).routingKey).toBe('task.multX');
  });
});
