import { describe, expect, it } from 'vitest';
import { CompactTaskTable } from '../../src/assemble/CompactTaskTable.js';
import { StringInterner } from '../../src/assemble/StringInterner.js';
import type { TaskEvent } from '../../src/decode/CeleryEvent.js';

const received = (uuid: string, timestamp: number, extra: Partial<TaskEvent> = {}): TaskEvent => ({
  type: 'task-received',
  uuid,
  timestamp,
  hostname: 'w1@host',
  name: 'proj.add',
  rootId: uuid,
  retries: 0,
  ...extra,
});

function filled(table: CompactTaskTable, id: string, timestamp: number): number {
  const slot = table.allocate();
  expect(table.tryApply(slot, id, received(id, timestamp))).toBe('applied');
  return slot;
}

describe('CompactTaskTable', () => {
  it('reuses freed slots before taking new ones', () => {
    const table = new CompactTaskTable(new StringInterner(100), false);
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
    const table = new CompactTaskTable(new StringInterner(100), false);
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

  it('answers promote when the shared strings run out, and leaves the slot as it was', () => {
    const table = new CompactTaskTable(new StringInterner(2), false);
    const slot = filled(table, 'a', 1);
    expect(table.tryApply(slot, 'a', { ...received('a', 2), type: 'task-sent' })).toBe('applied');
    const before = table.toRecord(slot, 'a');
    const other = received('b', 3, { name: 'proj.other', hostname: 'w9@host' });
    const fresh = table.allocate();
    expect(table.tryApply(fresh, 'b', other)).toBe('promote');
    expect(table.toRecord(slot, 'a')).toEqual(before);
  });
});
