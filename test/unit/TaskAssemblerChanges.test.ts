// TaskAssembler.snapshotChanges must say exactly what changed: the previous capture with the
// changes replayed on it (state/replayJournal.ts) must be the state a whole snapshot gives, tasks
// in the same order (the order eviction follows). Each test runs the same operations on two
// assemblers on one fake clock: one captured by snapshotChanges at every checkpoint, one by
// snapshot, and compares after each checkpoint.
import { describe, expect, it } from 'vitest';
import {
  type AssemblerSnapshot,
  TaskAssembler,
  type TaskAssemblerOptions,
} from '../../src/assemble/TaskAssembler.js';
import {
  isTaskContextEvent,
  type TaskContextEvent,
  type TaskEvent,
} from '../../src/decode/CeleryEvent.js';
import { replayJournal } from '../../src/state/replayJournal.js';
import { interleaved } from '../support/eventOrder.js';
import { amqpCompanionFixtureMessages, amqpFixtureMessages } from '../support/fixtures.js';
import { ASSEMBLER_OPTIONS, assemblerEventsOf, decodeAll } from '../support/pipeline.js';

type AnyEvent = TaskEvent | TaskContextEvent;

const json = (value: unknown): unknown => JSON.parse(JSON.stringify(value)) as unknown;

const counters = {
  lateEvent: () => undefined,
  duplicateEvent: () => undefined,
  tasksEvicted: () => undefined,
};

class Twins {
  now = 1000;
  readonly journaled: TaskAssembler;
  readonly whole: TaskAssembler;
  /** What the journaled side's captures add up to. */
  saved: AssemblerSnapshot;
  checkpoints = 0;
  changedTasks = 0;

  constructor(options: Partial<TaskAssemblerOptions> = {}) {
    const make = () =>
      new TaskAssembler(
        { ...ASSEMBLER_OPTIONS, ...options },
        () => undefined,
        counters,
        () => this.now,
      );
    this.journaled = make();
    this.whole = make();
    expect(this.journaled.snapshotChanges()).toBeUndefined(); // nothing tracked before a snapshot
    this.saved = json(this.journaled.snapshot()) as AssemblerSnapshot;
  }

  both(step: (assembler: TaskAssembler) => void): void {
    step(this.journaled);
    step(this.whole);
  }

  event(event: AnyEvent): void {
    this.both((a) => (isTaskContextEvent(event) ? a.handleContext(event) : a.handle(event)));
  }

  checkpoint(): void {
    const changes = this.journaled.snapshotChanges();
    expect(changes).toBeDefined();
    if (changes === undefined) return;
    this.checkpoints++;
    this.changedTasks += changes.changed.length + changes.added.length;
    // Encoded at once, as the state file does: later events must not change it.
    this.saved = replayJournal(this.saved, [json(changes) as typeof changes]);
    expect(json(this.saved)).toEqual(json(this.whole.snapshot()));
  }
}

/** A small deterministic PRNG (the seed reproduces a failing run). */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

const plainEvents = assemblerEventsOf(decodeAll(amqpFixtureMessages()).events);
const companionEvents = assemblerEventsOf(decodeAll(amqpCompanionFixtureMessages()).events);

describe('TaskAssembler.snapshotChanges', () => {
  it.each([
    ['compact pending tasks', true],
    ['objects only', false],
  ])('replayed on the last capture, gives the snapshot: captured streams (%s)', (_, compact) => {
    for (const seed of [1, 2, 3]) {
      const twins = new Twins({ compactPendingTasks: compact, maxInFlightTasks: 12 });
      const rand = random(seed);
      for (const event of interleaved([...plainEvents, ...companionEvents], seed)) {
        twins.event(event);
        if (rand() < 0.2) {
          twins.now += 700;
          twins.both((a) => a.tick());
        }
        if (rand() < 0.3) twins.checkpoint();
      }
      twins.now += 60_000;
      twins.both((a) => a.tick());
      twins.checkpoint();
      expect(twins.checkpoints).toBeGreaterThan(10);
      expect(twins.changedTasks).toBeGreaterThan(0);
    }
  });

  it('follows lost workers, continuations, expiry, outages, custom events and evictions', () => {
    for (const seed of [11, 12, 13, 14]) {
      const twins = new Twins({ maxInFlightTasks: 20, finishGraceMs: 500 });
      const rand = random(seed);
      const ids = Array.from({ length: 40 }, (_, i) => `task-${i}`);
      const hosts = ['w1@h', 'w2@h'];
      const types: TaskEvent['type'][] = [
        'task-sent',
        'task-received',
        'task-started',
        'task-succeeded',
        'task-failed',
        'task-retried',
        'task-cancelled',
        'task-rejected',
      ];
      let t = 1_700_000_000;
      const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;
      for (let step = 0; step < 1500; step++) {
        t += rand();
        const uuid = pick(ids);
        const hostname = pick(hosts);
        const r = rand();
        if (r < 0.8) {
          const type = pick(types);
          twins.event({ type, uuid, timestamp: t, hostname, name: 'proj.add', rootId: uuid });
        } else if (r < 0.85) {
          twins.both((a) =>
            a.handleCustom({
              type: 'task-progress',
              custom: true,
              uuid,
              timestamp: t,
              hostname,
              fields: { done: step },
              droppedFields: 0,
            }),
          );
        } else if (r < 0.9) {
          twins.both((a) => a.workerLost(hostname, t));
        } else if (r < 0.93) {
          twins.now += 600;
          twins.both((a) => a.tick());
        } else if (r < 0.95) {
          twins.both((a) => a.expireOlderThan(20_000, t * 1000));
        } else if (r < 0.96) {
          const before = twins.journaled.unfinishedLastEvents();
          twins.both((a) => a.giveUpUnchanged(before));
        } else {
          twins.checkpoint();
        }
      }
      twins.both((a) => a.flushHeld());
      twins.checkpoint();
      expect(twins.checkpoints).toBeGreaterThan(30);
    }
  });

  it('tells a lost worker’s tasks, and a continuation that arrives after another task', () => {
    const twins = new Twins({ finishGraceMs: 500 });
    const at = (type: TaskEvent['type'], uuid: string, timestamp: number): TaskEvent => ({
      type,
      uuid,
      timestamp,
      hostname: 'w1@h',
      name: 'proj.add',
    });
    twins.event(at('task-received', 'x', 10));
    twins.event(at('task-started', 'x', 11));
    twins.checkpoint();
    twins.both((a) => a.workerLost('w1@h', 12)); // the open attempt ends LOST: a change
    twins.checkpoint();
    twins.now += 1000;
    twins.both((a) => a.tick()); // exported as lost
    twins.event(at('task-received', 'b', 13));
    twins.event(at('task-received', 'x', 20)); // redelivered: x continues, after b
    expect(twins.whole.snapshot().tasks.map((task) => task.id)).toEqual(['b', 'x']);
    twins.checkpoint();
  });

  it('gives up tracking past a whole snapshot’s worth of ids, until the next snapshot', () => {
    const assembler = new TaskAssembler(
      { ...ASSEMBLER_OPTIONS, maxInFlightTasks: 5, maxFinishedTaskIds: 5 },
      () => undefined,
      counters,
    );
    assembler.snapshot();
    for (let i = 0; i < 11; i++) {
      assembler.handle({
        type: 'task-received',
        uuid: `t${i}`,
        timestamp: 1 + i,
        name: 'proj.add',
      });
    }
    expect(assembler.snapshotChanges()).toBeUndefined();
    assembler.snapshot();
    assembler.handle({ type: 'task-received', uuid: 'late', timestamp: 99, name: 'proj.add' });
    expect(assembler.snapshotChanges()?.added.map((r) => r.id)).toEqual(['late']);
  });

  it('restores the newest exported ids when a replayed journal holds more than it keeps', () => {
    const assembler = new TaskAssembler(
      { ...ASSEMBLER_OPTIONS, maxFinishedTaskIds: 3 },
      () => undefined,
      counters,
    );
    assembler.restore({ tasks: [], finishedIds: ['a', 'b', 'c', 'd', 'e'] });
    expect(assembler.snapshot().finishedIds).toEqual(['c', 'd', 'e']);
  });
});
