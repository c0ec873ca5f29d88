import type { BeatEvent } from './BeatEvent.js';
import type { TaskCustomEvent } from './TaskCustomEvent.js';

/**
 * The Celery events the bridge understands, as Celery 5 sends them.
 *
 * Field lists follow celery/worker/request.py, celery/app/task.py (`task-sent` is sent by
 * `amqp.send_task_message`) and celery/worker/heartbeat.py. Every field except `type`,
 * `timestamp` and (for task events) `uuid` is optional: a worker of another version, or a
 * hand-written producer, may leave any of them out, and the decoder only keeps what is well typed.
 * https://docs.celeryq.dev/en/stable/userguide/monitoring.html#event-reference
 */
export type TaskEventType =
  | 'task-sent'
  | 'task-received'
  | 'task-started'
  | 'task-succeeded'
  | 'task-failed'
  | 'task-retried'
  | 'task-revoked'
  | 'task-rejected'
  /** Celery >= 5.1 (celery/worker/request.py `Request.cancel` -> `_announce_cancelled`): the
   * worker killed the running task on a lost broker connection
   * (`worker_cancel_long_running_tasks_on_connection_loss`) or, since 5.5, a cold shutdown; an
   * `acks_late` task's message goes back to the queue and runs again. Only `uuid`. */
  | 'task-cancelled';

export type WorkerEventType = 'worker-online' | 'worker-heartbeat' | 'worker-offline';

export interface TaskEvent {
  readonly type: TaskEventType;
  readonly uuid: string;
  /** Epoch seconds (float) on the clock of the host that sent the event. */
  readonly timestamp: number;
  /** The process that sent it: the client (`task-sent`) or the worker (all others). */
  readonly hostname?: string;
  readonly name?: string;
  readonly rootId?: string;
  readonly parentId?: string;
  readonly retries?: number;
  readonly eta?: string;
  readonly expires?: string;
  readonly queue?: string;
  readonly exchange?: string;
  readonly routingKey?: string;
  /** Celery's `saferepr` of the arguments: strings already, possibly holding personal data. */
  readonly args?: string;
  readonly kwargs?: string;
  readonly result?: string;
  /** `task-succeeded`: seconds the task body ran. */
  readonly runtime?: number;
  /** `task-failed` / `task-retried`: the exception's repr, e.g. `RuntimeError('x')`. */
  readonly exception?: string;
  readonly traceback?: string;
  /** `task-revoked`. */
  readonly terminated?: boolean;
  readonly signum?: string;
  readonly expired?: boolean;
  /** `task-rejected`: true when the message goes back to the queue (not a final state). */
  readonly requeue?: boolean;
}

export interface WorkerEvent {
  readonly type: WorkerEventType;
  readonly hostname: string;
  readonly timestamp: number;
  readonly freq?: number;
  readonly active?: number;
  readonly processed?: number;
  /** `sw_ver`: the worker's Celery version (celery/worker/heartbeat.py), e.g. `5.2.6`. */
  readonly swVersion?: string;
  /** The host's 1, 5 and 15 minute load averages (celery/worker/heartbeat.py `_send`). */
  readonly loadavg?: readonly [number, number, number];
}

/**
 * The W3C trace context of the span that sent a task (the `traceparent` header of the task
 * message, version 00), already validated: lowercase hex, ids not all zero.
 * https://www.w3.org/TR/trace-context/#traceparent-header
 */
export interface UpstreamContext {
  /** 32 lowercase hex characters. */
  readonly traceId: string;
  /** 16 lowercase hex characters: the producer's span, parent of the task's span. */
  readonly spanId: string;
  /** The header's trace-flags (bit 0: sampled). */
  readonly traceFlags: number;
  /** The `tracestate` header as sent, when it was present and well formed. */
  readonly traceState?: string;
}

/** Name of the event the worker companion (companion/ in this repository) sends. */
export const TASK_CONTEXT_EVENT_TYPE = 'task-otel-context';

/**
 * `task-otel-context`: what the task message said that Celery's own events leave out, sent by
 * the worker companion right before the task's `task-received`, in the same `task.multi` batch.
 * See companion/celery_otel_bridge_companion/__init__.py for the wire format.
 */
export interface TaskContextEvent {
  readonly type: typeof TASK_CONTEXT_EVENT_TYPE;
  readonly uuid: string;
  readonly timestamp: number;
  readonly hostname?: string;
  readonly rootId?: string;
  readonly parentId?: string;
  /** Absent when the message had no traceparent, or an invalid one (counted by the decoder). */
  readonly upstream?: UpstreamContext;
  /** Celery's group id (`group` message header) and the task's place in it. */
  readonly group?: string;
  readonly groupIndex?: number;
  readonly groupSize?: number;
  /** For a chord header task: the task id of the chord's callback. */
  readonly chord?: string;
}

/** The beat companion's events (schedule, heartbeat, runs): see BeatEvent.ts. */
export type CeleryEvent = TaskEvent | TaskContextEvent | WorkerEvent | BeatEvent | TaskCustomEvent;

export const TASK_EVENT_TYPES: ReadonlySet<string> = new Set<TaskEventType>([
  'task-sent',
  'task-received',
  'task-started',
  'task-succeeded',
  'task-failed',
  'task-retried',
  'task-revoked',
  'task-rejected',
  'task-cancelled',
]);

export const WORKER_EVENT_TYPES: ReadonlySet<string> = new Set<WorkerEventType>([
  'worker-online',
  'worker-heartbeat',
  'worker-offline',
]);

export function isTaskEvent(event: CeleryEvent): event is TaskEvent {
  return TASK_EVENT_TYPES.has(event.type) && !('custom' in event);
}

export function isTaskContextEvent(event: CeleryEvent): event is TaskContextEvent {
  return event.type === TASK_CONTEXT_EVENT_TYPE;
}

export function isWorkerEvent(event: CeleryEvent): event is WorkerEvent {
  return WORKER_EVENT_TYPES.has(event.type) && !('custom' in event);
}

export function isTaskCustomEvent(event: CeleryEvent): event is TaskCustomEvent {
  return 'custom' in event;
}
