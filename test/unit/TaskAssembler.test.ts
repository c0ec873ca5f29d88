import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { spanIdFor, traceIdFor } from '../../src/shared/deterministicIds.js';
import type { TaskEvent } from '../../src/decode/CeleryEvent.js';
import { amqpFixtureMessages } from '../support/fixtures.js';
import { assemble, decodeAll, spanSummary, taskEventsOf } from '../support/pipeline.js';
import { interleaved, shuffled } from '../support/eventOrder.js';

const fixtureEvents = taskEventsOf(decodeAll(amqpFixtureMessages()).events);

const ids = {
  chainRoot: '8abf5333-9416-4b4b-a788-283abf1d7402',
  chainMul: 'd77e04e7',
  chainLast: '5f1628a2',
  fail: 'ac326b74-438b-4631-ac1e-812d1b3f24f0',
  flaky: 'bcc07010-147c-4dfd-9dfe-230cf1439d4e',
  spawn: 'e9391be9',
  revoked: 'fd851307',
};

function fullId(prefix: string): string {
  const event = fixtureEvents.find((e) => e.uuid.startsWith(prefix));
  if (event === undefined) throw new Error(`no task ${prefix} in the fixture`);
  return event.uuid;
}

function taskSpan(spans: ReadableSpan[], prefix: string): ReadableSpan {
  const id = fullId(prefix);
  const found = spans.filter(
    (s) => s.kind === SpanKind.CONSUMER && s.attributes['celery.task.id'] === id,
  );
  expect(found).toHaveLength(1);
  return found[0] as ReadableSpan;
}

function attemptSpans(spans: ReadableSpan[], prefix: string): ReadableSpan[] {
  const id = fullId(prefix);
  return spans
    .filter((s) => s.kind === SpanKind.INTERNAL && s.attributes['celery.task.id'] === id)
    .sort(
      (a, b) => Number(a.attributes['celery.attempt']) - Number(b.attributes['celery.attempt']),
    );
}

const seconds = (time: [number, number]): number => time[0] + time[1] / 1e9;

describe('TaskAssembler + taskSpans on the captured stream', () => {
  const run = assemble(fixtureEvents);
  const taskIds = new Set(fixtureEvents.map((e) => e.uuid));

  it('makes exactly one task span per task id, all complete', () => {
    const consumerSpans = run.spans.filter((s) => s.kind === SpanKind.CONSUMER);
    expect(consumerSpans).toHaveLength(taskIds.size);
    expect(new Set(consumerSpans.map((s) => s.attributes['celery.task.id']))).toEqual(taskIds);
    expect(run.finished.every((task) => task.completeness === 'complete')).toBe(true);
    expect(run.counters).toEqual({ late: 0, duplicate: 0, evicted: 0 });
  });

  it('nests a chain in one trace under its root task', () => {
    const root = taskSpan(run.spans, ids.chainRoot);
    const mul = taskSpan(run.spans, ids.chainMul);
    const last = taskSpan(run.spans, ids.chainLast);
    const traceId = ids.chainRoot.replace(/-/g, '');
    for (const span of [root, mul, last]) expect(span.spanContext().traceId).toBe(traceId);
    expect(root.parentSpanContext).toBeUndefined();
    expect(mul.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    expect(last.parentSpanContext?.spanId).toBe(mul.spanContext().spanId);
    expect(mul.name).toBe('proj.mul');
    expect(mul.attributes).toMatchObject({
      'celery.task.name': 'proj.mul',
      'celery.task.state': 'SUCCESS',
      'celery.task.root_id': ids.chainRoot,
      'celery.task.parent_id': ids.chainRoot,
      'celery.worker.hostname': 'w1@vm',
      'messaging.system': 'rabbitmq',
      'messaging.destination.name': 'celery',
      'messaging.message.id': fullId(ids.chainMul),
    });
  });

  it('nests tasks spawned with .delay() under the spawning task', () => {
    const spawn = taskSpan(run.spans, ids.spawn);
    const children = run.spans.filter(
      (s) =>
        s.kind === SpanKind.CONSUMER && s.attributes['celery.task.parent_id'] === fullId(ids.spawn),
    );
    expect(children).toHaveLength(2);
    for (const child of children) {
      expect(child.parentSpanContext?.spanId).toBe(spawn.spanContext().spanId);
      expect(child.spanContext().traceId).toBe(spawn.spanContext().traceId);
    }
  });

  it('starts at task-sent, ends at the final event, with the queue wait before the attempt', () => {
    const span = taskSpan(run.spans, ids.chainRoot);
    const sent = fixtureEvents.find((e) => e.uuid === ids.chainRoot && e.type === 'task-sent');
    const succeeded = fixtureEvents.find(
      (e) => e.uuid === ids.chainRoot && e.type === 'task-succeeded',
    );
    const started = fixtureEvents.find(
      (e) => e.uuid === ids.chainRoot && e.type === 'task-started',
    );
    expect(seconds(span.startTime)).toBeCloseTo(sent?.timestamp ?? 0, 6);
    expect(seconds(span.endTime)).toBeCloseTo(succeeded?.timestamp ?? 0, 6);
    const [attempt] = attemptSpans(run.spans, ids.chainRoot);
    expect(attempt?.name).toBe('run/proj.add');
    expect(attempt?.parentSpanContext?.spanId).toBe(span.spanContext().spanId);
    expect(seconds(attempt?.startTime ?? [0, 0])).toBeCloseTo(started?.timestamp ?? 0, 6);
    expect(attempt?.attributes['celery.attempt.outcome']).toBe('SUCCESS');
  });

  it('puts the chained Python traceback on a failed task', () => {
    const span = taskSpan(run.spans, ids.fail);
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes['celery.task.state']).toBe('FAILURE');
    const exception = span.events.find((e) => e.name === 'exception');
    expect(exception?.attributes).toMatchObject({
      'exception.type': 'RuntimeError',
      'exception.message': 'payment step failed',
    });
    const stack = String(exception?.attributes?.['exception.stacktrace']);
    expect(stack).toContain('ValueError: boom: checksum mismatch in order 42');
    expect(stack).toContain('The above exception was the direct cause of the following exception');
    expect(stack.endsWith('RuntimeError: payment step failed\n')).toBe(true);
    const [attempt] = attemptSpans(run.spans, ids.fail);
    expect(attempt?.attributes['celery.attempt.outcome']).toBe('FAILURE');
    expect(attempt?.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('records every retry on the attempt it ended, and the final outcome on the task', () => {
    const span = taskSpan(run.spans, ids.flaky);
    expect(span.attributes).toMatchObject({
      'celery.task.state': 'SUCCESS',
      'celery.task.retries': 2,
      'celery.task.attempts': 3,
    });
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    // The retry message names the task as its own parent: no cycle, it stays a root.
    expect(span.parentSpanContext).toBeUndefined();
    expect(span.attributes['celery.task.parent_id']).toBeUndefined();
    const attempts = attemptSpans(run.spans, ids.flaky);
    expect(attempts.map((a) => a.attributes['celery.attempt.outcome'])).toEqual([
      'RETRY',
      'RETRY',
      'SUCCESS',
    ]);
    expect(attempts.map((a) => a.events[0]?.attributes?.['exception.message'])).toEqual([
      'transient, try 0',
      'transient, try 1',
      undefined,
    ]);
    expect(attempts[0]?.events[0]?.attributes?.['exception.type']).toBe('ConnectionError');
    expect(new Set(attempts.map((a) => a.spanContext().spanId)).size).toBe(3);
    for (let i = 1; i < attempts.length; i++) {
      expect(seconds(attempts[i]?.startTime ?? [0, 0])).toBeGreaterThan(
        seconds(attempts[i - 1]?.endTime ?? [0, 0]),
      );
    }
  });

  it('ends a task revoked before it ran as REVOKED, without attempts', () => {
    const span = taskSpan(run.spans, ids.revoked);
    expect(span.attributes['celery.task.state']).toBe('REVOKED');
    expect(span.attributes['celery.task.eta']).toBeDefined();
    expect(attemptSpans(run.spans, ids.revoked)).toHaveLength(0);
    expect(span.events.map((e) => e.name)).toEqual(['task-revoked']);
  });

  it('exports no args, kwargs or results unless asked to', () => {
    expect(
      run.spans.some(
        (s) => 'celery.task.args' in s.attributes || 'celery.task.result' in s.attributes,
      ),
    ).toBe(false);
    const opted = assemble(fixtureEvents, { captureArgs: true, captureResult: true });
    expect(taskSpan(opted.spans, ids.chainRoot).attributes).toMatchObject({
      'celery.task.args': '(2, 2)',
      'celery.task.kwargs': '{}',
      'celery.task.result': '4',
    });
  });

  it('derives ids from Celery ids only', () => {
    const span = taskSpan(run.spans, ids.chainMul);
    expect(span.spanContext().spanId).toBe(spanIdFor(fullId(ids.chainMul)));
    expect(span.spanContext().traceId).toBe(traceIdFor(ids.chainRoot));
  });
});

describe('TaskAssembler under real-world disorder', () => {
  const baseline = assemble(fixtureEvents).spans.map(spanSummary);
  const sortKey = (s: Record<string, unknown>): string => `${String(s['spanId'])}`;
  const sorted = (spans: Record<string, unknown>[]) =>
    [...spans].sort((a, b) => sortKey(a).localeCompare(sortKey(b)));

  it("gives the same spans however the processes' event streams interleave", () => {
    for (let seed = 1; seed <= 60; seed++) {
      const run = assemble(interleaved(fixtureEvents, seed));
      expect(sorted(run.spans.map(spanSummary)), `seed ${seed}`).toEqual(sorted(baseline));
      expect(run.finished.length, `seed ${seed}`).toBe(
        new Set(fixtureEvents.map((e) => e.uuid)).size,
      );
    }
  });

  it('makes one span per task, no cycle and no crash even in a fully random order', () => {
    const taskIds = new Set(fixtureEvents.map((e) => e.uuid));
    for (let seed = 1; seed <= 60; seed++) {
      const run = assemble(shuffled(fixtureEvents, seed));
      const consumer = run.spans.filter((s) => s.kind === SpanKind.CONSUMER);
      expect(consumer, `seed ${seed}`).toHaveLength(taskIds.size);
      const bySpanId = new Map(run.spans.map((s) => [s.spanContext().spanId, s]));
      expect(bySpanId.size, `seed ${seed}`).toBe(run.spans.length);
      for (const span of run.spans) {
        // Walk up the parents: must end at a root without revisiting a span.
        const seen = new Set<string>();
        let current: ReadableSpan | undefined = span;
        while (current?.parentSpanContext !== undefined) {
          const id = current.spanContext().spanId;
          expect(seen.has(id), `cycle at seed ${seed}`).toBe(false);
          seen.add(id);
          expect(current.parentSpanContext.traceId).toBe(current.spanContext().traceId);
          current = bySpanId.get(current.parentSpanContext.spanId);
        }
      }
    }
  });

  it('ignores duplicated events: no second span, same content', () => {
    // A duplicate is delivered right after the original (e.g. a redelivered message).
    const doubled = fixtureEvents.flatMap((event, i) => (i % 3 === 0 ? [event, event] : [event]));
    const run = assemble(doubled);
    const consumer = run.spans.filter((s) => s.kind === SpanKind.CONSUMER);
    expect(consumer).toHaveLength(new Set(fixtureEvents.map((e) => e.uuid)).size);
    expect(sorted(run.spans.map(spanSummary))).toEqual(sorted(baseline));
  });

  it('exports a complete task at once and holds one whose task-sent is still missing', () => {
    const id = fullId(ids.chainRoot);
    const own = fixtureEvents.filter((e) => e.uuid === id);
    const others = fixtureEvents.filter((e) => e.type === 'task-sent' && e.uuid !== id).slice(0, 1);
    const withoutSent = own.filter((e) => e.type !== 'task-sent');
    // A client that sends task-sent was seen, so this task's own task-sent is awaited.
    const run = assemble([...others, ...withoutSent], {}, {}, false);
    expect(run.spans.filter((s) => s.attributes['celery.task.id'] === id)).toHaveLength(0);
    run.assembler.handle(own.find((e) => e.type === 'task-sent') as TaskEvent);
    const span = taskSpan(run.spans, ids.chainRoot);
    expect(seconds(span.startTime)).toBeCloseTo(
      own.find((e) => e.type === 'task-sent')?.timestamp ?? 0,
      6,
    );
  });

  it('exports what it has after the grace period when events never come (bridge started mid-flight)', () => {
    const id = fullId(ids.flaky);
    const lastAttemptOnly = fixtureEvents.filter((e) => e.uuid === id && e.timestamp > 1795736646);
    expect(lastAttemptOnly.map((e) => e.type)).toEqual(['task-started', 'task-succeeded']);
    const run = assemble(lastAttemptOnly, { finishGraceMs: 500 }, {}, false);
    expect(run.spans).toHaveLength(0);
    run.advance(499);
    expect(run.spans).toHaveLength(0);
    run.advance(2);
    const span = run.spans.find((s) => s.kind === SpanKind.CONSUMER);
    expect(span?.name).toBe('celery.task');
    expect(span?.attributes['celery.task.incomplete']).toBe('held_too_long');
    expect(span?.attributes['celery.task.state']).toBe('SUCCESS');
  });

  it('ends a late event for an exported task as a counted late event, not a second span', () => {
    const run = assemble(fixtureEvents);
    const before = run.spans.length;
    const late = fixtureEvents.find((e) => e.type === 'task-succeeded') as TaskEvent;
    run.assembler.handle(late);
    run.advance(60_000);
    expect(run.spans).toHaveLength(before);
    expect(run.counters.late).toBe(1);
  });

  it('keeps the in-flight table bounded and exports evicted tasks as incomplete', () => {
    const events: TaskEvent[] = [];
    for (let i = 0; i < 50; i++) {
      events.push({
        type: 'task-received',
        uuid: `t${i}`,
        timestamp: 100 + i,
        name: 'proj.slow',
        hostname: 'w',
      });
    }
    const run = assemble(events, { maxInFlightTasks: 10 }, {}, false);
    expect(run.assembler.inFlightCount).toBe(10);
    expect(run.counters.evicted).toBe(40);
    expect(run.finished.filter((t) => t.completeness === 'evicted')).toHaveLength(40);
    const span = run.spans.find((s) => s.attributes['celery.task.id'] === 't0');
    expect(span?.attributes).toMatchObject({
      'celery.task.state': 'RECEIVED',
      'celery.task.incomplete': 'evicted',
    });
    expect(span?.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('treats a rejected-and-requeued attempt as not final', () => {
    const t = (
      type: TaskEvent['type'],
      timestamp: number,
      extra: Partial<TaskEvent> = {},
    ): TaskEvent => ({
      type,
      uuid: 'r1',
      timestamp,
      hostname: 'w',
      ...extra,
    });
    const run = assemble([
      t('task-received', 1, { name: 'proj.x' }),
      t('task-started', 2),
      t('task-rejected', 3, { requeue: true }),
      t('task-received', 4, { name: 'proj.x' }),
      t('task-started', 5),
      t('task-rejected', 6, { requeue: false }),
    ]);
    const span = run.spans.find((s) => s.kind === SpanKind.CONSUMER);
    expect(span?.attributes).toMatchObject({
      'celery.task.state': 'REJECTED',
      'celery.task.received_count': 2,
    });
    expect(
      run.spans
        .filter((s) => s.kind === SpanKind.INTERNAL)
        .map((s) => s.attributes['celery.attempt.outcome']),
    ).toEqual(['REJECTED', 'REJECTED']);
  });
});
