// The task-sent / task-received rules, written once (applyTaskMessage.ts) and followed by both
// ways the in-flight table keeps a task: as an object, and as a compact slot changed through a
// view. Each case checks the rule's result, and that the compact tier ends with the same record.
import { describe, expect, it } from 'vitest';
import {
  applyTaskMessage,
  MAX_RECEIVED_TIMES,
  type TaskMessageRules,
} from '../../src/assemble/applyTaskMessage.js';
import { InFlightTasks } from '../../src/assemble/InFlightTasks.js';
import { StringInterner } from '../../src/assemble/StringInterner.js';
import { NO_ATTEMPTS, NO_TIMES, type TaskRecord } from '../../src/assemble/TaskRecord.js';
import type { TaskEvent } from '../../src/decode/CeleryEvent.js';

const json = (value: unknown): unknown => JSON.parse(JSON.stringify(value)) as unknown;

const sent = (timestamp: number, extra: Partial<TaskEvent> = {}): TaskEvent => ({
  type: 'task-sent',
  uuid: 't',
  timestamp,
  hostname: 'client@host',
  name: 'proj.add',
  rootId: 't',
  retries: 0,
  queue: 'celery',
  exchange: '',
  routingKey: 'celery',
  ...extra,
});

const received = (timestamp: number, extra: Partial<TaskEvent> = {}): TaskEvent => ({
  type: 'task-received',
  uuid: 't',
  timestamp,
  hostname: 'w1@host',
  name: 'proj.add',
  rootId: 't',
  retries: 0,
  ...extra,
});

interface Applied {
  readonly record: TaskRecord;
  readonly outcomes: string[];
  /** Whether the compact tier still held the task after the last event. */
  readonly compact: boolean;
}

/** The events applied to a new record (the object tier), as InFlightTasks.recordFor does. */
function onObject(events: TaskEvent[], captureArgs = false): Applied {
  const rules: TaskMessageRules = { strings: new StringInterner(100), captureArgs };
  const first = events[0]?.timestamp ?? 0;
  const record: TaskRecord = {
    id: 't',
    receivedTimes: NO_TIMES,
    lastEventAt: first,
    attempts: NO_ATTEMPTS,
  };
  const outcomes = events.map((event) => {
    if (event.timestamp > record.lastEventAt) record.lastEventAt = event.timestamp;
    return applyTaskMessage(record, event, rules);
  });
  return { record, outcomes, compact: false };
}

/** The same events through the compact tier, promoted to an object when it no longer fits. */
function onTable(events: TaskEvent[], captureArgs = false): Applied {
  const strings = new StringInterner(100);
  const rules: TaskMessageRules = { strings, captureArgs };
  const tasks = new InFlightTasks({ maxTasks: 10, compact: true }, strings, rules, () => {
    throw new Error('nothing is evicted here');
  });
  const outcomes = events.map((event) => {
    const pending = tasks.applyPending(event);
    if (pending !== undefined) return pending;
    const record = tasks.recordFor(event.uuid, event.timestamp);
    return applyTaskMessage(record, event, rules);
  });
  const record = tasks.records()[0];
  if (record === undefined) throw new Error('the task is in flight');
  return { record, outcomes, compact: tasks.compactSize === 1 };
}

function both(events: TaskEvent[], captureArgs = false): Applied {
  const object = onObject(events, captureArgs);
  const table = onTable(events, captureArgs);
  expect(json(table.record)).toEqual(json(object.record));
  expect(table.outcomes).toEqual(object.outcomes);
  return table;
}

describe('the task-sent / task-received rules', () => {
  it('gives the same record whichever of sent and received arrives first', () => {
    const a = both([sent(10), received(11)]);
    const b = both([received(11), sent(10)]);
    expect(json(a.record)).toEqual(json(b.record));
    expect(a.record).toMatchObject({
      sentAt: 10,
      receivedAt: 11,
      receivedTimes: [11],
      messageAt: 11,
      lastEventAt: 11,
      workerHostname: 'w1@host',
      workerHostnameAt: 11,
      queue: 'celery',
      exchange: '',
      routingKey: 'celery',
    });
    expect(a.compact).toBe(true);
  });

  it('reports a receive at a time already seen as a duplicate, and changes nothing', () => {
    const run = both([received(11, { retries: 2 }), received(11, { retries: 5, name: 'x' })]);
    expect(run.outcomes).toEqual(['applied', 'duplicate']);
    expect(run.record).toMatchObject({ retries: 2, name: 'proj.add' });
    expect(run.compact).toBe(true);
  });

  it('keeps every distinct receive (a redelivery), up to a bound', () => {
    const run = both([received(11), received(12, { hostname: 'w2@host' }), received(9)]);
    expect(run.record).toMatchObject({
      receivedAt: 9,
      receivedTimes: [11, 12, 9],
      workerHostname: 'w2@host',
      workerHostnameAt: 12,
    });
    expect(run.compact).toBe(false);
    const many = Array.from({ length: MAX_RECEIVED_TIMES + 5 }, (_, i) => received(100 + i));
    expect(both(many).record.receivedTimes).toHaveLength(MAX_RECEIVED_TIMES);
  });

  it('never makes a task its own parent, and keeps the first real parent', () => {
    const run = both([
      received(11, { parentId: 't' }),
      sent(10, { parentId: 'p1', rootId: 'r' }),
      sent(10, { parentId: 'p2' }),
    ]);
    expect(run.record).toMatchObject({ parentId: 'p1', rootId: 't' });
    expect(run.compact).toBe(true);
  });

  it('keeps the highest retries count', () => {
    expect(both([received(11, { retries: 3 }), sent(10, { retries: 1 })]).record.retries).toBe(3);
  });

  it('takes the message fields from the latest message by event time, not arrival', () => {
    const eta = '2030-01-01T00:00:00+00:00';
    const run = both([received(12, { eta }), sent(10, { eta: undefined, expires: eta })]);
    expect(run.record).toMatchObject({ eta, messageAt: 12 });
    expect(run.record.expires).toBeUndefined();
    expect(run.compact).toBe(false);
  });

  it('keeps args and kwargs only when captured', () => {
    const events = [received(11, { args: '(1,)', kwargs: '{}' })];
    expect(both(events).record.args).toBeUndefined();
    const captured = both(events, true);
    expect(captured.record).toMatchObject({ args: '(1,)', kwargs: '{}' });
    expect(captured.compact).toBe(false);
  });

  it('ignores an empty queue name and keeps the exchange and routing key as sent', () => {
    const run = both([
      sent(10, { queue: 'q1' }),
      sent(10, { queue: '', exchange: 'ex', routingKey: 'rk' }),
    ]);
    expect(run.record).toMatchObject({ queue: 'q1', exchange: 'ex', routingKey: 'rk' });
  });

  it('keeps the earliest of two sends, with the later one as the last event', () => {
    const run = both([sent(12), sent(10)]);
    expect(run.record).toMatchObject({ sentAt: 10, lastEventAt: 12, messageAt: 12 });
    expect(run.compact).toBe(false);
  });
});
