import {
  type Attributes,
  type HrTime,
  type Link,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
} from '@opentelemetry/api';
import { type InstrumentationScope, TraceState } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import {
  attemptSpanIdFor,
  deliverySpanIdFor,
  spanIdFor,
  traceIdFor,
} from '../shared/deterministicIds.js';
import { parsePythonException } from '../decode/parsePythonException.js';
import type {
  Attempt,
  CustomSpanEvent,
  FinishedTask,
  TaskRecord,
  TaskSpanLink,
} from '../assemble/TaskRecord.js';
import type { UpstreamContext } from '../decode/CeleryEvent.js';
import { cutName } from '../decode/fieldBounds.js';
import type { TaskResources } from './TaskResources.js';
import { truncateMiddle } from '../shared/truncate.js';
import {
  ATTR,
  type BridgeErrorType,
  type MessagingSystem,
  OPERATION_PROCESS,
} from '../shared/attributeSpecs.js';

export interface TaskSpanOptions {
  /** Of every span, unless `resources` gives each worker and service its own. */
  readonly resource: Resource;
  readonly resources?: TaskResources;
  readonly scope: InstrumentationScope;
  /** `messaging.system`: `rabbitmq` or `redis`. */
  readonly messagingSystem: string;
  /** Longest string attribute value (tracebacks included); longer ones keep head and tail. */
  readonly maxAttributeLength: number;
  /** Longest args / kwargs / result value, when captured at all. */
  readonly maxCapturedLength: number;
}

/** Why a task span ends without a final Celery state: its status message. */
const UNFINISHED_MESSAGE: Record<FinishedTask['completeness'], string> = {
  complete: 'task never finished',
  held_too_long: 'task never finished',
  evicted:
    'task never finished while the bridge tracked it (evicted from the full in-flight table)',
  expired: 'no event for this task within the task age limit (--max-task-age-ms)',
  lost: 'the worker running this task went offline or stopped heartbeating',
  outage: 'no event for this task after a broker outage (--outage-grace-ms): its events were lost',
  cancelled:
    'the worker cancelled this task (lost broker connection or cold shutdown); an acks_late task runs again',
};

/** Span name used when no event told the task's name (the bridge started mid-flight). */
export const UNKNOWN_TASK_NAME = 'celery.task';

/**
 * Builds the spans of one finished task: the task span (CONSUMER, named after the task, from its
 * first sign to its final event) and one INTERNAL child span per execution attempt, named
 * `run/<task name>` like opentelemetry-instrumentation-celery's worker span. The gap between the
 * task span's start and an attempt's start is the time the task waited in the queue.
 *
 * Spans are built as plain ReadableSpan objects rather than through a Tracer: ids must be pure
 * functions of Celery's ids and times come from the events, both of which a live Tracer would pick
 * itself. The OTLP exporters serialise ReadableSpan as they would any SDK span.
 */
export function taskSpans(task: FinishedTask, options: TaskSpanOptions): ReadableSpan[] {
  const record = task.record;
  // With the worker companion the assembler decided the tree's trace (upstream, group); without
  // it, the trace id comes from the root task id.
  const traceId = task.trace?.traceId ?? traceIdFor(record.rootId ?? record.id);
  // A continuation (the task ran again after it was exported as lost or cancelled) is a child
  // of the task's first span (docs/task-lifecycle.md).
  const continuation = record.delivery !== undefined && record.delivery > 0;
  const spanId = continuation
    ? deliverySpanIdFor(record.id, record.delivery ?? 0)
    : spanIdFor(record.id);
  const parentId = continuation ? record.id : parentTaskId(record);
  const parentSpanId = parentId === undefined ? undefined : spanIdFor(parentId);
  const remoteParent = parentId === undefined ? task.trace?.remoteParent : undefined;
  // Cut as at intake (decode/fieldBounds.ts), also for a record restored from the state file: a
  // collector refuses a whole request over one oversized span name.
  const name = typeof record.name === 'string' ? cutName(record.name) : UNKNOWN_TASK_NAME;
  // Read only: a single attempt (the usual case) needs neither a copy nor a sort.
  const attempts =
    record.attempts.length < 2 ? record.attempts : [...record.attempts].sort(byStart);

  const start = taskStart(record, attempts);
  const end = Math.max(start, record.final?.at ?? record.lastEventAt);
  const attributes = taskAttributes(record, task, options, attempts.length);
  const exceptions = new ExceptionEvents(options.maxAttributeLength);
  const events: TimedEvent[] = [];
  let status: ReadableSpan['status'] = { code: SpanStatusCode.UNSET };
  const final = record.final;
  if (final?.state === 'FAILURE') {
    const exception = exceptions.event(final.at, final.exception, final.traceback);
    events.push(exception);
    status = {
      code: SpanStatusCode.ERROR,
      message: String(exception.attributes?.[ATTR.EXCEPTION_MESSAGE] ?? ''),
    };
    setErrorType(attributes, exception, options.maxAttributeLength);
  } else if (final?.state === 'REVOKED') {
    events.push({
      name: 'task-revoked',
      time: hrTime(final.at),
      attributes: definedOnly({
        [ATTR.REVOKE_TERMINATED]: final.terminated,
        [ATTR.REVOKE_SIGNUM]: final.signum,
        [ATTR.REVOKE_EXPIRED]: final.expired,
      }),
    });
  } else if (final?.state === 'REJECTED') {
    events.push({ name: 'task-rejected', time: hrTime(final.at) });
  } else if (final === undefined) {
    status = { code: SpanStatusCode.ERROR, message: UNFINISHED_MESSAGE[task.completeness] };
    // No exception to name: why the bridge gave up (docs/span-model.md).
    attributes[ATTR.ERROR_TYPE] = task.completeness;
  }
  for (const custom of record.customEvents ?? []) events.push(customSpanEvent(custom));
  if (record.customEvents !== undefined) events.sort((a, b) => seconds(a.time) - seconds(b.time));

  // Every span of the tree carries the upstream `tracestate` and random-trace-id flag, as an SDK
  // gives a child its parent's (https://www.w3.org/TR/trace-context/#tracestate-header,
  // https://www.w3.org/TR/trace-context-2/#random-trace-id-flag): the trace id is the upstream one.
  const upstream = task.trace?.upstream ?? remoteParent;
  const taskContext = spanContext(traceId, spanId, upstream?.traceState, upstream?.traceFlags);
  const service = options.resources?.serviceFor(record.name, record.queue);
  // An attempt almost always ran on the task's worker: one resource lookup per task, not per span.
  let lastWorker: string | undefined;
  let lastResource: Resource | undefined;
  const resourceOf = (worker: string | undefined): Resource => {
    if (lastResource !== undefined && worker === lastWorker) return lastResource;
    lastWorker = worker;
    lastResource =
      service === undefined
        ? options.resource
        : (options.resources?.resourceFor(service, worker) ?? options.resource);
    return lastResource;
  };
  const spans: ReadableSpan[] = [
    readableSpan({
      name,
      kind: SpanKind.CONSUMER,
      context: taskContext,
      parent:
        parentSpanId !== undefined
          ? spanContext(traceId, parentSpanId, upstream?.traceState, upstream?.traceFlags)
          : remoteParent !== undefined
            ? upstreamSpanContext(remoteParent)
            : undefined,
      links: (task.trace?.links ?? []).map(spanLink),
      start,
      end,
      attributes,
      events,
      status,
      options,
      resource: resourceOf(record.workerHostname),
    }),
  ];
  const offset = record.attemptOffset ?? 0;
  attempts.forEach((attempt, index) => {
    const resource = resourceOf(attempt.hostname ?? record.workerHostname);
    spans.push(
      attemptSpan(
        record,
        attempt,
        index,
        offset,
        attempts,
        taskContext,
        end,
        name,
        options,
        resource,
        exceptions,
      ),
    );
  });
  return spans;
}

function attemptSpan(
  record: TaskRecord,
  attempt: Attempt,
  index: number,
  offset: number,
  attempts: Attempt[],
  taskContext: SpanContext,
  taskEnd: number,
  taskName: string,
  options: TaskSpanOptions,
  resource: Resource,
  exceptions: ExceptionEvents,
): ReadableSpan {
  // A missing start or end (lost events) is bounded by what is known, and said so.
  const end = attempt.endedAt ?? attempts[index + 1]?.startedAt ?? taskEnd;
  const start =
    attempt.startedAt ??
    (attempt.runtime !== undefined && attempt.endedAt !== undefined
      ? attempt.endedAt - attempt.runtime
      : end);
  const outcome = attempt.outcome ?? 'LOST';
  const events: TimedEvent[] = [];
  let status: ReadableSpan['status'] = { code: SpanStatusCode.UNSET };
  const attributes = attemptAttributes(
    record,
    attempt,
    offset + index,
    outcome,
    options.maxAttributeLength,
  );
  if (outcome === 'FAILURE' || outcome === 'RETRY') {
    const exception = exceptions.event(end, attempt.exception, attempt.traceback);
    events.push(exception);
    status = {
      code: SpanStatusCode.ERROR,
      message: String(exception.attributes?.[ATTR.EXCEPTION_MESSAGE] ?? ''),
    };
    setErrorType(attributes, exception, options.maxAttributeLength);
  } else if (outcome === 'LOST') {
    status = { code: SpanStatusCode.ERROR, message: 'the outcome of this attempt never arrived' };
    attributes[ATTR.ERROR_TYPE] = 'lost' satisfies BridgeErrorType;
  } else if (outcome === 'CANCELLED') {
    status = { code: SpanStatusCode.ERROR, message: 'the worker cancelled this attempt' };
    attributes[ATTR.ERROR_TYPE] = 'cancelled' satisfies BridgeErrorType;
  }
  return readableSpan({
    name: `run/${taskName}`,
    kind: SpanKind.INTERNAL,
    context: withSpanId(taskContext, attemptSpanIdFor(record.id, offset + index)),
    parent: taskContext,
    start,
    end: Math.max(start, end),
    attributes,
    events,
    status,
    options,
    resource,
  });
}

function attemptAttributes(
  record: TaskRecord,
  attempt: Attempt,
  index: number,
  outcome: string,
  maxLength: number,
): Attributes {
  const out: Attributes = {};
  put(out, ATTR.TASK_ID, record.id, maxLength);
  put(out, ATTR.TASK_NAME, record.name, maxLength);
  out[ATTR.ATTEMPT] = index;
  out[ATTR.ATTEMPT_OUTCOME] = outcome;
  if (attempt.startedAt === undefined) out[ATTR.ATTEMPT_START_UNKNOWN] = true;
  put(out, ATTR.TASK_RUNTIME, attempt.runtime, maxLength);
  put(out, ATTR.WORKER_HOSTNAME, attempt.hostname, maxLength);
  return out;
}

function taskAttributes(
  record: TaskRecord,
  task: FinishedTask,
  options: TaskSpanOptions,
  attemptCount: number,
): Attributes {
  const max = options.maxAttributeLength;
  const captured = Math.min(max, options.maxCapturedLength);
  const out: Attributes = {};
  put(out, ATTR.TASK_ID, record.id, max);
  put(out, ATTR.MESSAGE_ID, record.id, max);
  put(out, ATTR.TASK_NAME, record.name, max);
  put(out, ATTR.TASK_STATE, record.final?.state ?? currentState(record), max);
  out[ATTR.TASK_RETRIES] = Math.max(record.retries ?? 0, retriedAttempts(record));
  put(out, ATTR.TASK_ROOT_ID, record.rootId, max);
  put(out, ATTR.TASK_PARENT_ID, record.parentId, max);
  put(out, ATTR.GROUP_ID, record.groupId, max);
  put(out, ATTR.GROUP_INDEX, record.groupIndex, max);
  put(out, ATTR.GROUP_SIZE, record.groupSize, max);
  put(out, ATTR.CHORD_CALLBACK_ID, record.chordCallbackId, max);
  out[ATTR.TASK_ATTEMPTS] = attemptCount;
  if (record.delivery !== undefined && record.delivery > 0) {
    out[ATTR.TASK_DELIVERY] = record.delivery;
  }
  if (record.receivedTimes.length > 1) {
    out[ATTR.TASK_RECEIVED_COUNT] = record.receivedTimes.length;
  }
  put(out, ATTR.TASK_ETA, record.eta, max);
  put(out, ATTR.TASK_EXPIRES, record.expires, max);
  if (task.completeness !== 'complete') out[ATTR.TASK_INCOMPLETE] = task.completeness;
  put(out, ATTR.WORKER_HOSTNAME, record.workerHostname, max);
  put(out, ATTR.TASK_ARGS, record.args, captured);
  put(out, ATTR.TASK_KWARGS, record.kwargs, captured);
  put(out, ATTR.TASK_RESULT, record.result, captured);
  out[ATTR.MESSAGING_SYSTEM] = options.messagingSystem;
  out[ATTR.MESSAGING_OPERATION_TYPE] = OPERATION_PROCESS;
  out[ATTR.MESSAGING_OPERATION_NAME] = OPERATION_PROCESS;
  put(out, ATTR.MESSAGING_DESTINATION_NAME, record.queue, max);
  if (options.messagingSystem === ('rabbitmq' satisfies MessagingSystem) && record.routingKey) {
    put(out, ATTR.RABBITMQ_ROUTING_KEY, record.routingKey, max);
  }
  return out;
}

/**
 * Sets an attribute unless its value is unknown, cutting a long string to `maxLength` (head and
 * tail kept). Attributes are built this way, in a fixed order, rather than from an object literal
 * filtered afterwards: one object per span instead of two, on the export's hot path.
 */
function put(
  out: Attributes,
  key: string,
  value: string | number | undefined,
  maxLength: number,
): void {
  if (value === undefined) return;
  out[key] =
    typeof value === 'string' && value.length > maxLength
      ? truncateMiddle(value, maxLength)
      : value;
}

/** What Celery would call the task's state now, for tasks exported before their final event. */
function currentState(record: TaskRecord): string {
  const last = record.attempts[record.attempts.length - 1];
  if (last !== undefined)
    return last.endedAt === undefined ? 'STARTED' : last.outcome === 'RETRY' ? 'RETRY' : 'STARTED';
  return record.receivedAt !== undefined ? 'RECEIVED' : 'PENDING';
}

function retriedAttempts(record: TaskRecord): number {
  let count = 0;
  for (const attempt of record.attempts) if (attempt.outcome === 'RETRY') count++;
  return count;
}

/**
 * Celery's `retries` on a retried message counts the earlier attempts; the parent of a retry is
 * the task itself, which the assembler already refused. A task whose parent is unknown but whose
 * root is another task hangs under the root, so it still lands in the right trace.
 */
function parentTaskId(record: TaskRecord): string | undefined {
  if (record.parentId !== undefined) return record.parentId;
  if (record.rootId !== undefined && record.rootId !== record.id) return record.rootId;
  return undefined;
}

/**
 * The first sign of the task: the earliest of `task-sent`, `task-received` and the first attempt's
 * start. Usually that is `task-sent`, but Celery stamps it only after the message was published
 * (celery/app/amqp.py `send_task_message`), and clocks of different hosts differ, so a busy worker
 * can start a task before its sent time; the task span must still contain its attempts.
 */
function taskStart(record: TaskRecord, attempts: Attempt[]): number {
  let start = earlier(earlier(record.sentAt, record.receivedAt), attempts[0]?.startedAt);
  if (start === undefined) {
    const first = attempts[0];
    start =
      first?.endedAt !== undefined && first.runtime !== undefined
        ? first.endedAt - first.runtime
        : (record.final?.at ?? record.lastEventAt);
  }
  return start;
}

function earlier(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || (b !== undefined && b < a) ? b : a;
}

function byStart(a: Attempt, b: Attempt): number {
  return (a.startedAt ?? a.endedAt ?? 0) - (b.startedAt ?? b.endedAt ?? 0);
}

/**
 * `error.type` on a span that ended in error: the Python exception class, as on its `exception`
 * event (https://opentelemetry.io/docs/specs/semconv/registry/attributes/error/: the exception's
 * fully-qualified class name when the error is an exception).
 */
function setErrorType(out: Attributes, exception: TimedEvent, maxLength: number): void {
  const type = exception.attributes?.[ATTR.EXCEPTION_TYPE];
  if (typeof type === 'string') put(out, ATTR.ERROR_TYPE, type, maxLength);
}

/** A custom task event (`task-progress`...): its fields as the span event's attributes. */
function customSpanEvent(custom: CustomSpanEvent): TimedEvent {
  const event: TimedEvent = {
    name: custom.type,
    time: hrTime(custom.at),
    attributes: { ...custom.fields },
  };
  if (custom.droppedFields > 0) event.droppedAttributesCount = custom.droppedFields;
  return event;
}

function seconds(time: HrTime): number {
  return time[0] + time[1] / 1e9;
}

/**
 * The `exception` events of one task's spans. A failed task's own failure is its last attempt's
 * (the same `exception` and `traceback` strings), so each distinct pair is parsed and cut once per
 * task; every event still gets an attributes object of its own.
 */
class ExceptionEvents {
  private repr: string | undefined;
  private traceback: string | undefined;
  private attributes: Attributes | undefined;

  constructor(private readonly maxLength: number) {}

  event(at: number, repr: string | undefined, traceback: string | undefined): TimedEvent {
    let attributes = this.attributes;
    if (attributes === undefined || repr !== this.repr || traceback !== this.traceback) {
      const parsed = parsePythonException(repr, traceback);
      // https://opentelemetry.io/docs/specs/semconv/exceptions/exceptions-spans/
      attributes = definedOnly({
        [ATTR.EXCEPTION_TYPE]: parsed.type,
        [ATTR.EXCEPTION_MESSAGE]: truncateMiddle(parsed.message, this.maxLength),
        [ATTR.EXCEPTION_STACKTRACE]:
          traceback === undefined ? undefined : truncateMiddle(traceback, this.maxLength),
      });
      this.attributes = attributes;
      this.repr = repr;
      this.traceback = traceback;
    }
    return { name: 'exception', time: hrTime(at), attributes: { ...attributes } };
  }
}

interface SpanParts {
  readonly name: string;
  readonly kind: SpanKind;
  readonly context: SpanContext;
  readonly parent: SpanContext | undefined;
  readonly start: number;
  readonly end: number;
  readonly attributes: Attributes;
  readonly events: TimedEvent[];
  readonly status: ReadableSpan['status'];
  readonly options: TaskSpanOptions;
  readonly resource: Resource;
  readonly links?: Link[];
}

function readableSpan(parts: SpanParts): ReadableSpan {
  return new TaskSpan(parts);
}

/**
 * A finished span, as the exporters read it: one shape for every span, and no closure per span
 * (`spanContext` is one shared function reading the span's own `context`). Every field is an own
 * property, as on an object literal, so a copy made by spreading a span is still a whole span.
 */
class TaskSpan implements ReadableSpan {
  readonly spanContext: () => SpanContext = contextOfSpan;
  readonly name: string;
  readonly kind: SpanKind;
  readonly parentSpanContext: SpanContext | undefined;
  readonly startTime: HrTime;
  readonly endTime: HrTime;
  readonly duration: HrTime;
  readonly status: ReadableSpan['status'];
  readonly attributes: Attributes;
  readonly links: Link[];
  readonly events: TimedEvent[];
  readonly ended = true;
  readonly resource: Resource;
  readonly instrumentationScope: InstrumentationScope;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  readonly context: SpanContext;

  constructor(parts: SpanParts) {
    this.name = parts.name;
    this.kind = parts.kind;
    this.context = parts.context;
    this.parentSpanContext = parts.parent;
    this.startTime = hrTime(parts.start);
    this.endTime = hrTime(parts.end);
    this.duration = hrDuration(this.startTime, this.endTime);
    this.status = parts.status;
    // Attributes come from `put`, already within --max-attribute-length.
    this.attributes = parts.attributes;
    this.links = parts.links ?? [];
    this.events = parts.events;
    this.resource = parts.resource;
    this.instrumentationScope = parts.options.scope;
  }
}

function contextOfSpan(this: TaskSpan): SpanContext {
  return this.context;
}

/** W3C Trace Context level 2: the trace id's rightmost 7 bytes are random. */
const RANDOM_TRACE_ID_FLAG = 0x02;

/**
 * The bridge's own spans are always sampled; the random-trace-id flag is kept from the upstream
 * context whose trace id they share (`upstreamFlags`).
 */
function spanContext(
  traceId: string,
  spanId: string,
  traceState?: string,
  upstreamFlags = 0,
): SpanContext {
  const traceFlags = TraceFlags.SAMPLED | (upstreamFlags & RANDOM_TRACE_ID_FLAG);
  const context: SpanContext = { traceId, spanId, traceFlags };
  if (traceState !== undefined) context.traceState = new TraceState(traceState);
  return context;
}

/** `context` with another span id: an attempt span shares its task span's trace context. */
function withSpanId(context: SpanContext, spanId: string): SpanContext {
  const out: SpanContext = { traceId: context.traceId, spanId, traceFlags: context.traceFlags };
  if (context.traceState !== undefined) out.traceState = context.traceState;
  return out;
}

/** The producer's span, from the task message's traceparent: a remote parent. */
function upstreamSpanContext(upstream: UpstreamContext): SpanContext {
  const context: SpanContext = {
    traceId: upstream.traceId,
    spanId: upstream.spanId,
    traceFlags: upstream.traceFlags,
    isRemote: true,
  };
  if (upstream.traceState !== undefined) context.traceState = new TraceState(upstream.traceState);
  return context;
}

function spanLink(link: TaskSpanLink): Link {
  const context = spanContext(link.traceId, link.spanId, link.traceState);
  return { context, attributes: { ...link.attributes } };
}

/**
 * Epoch seconds (a float, microsecond resolution in practice) to OpenTelemetry's
 * [seconds, nanoseconds] without going through a float of nanoseconds, which would lose precision.
 */
export function hrTime(epochSeconds: number): HrTime {
  const seconds = Math.floor(epochSeconds);
  const nanos = Math.round((epochSeconds - seconds) * 1e6) * 1e3;
  return nanos >= 1e9 ? [seconds + 1, nanos - 1e9] : [seconds, nanos];
}

function hrDuration(start: HrTime, end: HrTime): HrTime {
  let seconds = end[0] - start[0];
  let nanos = end[1] - start[1];
  if (nanos < 0) {
    seconds -= 1;
    nanos += 1e9;
  }
  return [seconds, nanos];
}

function definedOnly(values: Record<string, string | number | boolean | undefined>): Attributes {
  const out: Attributes = {};
  for (const key of Object.keys(values)) {
    const value = values[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}
