import { describe, expect, it } from 'vitest';
import { QueueLabelWait, type WaitingCount } from '../../src/metrics/QueueLabelWait.js';

const count = (state: string): WaitingCount => ({ name: 'proj.add', state, worker: 'w1' });

describe('QueueLabelWait', () => {
  function wait(maxTasks = 10, graceMs = 2000, maxCountsPerTask = 4) {
    const out: string[] = [];
    const waits = new QueueLabelWait(maxTasks, maxCountsPerTask, graceMs, (c, queue) =>
      out.push(`${c.state}@${queue ?? '-'}`),
    );
    return { waits, out };
  }

  it("holds a task's counts until its queue is known, then counts them under it in order", () => {
    const { waits, out } = wait();
    expect(waits.hold('a', count('received'), 0)).toBe(true);
    expect(waits.hold('a', count('failed'), 10)).toBe(true);
    expect(out).toEqual([]);
    waits.resolve('a', 'q1');
    expect(out).toEqual(['received@q1', 'failed@q1']);
    expect(waits.size).toBe(0);
    waits.resolve('a', 'q1');
    expect(out).toHaveLength(2);
  });

  it('counts without a queue what waited the grace, oldest first, and only that', () => {
    const { waits, out } = wait();
    waits.hold('a', count('received'), 0);
    waits.hold('b', count('received'), 1500);
    waits.hold('a', count('started'), 1600);
    waits.expire(1999);
    expect(out).toEqual([]);
    waits.expire(2000);
    expect(out).toEqual(['received@-', 'started@-']);
    waits.expire(3499);
    expect(out).toHaveLength(2);
    waits.expire(3500);
    expect(out).toEqual(['received@-', 'started@-', 'received@-']);
  });

  it('expires a later task at its own time once the oldest was resolved before its grace', () => {
    const { waits, out } = wait();
    waits.hold('a', count('received'), 0);
    waits.hold('b', count('received'), 1500);
    waits.resolve('a', 'q1');
    waits.expire(2000);
    expect(out).toEqual(['received@q1']);
    waits.expire(3499);
    expect(out).toEqual(['received@q1']);
    waits.expire(3500);
    expect(out).toEqual(['received@q1', 'received@-']);
    // Empty again: a new count waits its full grace from its own arrival.
    waits.hold('c', count('started'), 10_000);
    waits.expire(11_999);
    expect(out).toHaveLength(2);
    waits.expire(12_000);
    expect(out).toEqual(['received@q1', 'received@-', 'started@-']);
  });

  it('holds no more counts of one task than its bound (a flood of one task id)', () => {
    const { waits, out } = wait(10, 2000, 2);
    expect(waits.hold('a', count('started'), 0)).toBe(true);
    expect(waits.hold('a', count('started'), 0)).toBe(true);
    expect(waits.hold('a', count('started'), 0)).toBe(false);
    waits.resolve('a', 'q1');
    expect(out).toEqual(['started@q1', 'started@q1']);
  });

  it('holds no more tasks than its bound; a task already waiting still gets its counts held', () => {
    const { waits, out } = wait(2);
    expect(waits.hold('a', count('received'), 0)).toBe(true);
    expect(waits.hold('b', count('received'), 0)).toBe(true);
    expect(waits.hold('c', count('received'), 0)).toBe(false);
    expect(waits.hold('a', count('started'), 0)).toBe(true);
    expect(waits.size).toBe(2);
    waits.flush();
    expect(out).toEqual(['received@-', 'started@-', 'received@-']);
    expect(waits.size).toBe(0);
  });
});
