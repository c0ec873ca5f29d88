import { describe, expect, it } from 'vitest';
import { CompactTaskTable } from '../../src/assemble/CompactTaskTable.js';
import { StringInterner } from '../../src/assemble/StringInterner.js';
import type { TaskRecord } from '../../src/assemble/TaskRecord.js';
import { newTaskRecordView } from '../../src/assemble/TaskRecordView.js';

/** A task only received, as the object path records it. */
const received = (id: string, timestamp: number, extra: Partial<TaskRecord> = {}): TaskRecord => ({
  id,
  name: 'proj.add',
  rootId: id,
  retries: 0,
  workerHostname: 'w1@host',
  workerHostnameAt: timestamp,
  receivedAt: timestamp,
  receivedTimes: [timestamp],
  messageAt: timestamp,
  lastEventAt: timestamp,
  attempts: [],
  ...extra,
});

function filled(table: CompactTaskTable, id: string, timestamp: number): number {
  const slot = table.allocate();
  expect(table.store(slot, received(id, timestamp))).toBe(true);
  return slot;
}

describe('CompactTaskTable', () => {
  it('reuses freed slots before taking new ones', () => {
    const table = new CompactTaskTable(new StringInterner(100));
    const slots = [0, 1, 2, 3].map((i) => filled(table, `t${i}`, 100 + i));
    expect(slots).toEqual([0, 1, 2, 3]);
    table.free(1);
    table.free(3);
    expect(table.size).toBe(2);
    // Last freed, first reused; and a reused slot starts empty.
    const again = table.allocate();
    expect(again).toBe(3);
    expect(table.isReceived(again)).toBe(false);
    expect(table.toRecord(again, 'x')).toEqual({
      id: 'x',
      receivedTimes: [],
      attempts: [],
      lastEventAt: Number.NaN,
      messageAt: Number.NaN,
    });
    expect(table.allocate()).toBe(1);
    expect(table.allocate()).toBe(4);
    expect(table.toRecord(2, 't2')).toMatchObject({ receivedAt: 102, name: 'proj.add' });
  });

  it('grows by chunks, keeps every slot, and shrinks back to one chunk once empty', () => {
    const table = new CompactTaskTable(new StringInterner(100));
    expect(table.slotCapacity).toBe(0);
    const count = 40_000;
    for (let i = 0; i < count; i++) expect(filled(table, `t${i}`, i)).toBe(i);
    const chunks = table.slotCapacity;
    expect(chunks).toBeGreaterThanOrEqual(count);
    expect(chunks).toBeLessThan(count * 1.5);
    for (const i of [0, 16_383, 16_384, 32_768, count - 1]) {
      expect(table.toRecord(i, `t${i}`)).toMatchObject({
        id: `t${i}`,
        receivedAt: i,
        rootId: `t${i}`,
      });
    }
    for (let i = 0; i < count; i++) table.free(i);
    expect(table.size).toBe(0);
    expect(table.slotCapacity).toBeLessThan(chunks);
    expect(table.slotCapacity).toBeGreaterThan(0);
    expect(filled(table, 'again', 1)).toBe(0);
  });

  it('stores only what it gives back equal, and leaves the slot as it was otherwise', () => {
    const table = new CompactTaskTable(new StringInterner(2));
    const slot = filled(table, 'a', 1);
    const sent = { ...received('a', 2), sentAt: 0.5, parentId: 'p', rootId: 'r' };
    expect(table.store(slot, sent)).toBe(true);
    expect(table.toRecord(slot, 'a')).toEqual(sent);
    const view = newTaskRecordView();
    table.load(slot, 'a', view, [0]);
    expect(JSON.parse(JSON.stringify(view))).toEqual(sent);
    for (const change of [
      { name: 'proj.other' }, // no room for a third shared string
      { receivedTimes: [2, 3] },
      { lastEventAt: 3 },
      { messageAt: 1 },
      { workerHostnameAt: 1 },
      { retries: 255 },
      { retries: 1.5 },
      { eta: '2030-01-01T00:00:00' },
      { args: '(1,)' },
      { attempts: [{ startedAt: 3 }] },
      { sentAt: Number.NaN },
      { receivedAt: undefined, receivedTimes: [], workerHostname: undefined, sentAt: undefined },
    ] satisfies Partial<TaskRecord>[]) {
      expect(table.store(slot, { ...sent, ...change }), JSON.stringify(change)).toBe(false);
      expect(table.toRecord(slot, 'a')).toEqual(sent);
    }
  });
});
