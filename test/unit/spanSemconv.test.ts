// Semantic conventions on the spans built from real captured events: messaging.operation.name,
// error.type (https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/,
// https://opentelemetry.io/docs/specs/semconv/general/recording-errors/), and the written span
// model: docs/span-model.md names every attribute a span carries, the README only real ones.
import { readFileSync } from 'node:fs';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import type { FinishedTask, TaskRecord } from '../../src/assemble/TaskRecord.js';
import { taskSpans } from '../../src/export/taskSpans.js';
import { amqpCompanionFixtureMessages, amqpFixtureMessages } from '../support/fixtures.js';
import { SPAN_OPTIONS, assemble, assemblerEventsOf, decodeAll } from '../support/pipeline.js';

const run = assemble(assemblerEventsOf(decodeAll(amqpFixtureMessages()).events));
const companionRun = assemble(assemblerEventsOf(decodeAll(amqpCompanionFixtureMessages()).events));

/** A task the bridge gave up on: its worker went away mid-attempt. */
function lostTask(): ReadableSpan[] {
  const record: TaskRecord = {
    id: '0c5e2cde-8a43-4b1c-9c57-2b3b2b6e8d11',
    name: 'proj.slow',
    receivedTimes: [1795747656.1],
    receivedAt: 1795747656.1,
    lastEventAt: 1795747656.2,
    attempts: [{ startedAt: 1795747656.2, hostname: 'w1@vm' }],
    workerHostname: 'w1@vm',
  };
  const task: FinishedTask = { record, completeness: 'lost' };
  return taskSpans(task, SPAN_OPTIONS);
}

const all = [...run.spans, ...companionRun.spans, ...lostTask()];

describe('messaging semantic conventions', () => {
  it('names the operation `process` on every task span, and keeps the task name as span name', () => {
    const tasks = all.filter((s) => s.kind === SpanKind.CONSUMER);
    expect(tasks.length).toBeGreaterThan(10);
    for (const span of tasks) {
      expect(span.attributes['messaging.operation.name'], span.name).toBe('process');
      expect(span.attributes['messaging.operation.type'], span.name).toBe('process');
      expect(span.name).toBe(span.attributes['celery.task.name']);
    }
    // Attempt spans are the execution inside the processing, not a messaging operation.
    for (const span of all.filter((s) => s.kind === SpanKind.INTERNAL)) {
      expect(span.attributes['messaging.operation.name']).toBeUndefined();
    }
  });
});

describe('error.type', () => {
  it('is the Python exception class on a failed task and on failed or retried attempts', () => {
    const failed = run.spans.filter(
      (s) => s.attributes['celery.task.state'] === 'FAILURE' && s.kind === SpanKind.CONSUMER,
    );
    expect(failed.length).toBeGreaterThan(0);
    const failedAttempts = run.spans.filter((s) =>
      ['FAILURE', 'RETRY'].includes(String(s.attributes['celery.attempt.outcome'])),
    );
    expect(failedAttempts.map((s) => s.attributes['celery.attempt.outcome'])).toContain('RETRY');
    for (const span of [...failed, ...failedAttempts]) {
      const exception = span.events.find((e) => e.name === 'exception');
      expect(exception?.attributes?.['exception.type'], span.name).toMatch(/^[A-Za-z_][\w.]*$/);
      expect(span.attributes['error.type'], span.name).toBe(
        exception?.attributes?.['exception.type'],
      );
    }
    expect(failed.map((s) => s.attributes['error.type'])).toContain('RuntimeError');
  });

  it('says why on a span the bridge ended without an exception, and is absent without an error', () => {
    const [task, attempt] = lostTask() as [ReadableSpan, ReadableSpan];
    expect(task.attributes['error.type']).toBe('lost');
    expect(attempt.attributes['error.type']).toBe('lost');
    // Set exactly when the span's status is ERROR.
    for (const span of all) {
      expect(span.attributes['error.type'] !== undefined, span.name).toBe(
        span.status.code === SpanStatusCode.ERROR,
      );
    }
  });
});

describe('the written span model', () => {
  const doc = readFileSync(new URL('../../docs/span-model.md', import.meta.url), 'utf8');
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('\n## Spans\n');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const keys = new Set<string>();
  for (const span of all) {
    for (const key of Object.keys(span.attributes)) keys.add(key);
    for (const event of span.events)
      for (const key of Object.keys(event.attributes ?? {})) keys.add(key);
    for (const link of span.links)
      for (const key of Object.keys(link.attributes ?? {})) keys.add(key);
  }

  it('docs/span-model.md names every attribute a span carries', () => {
    expect(keys.size).toBeGreaterThan(20);
    for (const key of keys) expect(doc, key).toContain(`\`${key}\``);
  });

  it('the README names only attributes a span carries, and links the long version', () => {
    expect(start, 'README section "Spans"').toBeGreaterThan(-1);
    expect(section).toContain('docs/span-model.md');
    const named = [...section.matchAll(/`((?:celery|messaging|error)\.[a-z_.]+)`/g)].map(
      (match) => match[1] ?? '',
    );
    expect(named).toContain('error.type');
    expect(named.length).toBeGreaterThan(5);
    // Beat run spans come from the beat tracker, not from task events: its own tests cover them.
    for (const key of named.filter((name) => !name.startsWith('celery.beat.'))) {
      expect(keys.has(key), `README names ${key}`).toBe(true);
    }
  });
});
