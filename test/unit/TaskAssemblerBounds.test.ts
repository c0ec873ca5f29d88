// The assembler's memory and work bounds against hostile event streams: attempts per task,
// in-flight memory in bytes, and the shared string table.
import { describe, expect, it } from 'vitest';
import { MAX_ATTEMPTS } from '../../src/assemble/appendAttempt.js';
import { compactTaskBytes, recordBytes } from '../../src/assemble/InFlightBytes.js';
import { MAX_INTERNED_LENGTH, StringInterner } from '../../src/assemble/StringInterner.js';
import { TaskAssembler, type TaskAssemblerOptions } from '../../src/assemble/TaskAssembler.js';
import type { FinishedTask } from '../../src/assemble/TaskRecord.js';
import type { TaskEvent } from '../../src/decode/CeleryEvent.js';
import { decodeEventBody } from '../../src/decode/decodeEventBody.js';
import { amqpFixtureMessages } from '../support/fixtures.js';
import { ASSEMBLER_OPTIONS, assemblerEventsOf, decodeAll } from '../support/pipeline.js';

function assembler(options: Partial<TaskAssemblerOptions> = {}) {
  const finished: FinishedTask[] = [];
  const counters = { evicted: 0, tooManyAttempts: 0, duplicate: 0, late: 0 };
  const now = 1000;
  const instance = new TaskAssembler(
    { ...ASSEMBLER_OPTIONS, ...options },
    (task) => finished.push(task),
    {
      lateEvent: () => counters.late++,
      duplicateEvent: () => counters.duplicate++,
      tasksEvicted: (count) => (counters.evicted += count),
      tooManyAttempts: () => counters.tooManyAttempts++,
    },
    () => now,
  );
  return { assembler: instance, finished, counters };
}

describe('attempts per task', () => {
  it(`keeps ${MAX_ATTEMPTS} attempts of a task started 40,000 times in one message, and counts the rest`, () => {
    const starts = Array.from({ length: 40_000 }, (_, i) => ({
      type: 'task-started',
      uuid: 'storm',
      timestamp: 1_764_000_000 + i * 0.001,
      hostname: 'w@h',
    }));
    const events: TaskEvent[] = [];
    decodeEventBody(
      {
        routingKey: 'task.multi',
        contentType: 'application/json',
        body: Buffer.from(JSON.stringify(starts)),
      },
      { maxMessageBytes: 16 << 20 },
      { event: (e) => events.push(e as TaskEvent), reject: () => undefined },
    );
    const { assembler: a, counters, finished } = assembler();
    // Quadratic work here (each start copying and scanning every earlier attempt) took about
    // 20 s for this message; the test's timeout catches a return of it.
    for (const event of events) a.handle(event);
    expect(a.peek('storm')?.attempts).toHaveLength(MAX_ATTEMPTS);
    expect(counters.tooManyAttempts).toBe(40_000 - MAX_ATTEMPTS);
    // A final event still ends the task; the span has the kept attempts.
    a.handle({ type: 'task-succeeded', uuid: 'storm', timestamp: 1_764_000_100, hostname: 'w@h' });
    a.tick();
    expect(finished.map((f) => f.record.id)).toEqual([]);
    a.flushHeld();
    expect(finished[0]?.record.attempts).toHaveLength(MAX_ATTEMPTS);
  });

  it('appends attempts to the task in place, never to the shared empty list', () => {
    const { assembler: a } = assembler();
    a.handle({ type: 'task-started', uuid: 'a', timestamp: 10, hostname: 'w' });
    a.handle({ type: 'task-started', uuid: 'b', timestamp: 10, hostname: 'w' });
    const first = a.peek('a')?.attempts;
    a.handle({ type: 'task-retried', uuid: 'a', timestamp: 11, hostname: 'w' });
    a.handle({ type: 'task-started', uuid: 'a', timestamp: 12, hostname: 'w' });
    expect(a.peek('a')?.attempts).toBe(first);
    expect(a.peek('a')?.attempts).toHaveLength(2);
    expect(a.peek('b')?.attempts).toHaveLength(1);
  });
});

describe('in-flight memory in bytes', () => {
  const traceback = `Traceback (most recent call last):\n${'x'.repeat(30_000)}\nRuntimeError: boom`;

  it('evicts the oldest tasks past the byte budget, as past the task limit', () => {
    const budget = 2 * 1024 * 1024;
    const { assembler: a, counters, finished } = assembler({ maxInFlightBytes: budget });
    // Running tasks that keep retrying with big tracebacks: about 60 KB each per attempt.
    for (let task = 0; task < 200; task++) {
      const uuid = `big-${task}`;
      a.handle({ type: 'task-received', uuid, timestamp: 10, name: 'proj.big', hostname: 'w' });
      for (let attempt = 0; attempt < 3; attempt++) {
        a.handle({ type: 'task-started', uuid, timestamp: 11 + attempt, hostname: 'w' });
        a.handle({
          type: 'task-retried',
          uuid,
          timestamp: 11.5 + attempt,
          hostname: 'w',
          exception: "RuntimeError('boom')",
          traceback,
        });
      }
      expect(a.inFlightBytes).toBeLessThanOrEqual(budget);
    }
    expect(counters.evicted).toBeGreaterThan(150);
    expect(finished.every((f) => f.completeness === 'evicted')).toBe(true);
    // The oldest went first; the newest are still in flight.
    expect(finished[0]?.record.id).toBe('big-0');
    expect(a.peek('big-199')).toBeDefined();
    expect(a.inFlightCount).toBe(200 - counters.evicted);
  });

  it('tracks what it holds exactly as the tasks come and go (back to zero)', () => {
    const { events } = decodeAll(amqpFixtureMessages());
    const { assembler: a } = assembler({ maxInFlightBytes: 1 << 30 });
    let peak = 0;
    for (const event of assemblerEventsOf(events)) {
      if ('upstream' in event || event.type === 'task-otel-context') continue;
      a.handle(event);
      peak = Math.max(peak, a.inFlightBytes);
    }
    expect(peak).toBeGreaterThan(0);
    a.flushHeld();
    a.expireOlderThan(0, Number.MAX_SAFE_INTEGER);
    expect(a.inFlightCount).toBe(0);
    expect(a.inFlightBytes).toBe(0);
  });

  it('counts a big traceback at no less than its characters', () => {
    const bytes = recordBytes({
      id: 'x',
      receivedTimes: [],
      lastEventAt: 0,
      attempts: [{ traceback }],
    });
    expect(bytes).toBeGreaterThan(traceback.length);
    expect(compactTaskBytes('0f1c21aa-6ded-44aa-84c2-19f562776e2a')).toBeLessThan(512);
  });
});

describe('the shared string table', () => {
  it('never keeps long strings', () => {
    const table = new StringInterner(10);
    const long = 'n'.repeat(MAX_INTERNED_LENGTH + 1);
    expect(table.indexOf(long)).toBe(-1);
    expect(table.intern(long)).toBe(long);
    expect(table.indexOf('short')).toBe(0);
  });

  it('starts over once full and no pending task refers to it, so later names are shared again', () => {
    const { assembler: a } = assembler({ maxInFlightTasks: 100_000 });
    // A flood of 10,000 distinct names fills the table (TaskAssembler's MAX_INTERNED_STRINGS).
    for (let i = 0; i < 10_000; i++) {
      a.handle({ type: 'task-sent', uuid: `f${i}`, timestamp: 10, name: `flood.${i}` });
    }
    expect(a.compactInFlightCount).toBe(10_000);
    // A new name does not fit: that task must be kept as an object.
    a.handle({ type: 'task-sent', uuid: 'real-1', timestamp: 10, name: 'proj.real' });
    expect(a.compactInFlightCount).toBe(10_000);
    // The flood is given up on (age limit): the table empties and starts over.
    a.expireOlderThan(0, Number.MAX_SAFE_INTEGER);
    a.handle({ type: 'task-sent', uuid: 'real-2', timestamp: 20, name: 'proj.real' });
    expect(a.compactInFlightCount).toBe(1);
    expect(a.peek('real-2')?.name).toBe('proj.real');
  });
});
