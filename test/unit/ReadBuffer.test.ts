import { describe, expect, it } from 'vitest';
import { type ReadBatch, ReadBuffer } from '../../src/brokers/ReadBuffer.js';

const CHANNEL = Buffer.from('/0.celeryev/task.multi');

/** A payload of `size` bytes naming message `index`. */
function payload(index: number, size = 100): Buffer {
  const name = `m${index}:`;
  return Buffer.concat([Buffer.from(name), Buffer.alloc(size - name.length, 0x78)]);
}

/** The messages of a batch as [channel, payload] strings, read back from its offsets. */
function messagesOf(batch: ReadBatch): [string, string][] {
  const out: [string, string][] = [];
  const { bytes, offsets } = batch;
  for (let at = 0; at < offsets.length; at += 3) {
    const [channel, start, end] = [offsets[at], offsets[at + 1], offsets[at + 2]] as number[];
    out.push([
      Buffer.from(bytes, channel, (start as number) - (channel as number)).toString(),
      Buffer.from(bytes, start, (end as number) - (start as number)).toString(),
    ]);
  }
  return out;
}

/** A buffer whose turns run when the test says so, and whose batches are collected. */
function setup(maxBufferedBytes: number, chunkBytes: number) {
  const batches: ReadBatch[] = [];
  const transfers: ArrayBuffer[][] = [];
  const turns: (() => void)[] = [];
  const gauge = new Float64Array(1);
  const buffer = new ReadBuffer(
    { maxBufferedBytes, chunkBytes, gauge },
    (batch, transfer) => {
      batches.push(batch);
      transfers.push(transfer);
    },
    (callback) => turns.push(callback),
  );
  const nextTurn = (): void => {
    for (const turn of turns.splice(0)) turn();
  };
  return { buffer, batches, transfers, gauge, nextTurn };
}

const SIZE = CHANNEL.length + 100;

describe('ReadBuffer', () => {
  it('sends nothing until pulled, then one chunk per pull, in order, on the next turn', () => {
    const { buffer, batches, nextTurn } = setup(1 << 20, 3 * SIZE);
    for (let i = 0; i < 7; i++) buffer.read(CHANNEL, payload(i));
    nextTurn();
    expect(batches).toEqual([]);
    buffer.pull();
    expect(batches).toEqual([]);
    nextTurn();
    expect(batches.map(messagesOf)).toEqual([
      [0, 1, 2].map((i) => [CHANNEL.toString(), payload(i).toString()]),
    ]);
    buffer.pull();
    nextTurn();
    buffer.pull();
    nextTurn();
    expect(batches.map((b) => messagesOf(b).map(([, p]) => p.split(':')[0]))).toEqual([
      ['m0', 'm1', 'm2'],
      ['m3', 'm4', 'm5'],
      ['m6'],
    ]);
    expect(batches.map((b) => b.final)).toEqual([false, false, false]);
    // Nothing left: a pull waits for the next message.
    buffer.pull();
    nextTurn();
    expect(batches).toHaveLength(3);
    buffer.read(CHANNEL, payload(7));
    nextTurn();
    expect(batches.map((b) => messagesOf(b)[0]?.[1].split(':')[0])).toEqual([
      'm0',
      'm3',
      'm6',
      'm7',
    ]);
  });

  it('sends what one turn brought together when a pull is waiting', () => {
    const { buffer, batches, nextTurn } = setup(1 << 20, 1 << 16);
    buffer.pull();
    buffer.read(CHANNEL, payload(0));
    buffer.read(CHANNEL, payload(1));
    expect(batches).toEqual([]);
    nextTurn();
    expect(batches.map((b) => messagesOf(b).length)).toEqual([2]);
  });

  it('transfers each batch buffer instead of copying it', () => {
    const { buffer, batches, transfers, nextTurn } = setup(1 << 20, 1 << 16);
    buffer.read(CHANNEL, payload(0));
    buffer.pull();
    nextTurn();
    const [batch] = batches;
    expect(transfers[0]).toEqual([batch?.bytes, batch?.offsets.buffer]);
  });

  it('keeps the offsets of many small messages in one chunk', () => {
    const { buffer, batches, nextTurn } = setup(1 << 24, 1 << 20);
    for (let i = 0; i < 2000; i++) buffer.read(CHANNEL, payload(i, 10));
    buffer.pull();
    nextTurn();
    const messages = messagesOf(batches[0] as ReadBatch);
    expect(messages).toHaveLength(2000);
    expect(messages.at(-1)?.[1]).toBe(payload(1999, 10).toString());
  });

  it('gives a message larger than a chunk a chunk of its own', () => {
    const { buffer, batches, nextTurn } = setup(1 << 20, 2 * SIZE);
    buffer.read(CHANNEL, payload(0));
    buffer.read(CHANNEL, payload(1, 10_000));
    buffer.read(CHANNEL, payload(2));
    for (let i = 0; i < 3; i++) {
      buffer.pull();
      nextTurn();
    }
    expect(batches.map((b) => messagesOf(b).map(([, p]) => p.length))).toEqual([
      [100],
      [10_000],
      [100],
    ]);
  });

  it('drops and counts what passes its bound, reports the count with the next batch, and keeps the rest', () => {
    const { buffer, batches, nextTurn } = setup(3 * SIZE, 2 * SIZE);
    for (let i = 0; i < 5; i++) buffer.read(CHANNEL, payload(i));
    expect(buffer.bufferedBytes).toBe(3 * SIZE);
    buffer.pull();
    nextTurn();
    expect(batches[0]?.dropped).toBe(2);
    // Taken: room again for what comes next.
    buffer.read(CHANNEL, payload(5));
    buffer.read(CHANNEL, payload(6));
    buffer.read(CHANNEL, payload(7));
    buffer.pull();
    nextTurn();
    buffer.pull();
    nextTurn();
    expect(batches.map((b) => messagesOf(b).map(([, p]) => p.split(':')[0]))).toEqual([
      ['m0', 'm1'],
      ['m2', 'm5'],
      ['m6'],
    ]);
    expect(batches.map((b) => b.dropped)).toEqual([2, 1, 0]);
  });

  it('reports drops on a pull even when it holds no message', () => {
    const { buffer, batches, nextTurn } = setup(SIZE - 1, 1 << 16);
    buffer.read(CHANNEL, payload(0));
    buffer.pull();
    nextTurn();
    expect(batches.map((b) => [messagesOf(b).length, b.dropped])).toEqual([[0, 1]]);
  });

  it('keeps the shared gauge at the bytes it holds', () => {
    const { buffer, gauge, nextTurn } = setup(1 << 20, 2 * SIZE);
    expect(gauge[0]).toBe(0);
    for (let i = 0; i < 3; i++) buffer.read(CHANNEL, payload(i));
    expect(gauge[0]).toBe(3 * SIZE);
    buffer.pull();
    nextTurn();
    expect(gauge[0]).toBe(SIZE);
    expect(buffer.bufferedBytes).toBe(SIZE);
    buffer.pull();
    nextTurn();
    expect(gauge[0]).toBe(0);
  });

  it('hands everything over at a flush, pulled or not, every batch final', () => {
    const { buffer, batches, gauge } = setup(1 << 20, 2 * SIZE);
    for (let i = 0; i < 5; i++) buffer.read(CHANNEL, payload(i));
    buffer.flush();
    expect(batches.map((b) => messagesOf(b).length)).toEqual([2, 2, 1]);
    expect(batches.every((b) => b.final)).toBe(true);
    expect(gauge[0]).toBe(0);
  });

  it('sends one empty final batch at a flush when it holds nothing', () => {
    const { buffer, batches } = setup(1 << 20, 1 << 16);
    buffer.flush();
    expect(batches.map((b) => [messagesOf(b).length, b.dropped, b.final])).toEqual([[0, 0, true]]);
  });

  it('keeps a number with each message when tagged, sent as the batch tags and transferred', () => {
    const batches: ReadBatch[] = [];
    const transfers: ArrayBuffer[][] = [];
    const turns: (() => void)[] = [];
    const buffer = new ReadBuffer(
      { maxBufferedBytes: Infinity, chunkBytes: 2 * SIZE, tagged: true },
      (batch, transfer) => {
        batches.push(batch);
        transfers.push(transfer);
      },
      (callback) => turns.push(callback),
    );
    // More messages than the tags column starts with, so it grows.
    const many = 300;
    const big = new ReadBuffer(
      { maxBufferedBytes: Infinity, chunkBytes: 1 << 20, tagged: true },
      (batch) => batches.push(batch),
      (callback) => turns.push(callback),
    );
    for (let i = 1; i <= 3; i++) buffer.read(CHANNEL, payload(i), 1000 + i);
    for (let i = 1; i <= many; i++) big.read(CHANNEL, payload(i, 10), i);
    for (const source of [buffer, buffer, big]) {
      source.pull();
      for (const turn of turns.splice(0)) turn();
    }
    expect(batches.map((b) => Array.from(b.tags ?? []))).toEqual([
      [1001, 1002],
      [1003],
      Array.from({ length: many }, (_, i) => i + 1),
    ]);
    expect(messagesOf(batches[2] as ReadBatch)).toHaveLength(many);
    expect(transfers[0]).toEqual([
      batches[0]?.bytes,
      batches[0]?.offsets.buffer,
      batches[0]?.tags?.buffer,
    ]);
  });

  it('sends no tags when not tagged', () => {
    const { buffer, batches, nextTurn } = setup(1 << 20, 1 << 16);
    buffer.read(CHANNEL, payload(0), 7);
    buffer.pull();
    nextTurn();
    expect(batches[0]?.tags).toBeUndefined();
  });

  it('forgets what it holds at a discard, uncounted, and keeps a waiting pull', () => {
    const { buffer, batches, gauge, nextTurn } = setup(1 << 20, 2 * SIZE);
    for (let i = 0; i < 3; i++) buffer.read(CHANNEL, payload(i));
    buffer.discard();
    expect(gauge[0]).toBe(0);
    buffer.pull();
    nextTurn();
    expect(batches).toEqual([]);
    buffer.read(CHANNEL, payload(3));
    nextTurn();
    expect(batches.map((b) => [messagesOf(b).map(([, p]) => p.split(':')[0]), b.dropped])).toEqual([
      [['m3'], 0],
    ]);
  });
});
