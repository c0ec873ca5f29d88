import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { spanIdFor } from '../../src/shared/deterministicIds.js';
import { TaskAssembler } from '../../src/assemble/TaskAssembler.js';
import type { FinishedTask } from '../../src/assemble/TaskRecord.js';
import {
  type CeleryEvent,
  isTaskContextEvent,
  isTaskCustomEvent,
  isTaskEvent,
  isWorkerEvent,
} from '../../src/decode/CeleryEvent.js';
import { decodeEventBody } from '../../src/decode/decodeEventBody.js';
import type { DecodeRejection } from '../../src/shared/DecodeRejection.js';
import { taskSpans } from '../../src/export/taskSpans.js';
import { Logger } from '../../src/log/Logger.js';
import { BridgeStats } from '../../src/telemetry/BridgeStats.js';
import type { RawEventMessage } from '../../src/shared/RawEventMessage.js';
import { amqpFixtureFile } from '../support/fixtures.js';
import { ASSEMBLER_OPTIONS, SPAN_OPTIONS } from '../support/pipeline.js';

/**
 * Issue 14's task lifecycle cases, on real captures of Celery 5.2.6 / 5.6.3 workers
 * (test/fixtures/amqp-shutdown-variants.jsonl, amqp-celery-5.6.3.jsonl) and on events written
 * from the Celery source where no worker here can produce them
 * (test/fixtures/amqp-from-celery-source.jsonl: each line names the file and function it follows).
 */

interface Run {
  spans: ReadableSpan[];
  finished: FinishedTask[];
  rejections: DecodeRejection[];
  counters: { late: number; duplicate: number; customDropped: number };
  assembler: TaskAssembler;
  /** Moves the monotonic clock and runs the assembler's timer. */
  advance(ms: number): void;
  feed(messages: RawEventMessage[]): void;
}

/**
 * What Bridge does with each message: decode, then the assembler; a `worker-offline` ends the
 * worker's running tasks at once (what AbandonedTaskSweeper does within a second).
 */
function run(): Run {
  let now = 1000;
  const spans: ReadableSpan[] = [];
  const finished: FinishedTask[] = [];
  const rejections: DecodeRejection[] = [];
  const counters = { late: 0, duplicate: 0, customDropped: 0 };
  const assembler = new TaskAssembler(
    ASSEMBLER_OPTIONS,
    (task) => {
      finished.push(task);
      spans.push(...taskSpans(task, SPAN_OPTIONS));
    },
    {
      lateEvent: () => counters.late++,
      duplicateEvent: () => counters.duplicate++,
      tasksEvicted: () => undefined,
      customEventsDropped: (count) => (counters.customDropped += count),
    },
    () => now,
  );
  const onEvent = (event: CeleryEvent): void => {
    if (isTaskCustomEvent(event)) assembler.handleCustom(event);
    else if (isTaskEvent(event)) assembler.handle(event);
    else if (isTaskContextEvent(event)) assembler.handleContext(event);
    else if (isWorkerEvent(event) && event.type === 'worker-offline') {
      assembler.workerLost(event.hostname, event.timestamp);
    }
  };
  return {
    spans,
    finished,
    rejections,
    counters,
    assembler,
    advance(ms) {
      now += ms;
      assembler.tick();
    },
    feed(messages) {
      for (const message of messages) {
        decodeEventBody(
          message,
          { maxMessageBytes: 1 << 20 },
          { event: onEvent, reject: (r) => rejections.push(r) },
        );
      }
    },
  };
}

const shutdown = amqpFixtureFile('amqp-shutdown-variants.jsonl');
const fromSource = amqpFixtureFile('amqp-from-celery-source.jsonl');

/** The messages that carry task `id` (or, with `workers`, that worker's events). */
function about(messages: RawEventMessage[], id: string, workers: string[] = []): RawEventMessage[] {
  return messages.filter((m) => {
    const body = m.body.toString('utf8');
    return (
      body.includes(id.replace(/-/g, '')) ||
      body.includes(id) ||
      workers.some((w) => body.includes(`"hostname": "${w}"`) && m.routingKey.startsWith('worker.'))
    );
  });
}

function taskSpansOf(spans: ReadableSpan[], id: string): ReadableSpan[] {
  return spans.filter((s) => s.kind === SpanKind.CONSUMER && s.attributes['celery.task.id'] === id);
}

function attemptsOf(spans: ReadableSpan[], id: string): ReadableSpan[] {
  return spans
    .filter((s) => s.kind === SpanKind.INTERNAL && s.attributes['celery.task.id'] === id)
    .sort(
      (a, b) => Number(a.attributes['celery.attempt']) - Number(b.attributes['celery.attempt']),
    );
}

const seconds = (time: [number, number]): number => time[0] + time[1] / 1e9;

describe('task-cancelled (Celery 5.5+ cold shutdown, 5.1+ connection loss)', () => {
  // 5.6.3 cold shutdown: task-cancelled stamped before worker-offline, arriving after it.
  const COLD = 'e621331c';

  it('ends the attempt CANCELLED, not lost, though it arrives after worker-offline', () => {
    const r = run();
    const id = fullId(shutdown, COLD);
    r.feed(about(shutdown, id, ['modernremap@vm']));
    r.advance(ASSEMBLER_OPTIONS.finishGraceMs);
    const [span, ...more] = taskSpansOf(r.spans, id);
    expect(more).toEqual([]);
    expect(span?.attributes['celery.task.incomplete']).toBe('cancelled');
    expect(span?.status.code).toBe(SpanStatusCode.ERROR);
    const attempts = attemptsOf(r.spans, id);
    expect(attempts.map((a) => a.attributes['celery.attempt.outcome'])).toEqual(['CANCELLED']);
    expect(attempts[0]?.attributes['error.type']).toBe('cancelled');
    expect(span?.attributes['error.type']).toBe('cancelled');
    // The worker's own time of the cancel, not the bridge's guess at worker-offline.
    expect(seconds(attempts[0]?.endTime ?? [0, 0])).toBeCloseTo(1796109148.8117065, 5);
    expect(r.rejections).toEqual([]);
    expect(r.counters.late).toBe(0);
  });

  it('5.2.6 SIGQUIT (no final event): the attempt ends LOST', () => {
    const r = run();
    const id = fullId(shutdown, '930387fd');
    r.feed(about(shutdown, id, ['old52@vm']));
    r.advance(ASSEMBLER_OPTIONS.finishGraceMs);
    expect(taskSpansOf(r.spans, id)[0]?.attributes['celery.task.incomplete']).toBe('lost');
    expect(attemptsOf(r.spans, id).map((a) => a.attributes['celery.attempt.outcome'])).toEqual([
      'LOST',
    ]);
  });

  it('redelivered to another worker within the grace period: one span, attempts CANCELLED then SUCCESS', () => {
    const r = run();
    const id = '0f000000-0000-4000-8000-000000000005';
    r.feed(about(fromSource, id));
    const [span, ...more] = taskSpansOf(r.spans, id);
    expect(more).toEqual([]);
    expect(span?.attributes).toMatchObject({
      'celery.task.state': 'SUCCESS',
      'celery.task.attempts': 2,
    });
    expect(span?.attributes['celery.task.incomplete']).toBeUndefined();
    expect(
      attemptsOf(r.spans, id).map((a) => [
        a.attributes['celery.attempt.outcome'],
        a.attributes['celery.worker.hostname'],
      ]),
    ).toEqual([
      ['CANCELLED', 'w1@vm'],
      ['SUCCESS', 'w2@vm'],
    ]);
    expect(r.counters).toEqual({ late: 0, duplicate: 0, customDropped: 0 });
  });
});

describe('redelivery after lost or cancelled', () => {
  it('redelivered after the cancelled span went out: a continuation span, child of the first', () => {
    const r = run();
    const id = '0f000000-0000-4000-8000-000000000005';
    const messages = about(fromSource, id);
    const redelivered = messages.findIndex((m) => m.body.toString().includes('w2@vm'));
    r.feed(messages.slice(0, redelivered));
    r.advance(ASSEMBLER_OPTIONS.finishGraceMs);
    expect(taskSpansOf(r.spans, id)).toHaveLength(1);
    r.feed(messages.slice(redelivered));
    const [first, second] = taskSpansOf(r.spans, id);
    expect(first?.attributes['celery.task.incomplete']).toBe('cancelled');
    expect(second?.attributes).toMatchObject({
      'celery.task.state': 'SUCCESS',
      'celery.task.delivery': 1,
      'celery.worker.hostname': 'w2@vm',
    });
    expect(second?.attributes['celery.task.incomplete']).toBeUndefined();
    expect(second?.spanContext().traceId).toBe(first?.spanContext().traceId);
    expect(second?.parentSpanContext?.spanId).toBe(spanIdFor(id));
    expect(second?.spanContext().spanId).not.toBe(first?.spanContext().spanId);
    // Starts at the redelivery's receipt; attempt numbers go on from the first span's.
    expect(seconds(second?.startTime ?? [0, 0])).toBeCloseTo(1796200009.0, 5);
    expect(attemptsOf(r.spans, id).map((a) => a.attributes['celery.attempt'])).toEqual([0, 1]);
    const ids = new Set(r.spans.map((s) => s.spanContext().spanId));
    expect(ids.size).toBe(r.spans.length);
    expect(r.counters.late).toBe(0);
  });

  it('5.6.3 warm shutdown: the real success after worker-offline replaces LOST within the grace period', () => {
    const r = run();
    const id = fullId(shutdown, 'f66b4f89');
    r.feed(about(shutdown, id, ['modern2term@vm']));
    const [span, ...more] = taskSpansOf(r.spans, id);
    expect(more).toEqual([]);
    expect(span?.attributes['celery.task.state']).toBe('SUCCESS');
    expect(span?.attributes['celery.task.incomplete']).toBeUndefined();
    expect(attemptsOf(r.spans, id).map((a) => a.attributes['celery.attempt.outcome'])).toEqual([
      'SUCCESS',
    ]);
  });

  it('5.6.3 warm shutdown, success 6 s after worker-offline: not late, a continuation span with the run', () => {
    const r = run();
    const id = fullId(shutdown, 'f66b4f89');
    const messages = about(shutdown, id, ['modern2term@vm']);
    const success = messages.findIndex((m) => m.body.toString().includes('task-succeeded'));
    r.feed(messages.slice(0, success));
    r.advance(6000);
    r.feed(messages.slice(success));
    const [lost, real] = taskSpansOf(r.spans, id);
    expect(lost?.attributes['celery.task.incomplete']).toBe('lost');
    expect(real?.attributes).toMatchObject({
      'celery.task.state': 'SUCCESS',
      'celery.task.delivery': 1,
    });
    const attempts = attemptsOf(r.spans, id);
    expect(attempts.map((a) => a.attributes['celery.attempt.outcome'])).toEqual([
      'LOST',
      'SUCCESS',
    ]);
    // The continuation's attempt is the interrupted run: it keeps that run's start.
    expect(attempts[1]?.startTime).toEqual(attempts[0]?.startTime);
    expect(attempts[1]?.attributes['celery.attempt.start_unknown']).toBeUndefined();
    expect(r.counters.late).toBe(0);
  });

  it('a duplicate of an event the lost span already had is still late, and makes no span', () => {
    const r = run();
    const id = fullId(shutdown, '930387fd');
    const messages = about(shutdown, id, ['old52@vm']);
    r.feed(messages);
    r.advance(ASSEMBLER_OPTIONS.finishGraceMs);
    r.feed(messages.filter((m) => m.routingKey === 'task.multi'));
    expect(taskSpansOf(r.spans, id)).toHaveLength(1);
    expect(r.counters.late).toBeGreaterThan(0);
  });
});

describe('double terminal events', () => {
  const REJECT = '0a000000-0000-4000-8000-000000000001';
  const TIME_LIMIT = '0b000000-0000-4000-8000-000000000002';

  it('Reject(requeue=False): task-failed then task-rejected make one FAILURE, no phantom, no late', () => {
    const r = run();
    r.feed(about(fromSource, REJECT));
    const spans = taskSpansOf(r.spans, REJECT);
    expect(spans).toHaveLength(1);
    expect(spans[0]?.attributes['celery.task.state']).toBe('FAILURE');
    expect(attemptsOf(r.spans, REJECT)).toHaveLength(1);
    expect(r.counters.late).toBe(0);
  });

  it('a hard time limit: two task-failed make one outcome (the first exception), no phantom attempt', () => {
    const r = run();
    r.feed(about(fromSource, TIME_LIMIT));
    r.advance(ASSEMBLER_OPTIONS.finishGraceMs);
    const spans = taskSpansOf(r.spans, TIME_LIMIT);
    expect(spans).toHaveLength(1);
    expect(spans[0]?.attributes['celery.task.incomplete']).toBeUndefined();
    const attempts = attemptsOf(r.spans, TIME_LIMIT);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]?.events[0]?.attributes?.['exception.type']).toBe(
      'billiard.exceptions.TimeLimitExceeded',
    );
    expect(r.counters.late).toBe(0);
    expect(r.counters.duplicate).toBe(1);
  });

  it('the second terminal event in the same batch while the task is held: no phantom attempt', () => {
    const r = run();
    // Both task-failed in one message, and no task-sent: the task waits for nothing.
    const events = about(fromSource, TIME_LIMIT).filter((m) => m.routingKey === 'task.multi');
    const both = events.slice(-2).map((m) => JSON.parse(m.body.toString()) as unknown[]);
    r.feed(events.slice(0, -2));
    r.feed([{ ...events[0]!, body: Buffer.from(JSON.stringify(both.flat())) }]);
    r.advance(ASSEMBLER_OPTIONS.finishGraceMs);
    expect(attemptsOf(r.spans, TIME_LIMIT)).toHaveLength(1);
    expect(
      taskSpansOf(r.spans, TIME_LIMIT)[0]?.attributes['celery.task.incomplete'],
    ).toBeUndefined();
  });
});

describe('custom task events', () => {
  const PROGRESS = '0c000000-0000-4000-8000-000000000003';

  it('become span events on the task span, with kombu typed fields unwrapped', () => {
    const r = run();
    r.feed(about(fromSource, PROGRESS));
    expect(r.rejections).toEqual([]);
    const [span] = taskSpansOf(r.spans, PROGRESS);
    const progress = span?.events.filter((e) => e.name === 'task-progress') ?? [];
    expect(progress.map((e) => e.attributes)).toEqual(
      [1, 2, 3].map((current, i) => ({
        current,
        total: 3,
        stage: 'copy',
        at: `2026-12-01T09:00:0${i}+00:00`,
        details: '{"rows":[1,2]}',
      })),
    );
    expect(seconds(progress[0]?.time ?? [0, 0])).toBeCloseTo(1796200002.1, 5);
  });

  it('are bounded per task (counted past the bound) and per event (fields cut and counted)', () => {
    const r = run();
    const base = about(fromSource, PROGRESS);
    const progress = base.find((m) => m.routingKey === 'task.progress')!;
    const event = JSON.parse(progress.body.toString()) as Record<string, unknown>;
    const many: RawEventMessage[] = [];
    for (let i = 0; i < 20; i++) {
      const fields: Record<string, unknown> = { ...event, timestamp: 1796200002.2 + i / 100 };
      for (let f = 0; f < 20; f++) fields[`f${f}`] = 'x'.repeat(1000);
      many.push({ ...progress, body: Buffer.from(JSON.stringify(fields)) });
    }
    r.feed([
      ...base.filter(
        (m) => m.routingKey !== 'task.progress' && !m.body.toString().includes('task-succeeded'),
      ),
      ...many,
    ]);
    r.feed(base.filter((m) => m.body.toString().includes('task-succeeded')));
    const [span] = taskSpansOf(r.spans, PROGRESS);
    const custom = span?.events.filter((e) => e.name === 'task-progress') ?? [];
    expect(custom).toHaveLength(16);
    expect(r.counters.customDropped).toBe(4);
    for (const e of custom) {
      expect(Object.keys(e.attributes ?? {})).toHaveLength(16);
      expect(e.droppedAttributesCount).toBe(25 - 16);
      for (const value of Object.values(e.attributes ?? {})) {
        if (typeof value === 'string') expect(value.length).toBeLessThanOrEqual(256);
      }
    }
  });
});

describe('unknown event types', () => {
  it('are counted quietly: no log line, no problem summary', () => {
    const lines: string[] = [];
    const stats = new BridgeStats(new Logger('debug', (line) => lines.push(line)));
    const r = run();
    r.feed([
      {
        routingKey: 'flower.something',
        contentType: 'application/json',
        body: Buffer.from(JSON.stringify({ type: 'flower-thing', timestamp: 1 })),
      },
    ]);
    for (const rejection of r.rejections) stats.rejected(rejection, 1);
    stats.logSummary();
    expect(stats.series('eventsRejected').get('unknown_event_type')).toBe(1);
    expect(lines).toEqual([]);
  });
});

describe('kombu >= 5.3 typed JSON and empty batches', () => {
  it('decodes uuid and datetime typed values in ids, eta and expires', () => {
    const r = run();
    const id = '0d000000-0000-4000-8000-000000000004';
    r.feed(about(fromSource, id));
    expect(r.rejections).toEqual([]);
    const [span] = taskSpansOf(r.spans, id);
    expect(span?.attributes).toMatchObject({
      'celery.task.state': 'SUCCESS',
      'celery.task.root_id': id,
      'celery.task.eta': '2026-12-01T10:00:00+00:00',
      'celery.task.expires': '2026-12-01T11:00:00+00:00',
    });
    expect(span?.spanContext().traceId).toBe(id.replace(/-/g, ''));
    expect(attemptsOf(r.spans, id)).toHaveLength(1);
  });

  it('accepts an empty task.multi batch silently (Celery 5.2.6 publishes them)', () => {
    const r = run();
    const empty = fromSource.filter((m) => m.body.toString() === '[]');
    expect(empty).toHaveLength(1);
    r.feed(empty);
    expect(r.rejections).toEqual([]);
    expect(r.spans).toEqual([]);
  });

  it('the captured 5.6.3 stream decodes with no rejection; its task cancelled at shutdown ends cancelled', () => {
    const r = run();
    r.feed(amqpFixtureFile('amqp-celery-5.6.3.jsonl'));
    expect(r.rejections).toEqual([]);
    r.advance(ASSEMBLER_OPTIONS.finishGraceMs);
    // The worker stopped (cold) while proj.sleepy ran: its task-cancelled, after worker-offline.
    const notComplete = r.finished.filter((t) => t.completeness !== 'complete');
    expect(notComplete.map((t) => [t.record.name, t.completeness])).toEqual([
      ['proj.sleepy', 'cancelled'],
    ]);
    expect(notComplete[0]?.record.attempts.map((a) => a.outcome)).toEqual(['CANCELLED']);
    expect(r.counters).toEqual({ late: 0, duplicate: 0, customDropped: 0 });
    expect(r.finished.length).toBeGreaterThan(10);
  });
});

function fullId(messages: RawEventMessage[], prefix: string): string {
  for (const m of messages) {
    const match = new RegExp(`"uuid": "(${prefix}[0-9a-f-]*)"`).exec(
      m.body.toString('utf8').replace(/\\"/g, '"'),
    );
    if (match?.[1] !== undefined) return match[1];
  }
  throw new Error(`no task ${prefix}`);
}
