import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import type { TaskEvent } from '../../src/decode/CeleryEvent.js';
import { WorkerLiveness } from '../../src/assemble/WorkerLiveness.js';
import { ASSEMBLER_OPTIONS, assemble } from '../support/pipeline.js';

const seconds = (time: [number, number]): number => time[0] + time[1] / 1e9;

const event = (
  type: TaskEvent['type'],
  uuid: string,
  timestamp: number,
  extra: Partial<TaskEvent> = {},
): TaskEvent => ({
  type,
  uuid,
  timestamp,
  hostname: 'w1@host',
  ...extra,
});

describe('giving up on tasks that will never finish', () => {
  it('expires unfinished tasks with no event within the age limit, and keeps the others', () => {
    const run = assemble(
      [
        event('task-received', 'old', 1000, { name: 'proj.eta' }),
        event('task-received', 'recent', 5000, { name: 'proj.eta' }),
        event('task-received', 'done', 1000, { name: 'proj.add' }),
        event('task-started', 'done', 1001),
        event('task-succeeded', 'done', 1002, { runtime: 1 }),
      ],
      {},
      {},
      false,
    );
    const expired = run.assembler.expireOlderThan(3600_000, 5100 * 1000);
    expect(expired).toBe(1);
    const span = run.spans.find(
      (s) => s.kind === SpanKind.CONSUMER && s.attributes['celery.task.id'] === 'old',
    );
    expect(span?.attributes['celery.task.incomplete']).toBe('expired');
    expect(span?.status).toEqual({
      code: SpanStatusCode.ERROR,
      message: expect.stringContaining('--max-task-age-ms') as string,
    });
    expect(run.assembler.peek('recent')).toBeDefined();
  });

  it('ends the tasks running on a lost worker as lost, and leaves its waiting tasks', () => {
    const run = assemble(
      [
        event('task-received', 'running', 10, { name: 'proj.slow' }),
        event('task-started', 'running', 11),
        event('task-received', 'waiting', 10, { name: 'proj.slow' }),
        event('task-received', 'elsewhere', 10, { name: 'proj.slow', hostname: 'w2@host' }),
        event('task-started', 'elsewhere', 11, { hostname: 'w2@host' }),
      ],
      {},
      {},
      false,
    );
    expect(run.assembler.workerLost('w1@host', 20)).toBe(1);
    // Held for the finish grace period: its real outcome or a redelivery may still come.
    expect(run.spans).toEqual([]);
    run.advance(ASSEMBLER_OPTIONS.finishGraceMs);
    const span = run.spans.find((s) => s.kind === SpanKind.CONSUMER);
    expect(span?.attributes).toMatchObject({
      'celery.task.id': 'running',
      'celery.task.incomplete': 'lost',
    });
    const attempt = run.spans.find((s) => s.kind === SpanKind.INTERNAL);
    expect(attempt?.attributes['celery.attempt.outcome']).toBe('LOST');
    expect(run.assembler.peek('waiting')).toBeDefined();
    expect(run.assembler.peek('elsewhere')).toBeDefined();
    // Its real outcome, even after the export, is not dropped as late: a continuation span
    // (issue 12: a forged worker-offline must not cost the task its success).
    run.assembler.handle(event('task-succeeded', 'running', 30, { runtime: 19 }));
    expect(run.counters.late).toBe(0);
    const spans = run.spans.filter((s) => s.kind === SpanKind.CONSUMER);
    expect(spans).toHaveLength(2);
    expect(spans[1]?.attributes).toMatchObject({
      'celery.task.state': 'SUCCESS',
      'celery.task.delivery': 1,
    });
    expect(spans[1]?.parentSpanContext?.spanId).toBe(spans[0]?.spanContext().spanId);
    const rerun = run.spans.filter((s) => s.kind === SpanKind.INTERNAL).at(-1);
    expect(rerun?.attributes).toMatchObject({
      'celery.attempt': 1,
      'celery.attempt.outcome': 'SUCCESS',
    });
    expect(rerun && seconds(rerun.startTime)).toBe(11);
  });

  it('hands out a worker that stopped heartbeating once, and again after it came back and left', () => {
    let now = 0;
    const liveness = new WorkerLiveness(600_000, 10, () => now);
    const beat = { type: 'worker-heartbeat' as const, hostname: 'w1', timestamp: 1, freq: 2 };
    liveness.onEvent(beat);
    now = 3999;
    expect(liveness.takeNewlyDown()).toEqual([]);
    now = 4001;
    expect(liveness.takeNewlyDown()).toEqual(['w1']);
    expect(liveness.takeNewlyDown()).toEqual([]);
    liveness.onEvent(beat);
    liveness.onEvent({ ...beat, type: 'worker-offline' });
    expect(liveness.takeNewlyDown()).toEqual(['w1']);
  });
});
