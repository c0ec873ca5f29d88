import { describe, expect, it } from 'vitest';
import { applyTaskEvent, type TaskEventRules } from '../../src/assemble/applyTaskEvent.js';
import { compactTaskBytes } from '../../src/assemble/InFlightBytes.js';
import { InFlightTasks } from '../../src/assemble/InFlightTasks.js';
import { StringInterner } from '../../src/assemble/StringInterner.js';
import type { TaskRecord } from '../../src/assemble/TaskRecord.js';
import type { TaskEvent } from '../../src/decode/CeleryEvent.js';

const ev = (type: TaskEvent['type'], uuid: string, timestamp: number): TaskEvent => ({
  type,
  uuid,
  timestamp,
  hostname: 'w1@host',
  name: 'proj.add',
  rootId: uuid,
});

function table(maxTasks = 10) {
  const strings = new StringInterner(100);
  const rules: TaskEventRules = { strings, captureArgs: false, captureResult: false };
  const evicted: string[] = [];
  const changed: string[] = [];
  const tasks: InFlightTasks = new InFlightTasks(
    { maxTasks, compact: true },
    strings,
    rules,
    (record) => {
      evicted.push(record.id);
      tasks.delete(record.id);
    },
    (id) => changed.push(id),
  );
  /** What TaskAssembler.handle does with the table. */
  const handle = (event: TaskEvent): void => {
    if (tasks.applyPending(event) !== undefined) return;
    const record = tasks.recordFor(event.uuid, event.timestamp);
    applyTaskEvent(record, event, rules, { duplicateEvent: () => undefined });
    tasks.updated(record);
  };
  return { tasks, evicted, changed, handle };
}

describe('InFlightTasks', () => {
  it('keeps pending tasks compact and promotes them in place, so eviction order holds', () => {
    const { tasks, evicted, handle } = table(3);
    handle(ev('task-received', 'a', 1));
    handle(ev('task-received', 'b', 2));
    handle(ev('task-sent', 'c', 3));
    expect(tasks.compactSize).toBe(3);
    handle(ev('task-started', 'a', 4));
    expect(tasks.compactSize).toBe(2);
    expect(tasks.peek('a')?.attempts).toHaveLength(1);
    handle(ev('task-received', 'd', 5));
    expect(evicted).toEqual(['a']);
    handle(ev('task-started', 'd', 6));
    handle(ev('task-received', 'e', 7));
    expect(evicted).toEqual(['a', 'b']);
    expect(tasks.records().map((r) => r.id)).toEqual(['c', 'd', 'e']);
  });

  it('shows a compact task as the record it stands for, without promoting it', () => {
    const { tasks, handle } = table();
    handle(ev('task-sent', 'a', 10));
    handle(ev('task-received', 'a', 11));
    expect(tasks.peek('a')).toMatchObject({ id: 'a', sentAt: 10, receivedTimes: [11] });
    expect(tasks.compactSize).toBe(1);
    expect(tasks.wasReceived('a')).toBe(true);
    expect(tasks.wasReceived('missing')).toBe(false);
  });

  it('reports every task added, changed or removed, and its byte estimate goes back to zero', () => {
    const { tasks, changed, handle } = table();
    handle(ev('task-received', 'a', 1));
    expect(tasks.bytes).toBe(compactTaskBytes('a'));
    handle(ev('task-received', 'a', 1)); // a duplicate changes nothing
    handle(ev('task-started', 'a', 2));
    handle(ev('task-succeeded', 'a', 3));
    const record = tasks.record('a') as TaskRecord;
    expect(record.final?.state).toBe('SUCCESS');
    expect(tasks.bytes).toBeGreaterThan(compactTaskBytes('a'));
    tasks.delete('a');
    expect(tasks.bytes).toBe(0);
    expect(tasks.size).toBe(0);
    expect(changed).toEqual(['a', 'a', 'a', 'a']);
  });

  it('evicts past its byte budget, oldest first', () => {
    const strings = new StringInterner(100);
    const evicted: string[] = [];
    const tasks: InFlightTasks = new InFlightTasks(
      { maxTasks: 100, maxBytes: 3 * compactTaskBytes('a'), compact: true },
      strings,
      { strings, captureArgs: false },
      (record) => {
        evicted.push(record.id);
        tasks.delete(record.id);
      },
    );
    for (const id of ['a', 'b', 'c', 'd', 'e']) {
      tasks.applyPending(ev('task-received', id, 1));
      tasks.keepWithinBytes();
    }
    expect(evicted).toEqual(['a', 'b']);
    expect(tasks.records().map((r) => r.id)).toEqual(['c', 'd', 'e']);
  });
});
