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
  | 'task-rejected';

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
}

export type CeleryEvent = TaskEvent | WorkerEvent;

export const TASK_EVENT_TYPES: ReadonlySet<string> = new Set<TaskEventType>([
  'task-sent',
  'task-received',
  'task-started',
  'task-succeeded',
  'task-failed',
  'task-retried',
  'task-revoked',
  'task-rejected',
]);

export const WORKER_EVENT_TYPES: ReadonlySet<string> = new Set<WorkerEventType>([
  'worker-online',
  'worker-heartbeat',
  'worker-offline',
]);

export function isTaskEvent(event: CeleryEvent): event is TaskEvent {
  return TASK_EVENT_TYPES.has(event.type);
}
