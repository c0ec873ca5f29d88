import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AbandonedTaskSweeper } from '../../src/assemble/AbandonedTaskSweeper.js';
import { TaskAssembler } from '../../src/assemble/TaskAssembler.js';
import type { FinishedTask } from '../../src/assemble/TaskRecord.js';
import type { TaskEvent } from '../../src/decode/CeleryEvent.js';
import { Logger } from '../../src/log/Logger.js';
import { WorkerLiveness } from '../../src/assemble/WorkerLiveness.js';
import { BridgeStats } from '../../src/telemetry/BridgeStats.js';
import { ASSEMBLER_OPTIONS } from '../support/pipeline.js';

/** The sweeper's timers on a fake clock, over a real assembler and liveness tracker. */
function setup() {
  const finished: FinishedTask[] = [];
  const stats = new BridgeStats(new Logger('error', () => undefined));
  const assembler = new TaskAssembler(
    ASSEMBLER_OPTIONS,
    (task) => finished.push(task),
    stats,
    () => Date.now(),
  );
  const liveness = new WorkerLiveness(60_000, 100, () => Date.now());
  const sweeper = new AbandonedTaskSweeper(
    assembler,
    liveness,
    stats,
    new Logger('error', () => undefined),
    { maxTaskAgeMs: 3_600_000, outageGraceMs: 300_000 },
  );
  const now = (): number => Date.now() / 1000;
  const event = (type: TaskEvent['type'], uuid: string, extra: Partial<TaskEvent> = {}) =>
    assembler.handle({ type, uuid, timestamp: now(), hostname: 'w1@h', ...extra });
  return { finished, stats, assembler, liveness, sweeper, event };
}

describe('AbandonedTaskSweeper', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2026-11-27T06:00:00Z'));
  });
  afterEach(() => vi.useRealTimers());

  it('ends the running tasks of a worker that stops heartbeating as lost', () => {
    const { finished, stats, assembler, liveness, sweeper, event } = setup();
    sweeper.start();
    liveness.onEvent({ type: 'worker-heartbeat', hostname: 'w1@h', timestamp: 0, freq: 2 });
    event('task-received', 'running', { name: 'proj.add' });
    event('task-started', 'running');
    event('task-received', 'waiting', { name: 'proj.add' });
    // Celery: offline after 2 x freq without a heartbeat.
    vi.advanceTimersByTime(5_000);
    expect(stats.total('tasksLost')).toBe(1);
    // Held for the finish grace period (its real outcome or a redelivery may still come).
    expect(finished).toEqual([]);
    vi.advanceTimersByTime(ASSEMBLER_OPTIONS.finishGraceMs);
    assembler.tick();
    expect(finished.map((t) => [t.record.id, t.completeness])).toEqual([['running', 'lost']]);
    sweeper.stop();
  });

  it('after an outage, exports the tasks that got no event within the grace period', () => {
    const { finished, stats, assembler, sweeper, event } = setup();
    event('task-received', 'quiet', { name: 'proj.add' });
    event('task-received', 'moving', { name: 'proj.add' });
    sweeper.afterOutage();
    vi.advanceTimersByTime(100_000);
    event('task-started', 'moving');
    vi.advanceTimersByTime(200_000);
    expect(finished.map((t) => [t.record.id, t.completeness])).toEqual([['quiet', 'outage']]);
    expect(stats.total('tasksOutage')).toBe(1);
    expect(assembler.inFlightCount).toBe(1);
    sweeper.stop();
  });

  it('expires tasks past the age limit, and stops its timers on stop', () => {
    const { finished, stats, sweeper, event } = setup();
    sweeper.start();
    event('task-received', 'old', { name: 'proj.add' });
    vi.advanceTimersByTime(3_600_000 + 60_000);
    expect(finished.map((t) => [t.record.id, t.completeness])).toEqual([['old', 'expired']]);
    expect(stats.total('tasksExpired')).toBe(1);
    sweeper.stop();
    event('task-received', 'after', { name: 'proj.add' });
    vi.advanceTimersByTime(2 * 3_600_000);
    expect(finished).toHaveLength(1);
  });
});

describe('AbandonedTaskSweeper memory', () => {
  it('lets go of the snapshot of an outage once its check ran', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const stats = new BridgeStats(new Logger('error', () => undefined));
    const assembler = new TaskAssembler(ASSEMBLER_OPTIONS, () => undefined, stats);
    const sweeper = new AbandonedTaskSweeper(
      assembler,
      new WorkerLiveness(60_000, 100),
      stats,
      new Logger('error', () => undefined),
      { maxTaskAgeMs: 3_600_000, outageGraceMs: 1 },
    );
    assembler.handle({ type: 'task-received', uuid: 't', timestamp: 1, name: 'proj.add' });
    let snapshot: WeakRef<object> | undefined;
    const take = assembler.unfinishedLastEvents.bind(assembler);
    // Not vi.spyOn: a mock keeps every value it returned.
    assembler.unfinishedLastEvents = () => {
      const taken = take();
      snapshot = new WeakRef(taken);
      return taken;
    };
    sweeper.afterOutage();
    await new Promise((resolve) => setTimeout(resolve, 20));
    gc();
    expect(snapshot?.deref()).toBeUndefined();
    sweeper.stop();
  });
});
