import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { TaskAssembler, type TaskAssemblerOptions } from '../../src/assemble/TaskAssembler.js';
import type { FinishedTask } from '../../src/assemble/TaskRecord.js';
import {
  type CeleryEvent,
  type TaskContextEvent,
  type TaskEvent,
  isTaskContextEvent,
  isTaskEvent,
} from '../../src/decode/CeleryEvent.js';
import { decodeEventBody } from '../../src/decode/decodeEventBody.js';
import type { DecodeRejection } from '../../src/shared/DecodeRejection.js';
import { taskSpans, type TaskSpanOptions } from '../../src/export/taskSpans.js';
import type { RawEventMessage } from '../../src/shared/RawEventMessage.js';

export const SPAN_OPTIONS: TaskSpanOptions = {
  resource: resourceFromAttributes({ 'service.name': 'celery' }),
  scope: { name: 'celery-otel-bridge', version: 'test' },
  messagingSystem: 'rabbitmq',
  maxAttributeLength: 32768,
  maxCapturedLength: 1024,
};

export const ASSEMBLER_OPTIONS: TaskAssemblerOptions = {
  maxInFlightTasks: 10_000,
  finishGraceMs: 2000,
  maxFinishedTaskIds: 10_000,
  captureArgs: false,
  captureResult: false,
};

/** Decodes raw messages with the real decoder; returns events and rejections. */
export function decodeAll(messages: RawEventMessage[]): {
  events: CeleryEvent[];
  rejections: DecodeRejection[];
} {
  const events: CeleryEvent[] = [];
  const rejections: DecodeRejection[] = [];
  for (const message of messages) {
    decodeEventBody(
      message,
      { maxMessageBytes: 16 * 1024 * 1024 },
      {
        event: (event) => events.push(event),
        reject: (rejection) => rejections.push(rejection),
      },
    );
  }
  return { events, rejections };
}

export function taskEventsOf(events: CeleryEvent[]): TaskEvent[] {
  return events.filter(isTaskEvent);
}

/** Task events and the worker companion's context events: what the assembler consumes. */
export function assemblerEventsOf(events: CeleryEvent[]): (TaskEvent | TaskContextEvent)[] {
  return events.filter(
    (event): event is TaskEvent | TaskContextEvent =>
      isTaskEvent(event) || isTaskContextEvent(event),
  );
}

export interface AssembledRun {
  finished: FinishedTask[];
  spans: ReadableSpan[];
  counters: { late: number; duplicate: number; evicted: number };
  assembler: TaskAssembler;
  /** Advances the fake monotonic clock and runs the assembler's timer. */
  advance(ms: number): void;
}

/**
 * Runs task events through the real TaskAssembler and taskSpans with a fake clock; by default
 * the clock then moves past the grace period so held tasks come out too.
 */
export function assemble(
  events: (TaskEvent | TaskContextEvent)[],
  options: Partial<TaskAssemblerOptions> = {},
  spanOptions: Partial<TaskSpanOptions> = {},
  settle = true,
): AssembledRun {
  let now = 1000;
  const finished: FinishedTask[] = [];
  const spans: ReadableSpan[] = [];
  const counters = { late: 0, duplicate: 0, evicted: 0 };
  const assembler = new TaskAssembler(
    { ...ASSEMBLER_OPTIONS, ...options },
    (task) => {
      finished.push(task);
      spans.push(...taskSpans(task, { ...SPAN_OPTIONS, ...spanOptions }));
    },
    {
      lateEvent: () => counters.late++,
      duplicateEvent: () => counters.duplicate++,
      tasksEvicted: (count) => (counters.evicted += count),
    },
    () => now,
  );
  const advance = (ms: number): void => {
    now += ms;
    assembler.tick();
  };
  for (const event of events) {
    if (isTaskContextEvent(event)) assembler.handleContext(event);
    else assembler.handle(event);
  }
  if (settle) advance(60_000);
  return { finished, spans, counters, assembler, advance };
}

/** A comparable summary of a span, independent of export order. */
export function spanSummary(span: ReadableSpan): Record<string, unknown> {
  return {
    name: span.name,
    kind: span.kind,
    traceId: span.spanContext().traceId,
    spanId: span.spanContext().spanId,
    parentSpanId: span.parentSpanContext?.spanId,
    start: span.startTime,
    end: span.endTime,
    status: span.status,
    attributes: span.attributes,
    events: span.events.map((event) => ({ name: event.name, attributes: event.attributes })),
  };
}
