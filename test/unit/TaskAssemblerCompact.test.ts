// The compact tier of the in-flight table (pending tasks in CompactTaskTable) must not change
// anything that can be observed. The rules events follow are written once
// (applyTaskMessage.test.ts tests them); what this checks is the tier itself: storing, loading and
// promoting slots, and the eviction order, snapshots and give-ups over tasks kept either way.
// Every test runs the same operations on an assembler with it and on one without
// (`compactPendingTasks: false`, every task an object) and compares everything they hand out,
// after every step.
import { describe, expect, it } from 'vitest';
import {
  type AssemblerSnapshot,
  TaskAssembler,
  type TaskAssemblerOptions,
} from '../../src/assemble/TaskAssembler.js';
import type { FinishedTask, InFlightState, TaskRecord } from '../../src/assemble/TaskRecord.js';
import {
  isTaskContextEvent,
  type TaskContextEvent,
  type TaskEvent,
} from '../../src/decode/CeleryEvent.js';
import { interleaved, shuffled } from '../support/eventOrder.js';
import { amqpCompanionFixtureMessages, amqpFixtureMessages } from '../support/fixtures.js';
import { ASSEMBLER_OPTIONS, assemblerEventsOf, decodeAll } from '../support/pipeline.js';

type AnyEvent = TaskEvent | TaskContextEvent;

/** Plain data as JSON sees it: undefined properties dropped, property order ignored. */
const json = (value: unknown): unknown =>
  value === undefined ? undefined : (JSON.parse(JSON.stringify(value)) as unknown);

interface Side {
  readonly assembler: TaskAssembler;
  readonly finished: FinishedTask[];
  readonly counters: Record<string, number>;
}

/** Two assemblers, with and without the compact tier, on one fake monotonic clock. */
class Twins {
  now = 1000;
  readonly compact: Side;
  readonly reference: Side;

  constructor(options: Partial<TaskAssemblerOptions> = {}) {
    this.compact = this.side({ ...options, compactPendingTasks: true });
    this.reference = this.side({ ...options, compactPendingTasks: false });
  }

  private side(options: Partial<TaskAssemblerOptions>): Side {
    const finished: FinishedTask[] = [];
    const counters = { late: 0, duplicate: 0, evicted: 0, contexts: 0, lateContext: 0 };
    const assembler = new TaskAssembler(
      { ...ASSEMBLER_OPTIONS, ...options },
      (task) => finished.push(task),
      {
        lateEvent: () => counters.late++,
        duplicateEvent: () => counters.duplicate++,
        tasksEvicted: (count) => (counters.evicted += count),
        traceContextsEvicted: (count) => (counters.contexts += count),
        lateTraceContext: () => counters.lateContext++,
      },
      () => this.now,
    );
    return { assembler, finished, counters };
  }

  /** Runs `step` on both and checks that they agree on what it returned and on their state. */
  both<T>(step: (assembler: TaskAssembler) => T): T {
    const expected = step(this.reference.assembler);
    const actual = step(this.compact.assembler);
    expect(json(actual)).toEqual(json(expected));
    this.expectSame();
    return actual;
  }

  /** What Bridge.onEvent does: peek (the metrics' view before the event), then handle. */
  event(event: AnyEvent): void {
    if (isTaskContextEvent(event)) {
      this.both((a) => a.handleContext(event));
      return;
    }
    this.both((a) => json(a.peek(event.uuid)));
    this.both((a) => a.handle(event));
  }

  expectSame(): void {
    const { compact, reference } = this;
    expect(json(compact.finished)).toEqual(json(reference.finished));
    expect(compact.counters).toEqual(reference.counters);
    expect(compact.assembler.inFlightCount).toBe(reference.assembler.inFlightCount);
    // Same tasks, same records, same order (the order eviction follows).
    expect(json(compact.assembler.snapshot())).toEqual(json(reference.assembler.snapshot()));
    expect(visits(compact.assembler)).toEqual(visits(reference.assembler));
    expect(reference.assembler.compactInFlightCount).toBe(0);
  }
}

function visits(assembler: TaskAssembler): [string | undefined, InFlightState][] {
  const out: [string | undefined, InFlightState][] = [];
  assembler.forEachInFlight((name, state) => out.push([name, state]));
  return out;
}

const ev = (
  type: TaskEvent['type'],
  uuid: string,
  timestamp: number,
  extra: Partial<TaskEvent> = {},
): TaskEvent => ({ type, uuid, timestamp, hostname: 'w1@host', ...extra });

const sent = (uuid: string, timestamp: number, extra: Partial<TaskEvent> = {}): TaskEvent =>
  ev('task-sent', uuid, timestamp, {
    hostname: 'client@host',
    name: 'proj.add',
    rootId: uuid,
    retries: 0,
    queue: 'celery',
    exchange: '',
    routingKey: 'celery',
    ...extra,
  });

const received = (uuid: string, timestamp: number, extra: Partial<TaskEvent> = {}): TaskEvent =>
  ev('task-received', uuid, timestamp, { name: 'proj.add', rootId: uuid, retries: 0, ...extra });

const plainEvents = assemblerEventsOf(decodeAll(amqpFixtureMessages()).events);
const companionEvents = assemblerEventsOf(decodeAll(amqpCompanionFixtureMessages()).events);

describe('compact pending tasks behave exactly like objects', () => {
  it('keeps sent and received tasks compact, and promotes them at their start', () => {
    const twins = new Twins();
    twins.event(sent('a', 10));
    twins.event(received('a', 11));
    twins.event(received('b', 12, { rootId: 'a', parentId: 'a', hostname: 'w2@host' }));
    twins.event(sent('c', 13, { queue: '', exchange: undefined, routingKey: undefined }));
    expect(twins.compact.assembler.compactInFlightCount).toBe(3);
    twins.event(ev('task-started', 'a', 14));
    expect(twins.compact.assembler.compactInFlightCount).toBe(2);
    twins.event(ev('task-succeeded', 'a', 15, { runtime: 1 }));
    twins.event(ev('task-started', 'b', 16, { hostname: 'w2@host' }));
    twins.event(ev('task-failed', 'b', 17, { hostname: 'w2@host', exception: 'E()' }));
    twins.now += 60_000;
    twins.both((a) => a.tick());
    expect(twins.compact.finished.map((t) => t.record.id)).toEqual(['a', 'b']);
  });

  it.each<[string, (id: string) => AnyEvent]>([
    ['task-started', (id) => ev('task-started', id, 20)],
    ['task-succeeded', (id) => ev('task-succeeded', id, 20, { runtime: 1 })],
    ['task-failed', (id) => ev('task-failed', id, 20, { exception: 'E()', traceback: 'tb' })],
    ['task-retried', (id) => ev('task-retried', id, 20, { exception: 'Retry()' })],
    ['task-revoked', (id) => ev('task-revoked', id, 20, { terminated: false })],
    ['task-rejected with requeue', (id) => ev('task-rejected', id, 20, { requeue: true })],
    ['task-rejected', (id) => ev('task-rejected', id, 20)],
    ['a second receive', (id) => received(id, 20)],
    ['a second send', (id) => sent(id, 20)],
    ['a receive with an ETA', (id) => received(id, 20, { eta: '2030-01-01T00:00:00+00:00' })],
    ['an older receive with an ETA', (id) => received(id, 5, { eta: '2030-01-01T00:00:00' })],
    ['a send with expires', (id) => sent(id, 20, { expires: '2030-01-01T00:00:00+00:00' })],
    ['a retries count of 300', (id) => sent(id, 9, { retries: 300 })],
    ['a fractional retries count', (id) => sent(id, 9, { retries: 1.5 })],
    [
      "the companion's context",
      (id) => ({
        type: 'task-otel-context',
        uuid: id,
        timestamp: 20,
        hostname: 'w1@host',
        rootId: id,
        group: 'g1',
        groupIndex: 0,
        groupSize: 2,
      }),
    ],
  ])('promotes a pending task on %s', (_, make) => {
    for (const first of [sent, received]) {
      const twins = new Twins();
      twins.event(first('p', 10, { parentId: 'root' }));
      twins.event(received('other', 11));
      expect(twins.compact.assembler.compactInFlightCount).toBe(2);
      twins.event(make('p'));
      twins.event(ev('task-started', 'p', 30));
      twins.event(ev('task-succeeded', 'p', 31, { runtime: 1 }));
      twins.now += 60_000;
      twins.both((a) => a.tick());
      twins.both((a) => a.flushHeld());
    }
  });

  it('keeps a task compact through a duplicate receive and a repeated send', () => {
    const twins = new Twins();
    twins.event(received('a', 11, { retries: 2 }));
    twins.event(received('a', 11));
    twins.event(sent('a', 10, { retries: 1, parentId: 'a' }));
    twins.event(sent('a', 10, { name: 'proj.renamed', parentId: 'x', rootId: 'r' }));
    expect(twins.compact.counters['duplicate']).toBe(1);
    expect(twins.compact.assembler.compactInFlightCount).toBe(1);
  });

  it('captures args in objects only', () => {
    const twins = new Twins({ captureArgs: true });
    twins.event(received('a', 11, { args: '(1,)', kwargs: '{}' }));
    twins.event(received('b', 11));
    expect(twins.compact.assembler.compactInFlightCount).toBe(1);
  });

  it('evicts the oldest task first, compact or not', () => {
    const twins = new Twins({ maxInFlightTasks: 3 });
    twins.event(received('a', 1));
    twins.event(received('b', 2));
    twins.event(ev('task-started', 'b', 3));
    twins.event(sent('c', 4));
    twins.event(received('d', 5));
    twins.event(received('e', 6));
    // Promoting `c` in place keeps it older than `d`.
    twins.event(ev('task-started', 'c', 7));
    twins.event(received('f', 8));
    twins.event(received('g', 9));
    expect(twins.compact.finished.map((t) => [t.record.id, t.completeness])).toEqual([
      ['a', 'evicted'],
      ['b', 'evicted'],
      ['c', 'evicted'],
      ['d', 'evicted'],
    ]);
  });

  it('gives up on compact tasks as on objects', () => {
    const twins = new Twins();
    twins.event(received('old', 1000, { name: 'proj.eta' }));
    twins.event(sent('old-sent', 1000));
    twins.event(received('recent', 5000));
    twins.event(received('running', 5000));
    twins.event(ev('task-started', 'running', 5001));
    twins.both((a) => a.expireOlderThan(3600_000, 5100 * 1000));
    expect(twins.compact.finished.map((t) => t.record.id)).toEqual(['old', 'old-sent']);

    twins.event(received('waiting', 5001));
    twins.event(sent('queued', 5002));
    twins.both((a) => a.workerLost('w1@host', 5010));
    // A lost task is held for the grace period (InterruptedTasks), then exported.
    twins.now += ASSEMBLER_OPTIONS.finishGraceMs;
    twins.both((a) => a.tick());
    const before = twins.both((a) => a.unfinishedLastEvents());
    expect(before.size).toBe(3);
    twins.event(sent('recent', 5003));
    twins.both((a) => a.giveUpUnchanged(before));
    expect(twins.compact.finished.map((t) => [t.record.id, t.completeness])).toEqual([
      ['old', 'expired'],
      ['old-sent', 'expired'],
      ['running', 'lost'],
      ['waiting', 'outage'],
      ['queued', 'outage'],
    ]);
    expect(twins.compact.assembler.compactInFlightCount).toBe(1);
  });

  it('lets a finished child wait on a compact root that was received', () => {
    const twins = new Twins();
    // The companion is in use: a finished child waits until its root's context is known.
    twins.event({ type: 'task-otel-context', uuid: 'other', timestamp: 1, hostname: 'w1@host' });
    twins.event(sent('child', 1, { rootId: 'root', parentId: 'root' }));
    twins.event(received('child', 2, { rootId: 'root', parentId: 'root' }));
    twins.event(ev('task-started', 'child', 3));
    twins.event(ev('task-succeeded', 'child', 4, { runtime: 1 }));
    expect(twins.compact.finished).toHaveLength(0);
    twins.event(sent('root', 0.5));
    twins.event(received('root', 5));
    expect(twins.compact.finished.map((t) => t.record.id)).toEqual(['child']);
    // `other` became an object with its context; the root is still compact.
    expect(twins.compact.assembler.compactInFlightCount).toBe(1);
  });

  it('round-trips compact tasks through a snapshot and back into compact slots', () => {
    const twins = new Twins();
    twins.event(sent('s', 10, { parentId: 'p', rootId: 'r' }));
    twins.event(received('r', 11, { hostname: 'w9@host', retries: 3 }));
    twins.event(sent('sr', 12));
    twins.event(received('sr', 11.5, { hostname: undefined }));
    twins.event(received('running', 13));
    twins.event(ev('task-started', 'running', 14));
    twins.event(received('eta', 15, { eta: '2030-01-01T00:00:00' }));
    const snapshot = json(twins.compact.assembler.snapshot()) as AssemblerSnapshot;
    expect(snapshot.tasks.map((t) => t.id)).toEqual(['s', 'r', 'sr', 'running', 'eta']);
    const restored = new Twins();
    restored.both((a) => a.restore(json(snapshot) as AssemblerSnapshot));
    expect(restored.compact.assembler.compactInFlightCount).toBe(3);
    expect(json(restored.compact.assembler.snapshot())).toEqual(snapshot);
    // And they go on as the originals would.
    for (const twin of [twins, restored]) {
      twin.event(received('s', 20));
      twin.event(ev('task-started', 'sr', 21));
      twin.event(received('r', 11));
      twin.event(received('r', 22));
    }
    expect(json(restored.compact.assembler.snapshot())).toEqual(
      json(twins.compact.assembler.snapshot()),
    );
  });

  it('restores records that do not fit as objects', () => {
    const base: TaskRecord = {
      id: 'a',
      name: 'proj.add',
      receivedAt: 10,
      receivedTimes: [10],
      lastEventAt: 10,
      messageAt: 10,
      attempts: [],
    };
    const odd: Partial<Record<keyof TaskRecord, unknown>>[] = [
      { receivedTimes: [10, 11] },
      { receivedTimes: [] },
      { lastEventAt: 12 },
      { messageAt: 9 },
      { eta: '2030-01-01T00:00:00' },
      { workerHostname: 'w1', workerHostnameAt: 9 },
      { workerHostnameAt: 10 },
      { retries: 255 },
      { retries: -1 },
      { retries: '1' },
      { name: 42 },
      { final: { state: 'SUCCESS', at: 11 } },
      { attempts: [{ startedAt: 11 }] },
      { groupId: 'g' },
      { unknown: 1 } as Partial<Record<keyof TaskRecord, unknown>>,
      { sentAt: Number.NaN },
    ];
    for (const change of odd) {
      const record = { ...base, ...change, id: JSON.stringify(change) } as TaskRecord;
      const twins = new Twins();
      twins.both((a) => a.restore({ tasks: [record], finishedIds: [] }));
      expect(twins.compact.assembler.compactInFlightCount, JSON.stringify(change)).toBe(0);
    }
    const twins = new Twins();
    twins.both((a) => a.restore({ tasks: [base], finishedIds: [] }));
    expect(twins.compact.assembler.compactInFlightCount).toBe(1);
  });

  it('shows a compact task to peek as the record it stands for', () => {
    const twins = new Twins();
    twins.event(sent('a', 10, { parentId: 'p' }));
    const view = twins.compact.assembler.peek('a');
    expect(json(view)).toEqual(json(twins.reference.assembler.peek('a')));
    expect(view?.rootId).toBe('a');
    expect(view?.receivedTimes).toEqual([]);
    twins.event(received('a', 11));
    expect(twins.compact.assembler.peek('a')?.receivedTimes).toEqual([11]);
    expect(twins.compact.assembler.peek('missing')).toBeUndefined();
  });

  it('reports where each task stands', () => {
    const twins = new Twins();
    twins.event(sent('queued', 1, { name: 'proj.q' }));
    twins.event(received('waiting', 2, { name: 'proj.w' }));
    twins.event(received('running', 3, { name: 'proj.r' }));
    twins.event(ev('task-started', 'running', 4));
    twins.event(ev('task-started', 'unnamed', 5));
    twins.event(ev('task-succeeded', 'unnamed', 6));
    expect(visits(twins.compact.assembler)).toEqual([
      ['proj.q', 'sent'],
      ['proj.w', 'waiting'],
      ['proj.r', 'running'],
      [undefined, 'finished'],
    ]);
  });

  describe('on the captured streams, in any order the broker can deliver', () => {
    for (const [label, events] of [
      ['plain', plainEvents],
      ['companion', companionEvents],
    ] as const) {
      it.each(Array.from({ length: 15 }, (_, i) => i + 1))(`${label}, seed %i`, (seed) => {
        for (const order of [interleaved(events, seed), shuffled(events, seed)]) {
          for (const maxInFlightTasks of [10_000, 4]) {
            const twins = new Twins({ maxInFlightTasks });
            for (const event of order) twins.event(event);
            twins.now += 60_000;
            twins.both((a) => a.tick());
            expect(twins.compact.finished.length).toBeGreaterThan(0);
          }
        }
      });
    }
  });

  it('agrees on random streams of every kind of event and operation', () => {
    let state = 7;
    const random = (): number => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return state / 2147483648;
    };
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const maybe = <T>(value: T, p = 0.5): T | undefined => (random() < p ? value : undefined);
    const ids = ['t1', 't2', 't3', 't4', 't5', 't6'];
    const types: TaskEvent['type'][] = [
      'task-sent',
      'task-received',
      'task-sent',
      'task-received',
      'task-started',
      'task-succeeded',
      'task-failed',
      'task-retried',
      'task-revoked',
      'task-rejected',
    ];
    for (let run = 0; run < 40; run++) {
      const twins = new Twins({
        maxInFlightTasks: 1 + Math.floor(random() * 5),
        captureArgs: random() < 0.3,
        finishGraceMs: 50,
      });
      for (let step = 0; step < 60; step++) {
        const roll = random();
        const id = pick(ids);
        const at = 100 + Math.floor(random() * 8);
        if (roll < 0.8) {
          twins.event(
            ev(pick(types), id, at, {
              hostname: maybe(pick(['w1@host', 'w2@host']), 0.9),
              name: maybe(pick(['proj.a', 'proj.b'])),
              rootId: maybe(pick([id, 't1'])),
              parentId: maybe(pick([id, 't2'])),
              retries: maybe(pick([0, 1, 2])),
              eta: maybe('2030-01-01T00:00:00', 0.1),
              expires: maybe('2030-01-01T00:00:00', 0.1),
              queue: maybe(pick(['celery', ''])),
              exchange: maybe(''),
              routingKey: maybe('celery'),
              args: maybe('(1,)', 0.3),
              runtime: maybe(0.5),
              requeue: maybe(true),
            }),
          );
        } else if (roll < 0.85) {
          twins.event({
            type: 'task-otel-context',
            uuid: id,
            timestamp: at,
            rootId: maybe(pick([id, 't1'])),
            group: maybe('g'),
            chord: maybe('t6', 0.2),
          });
        } else if (roll < 0.9) {
          twins.now += 30;
          twins.both((a) => a.tick());
        } else if (roll < 0.93) {
          const now = 104_000 + Math.floor(random() * 4000);
          twins.both((a) => a.expireOlderThan(1000, now));
        } else if (roll < 0.96) {
          const worker = pick(['w1@host', 'w2@host']);
          twins.both((a) => a.workerLost(worker, 110));
        } else {
          const before = twins.both((a) => a.unfinishedLastEvents());
          twins.event(ev(pick(types), id, at));
          twins.both((a) => a.giveUpUnchanged(before));
        }
      }
      twins.both((a) => a.flushHeld());
    }
  });
});
