import type { UpstreamContext } from '../decode/CeleryEvent.js';

/** The final Celery state of a task: what `celery.task.state` says on its span. */
export type TaskFinalState = 'SUCCESS' | 'FAILURE' | 'REVOKED' | 'REJECTED';

/**
 * How one execution attempt ended. RETRY: `self.retry()` re-queued the task; LOST: the attempt
 * started but its outcome never arrived before the task ended or was given up on; CANCELLED: the
 * worker killed it (`task-cancelled`: lost broker connection or cold shutdown).
 */
export type AttemptOutcome =
  'SUCCESS' | 'FAILURE' | 'RETRY' | 'REVOKED' | 'REJECTED' | 'LOST' | 'CANCELLED';

/** One execution of the task body on a worker: `task-started` to its outcome. */
export interface Attempt {
  /** Epoch seconds of `task-started`; undefined when only the outcome was seen. */
  startedAt?: number;
  endedAt?: number;
  hostname?: string;
  outcome?: AttemptOutcome;
  exception?: string;
  traceback?: string;
  /** `task-succeeded`'s `runtime`, seconds. */
  runtime?: number;
}

/**
 * The empty `receivedTimes` and `attempts` every new task shares until it has something to put
 * in them (an empty array per task is memory a million times over). Frozen, so that nothing can
 * push into them.
 */
export const NO_TIMES: number[] = Object.freeze([]) as unknown as number[];
export const NO_ATTEMPTS: Attempt[] = Object.freeze([]) as unknown as Attempt[];

/** Everything the bridge has learnt about one task id while it is in flight. */
export interface TaskRecord {
  readonly id: string;
  name?: string;
  rootId?: string;
  /** Never the task itself: a retry's message names the task as its own parent. */
  parentId?: string;
  queue?: string;
  exchange?: string;
  routingKey?: string;
  eta?: string;
  expires?: string;
  /** Highest `retries` seen on `task-sent` / `task-received`. */
  retries?: number;
  /** The worker of the latest worker event (by event time, not arrival). */
  workerHostname?: string;
  workerHostnameAt?: number;
  /** Event time of the `task-sent` / `task-received` whose message fields (eta...) are kept. */
  messageAt?: number;
  args?: string;
  kwargs?: string;
  result?: string;
  /** Epoch seconds of the first `task-sent`, `task-received` and of the last event. */
  sentAt?: number;
  receivedAt?: number;
  /** Distinct `task-received` event times (a redelivery or retry is received again), capped. */
  receivedTimes: number[];
  lastEventAt: number;
  attempts: Attempt[];
  final?: TaskFinal;
  /**
   * From the worker companion's `task-otel-context` event (never set without the companion):
   * the message's valid traceparent/tracestate, its group, and for a chord header task the
   * chord callback's id.
   */
  upstream?: UpstreamContext;
  groupId?: string;
  groupIndex?: number;
  groupSize?: number;
  chordCallbackId?: string;
  /**
   * A continuation (see InterruptedTasks): the task was exported as `lost` or `cancelled` and
   * ran again; this is its `delivery`-th span (the first is 0, never set), and its attempts are
   * numbered from `attemptOffset`.
   */
  delivery?: number;
  attemptOffset?: number;
  /** Custom task events (`task-progress`...) for span events, bounded (customSpanEvents.ts). */
  customEvents?: CustomSpanEvent[];
}

/** One custom task event, as it becomes a span event. */
export interface CustomSpanEvent {
  readonly type: string;
  readonly at: number;
  readonly fields: Readonly<Record<string, string | number | boolean>>;
  readonly droppedFields: number;
}

/**
 * Where an in-flight task stands, as `TaskAssembler.forEachInFlight` reports it: `finished`, its
 * final event is in (held for stragglers); `running`, an attempt started and has no outcome yet;
 * `waiting`, received by a worker and not running; `sent`, none of these (only sent so far).
 */
export type InFlightState = 'sent' | 'waiting' | 'running' | 'finished';

export interface TaskFinal {
  readonly state: TaskFinalState;
  readonly at: number;
  readonly exception?: string;
  readonly traceback?: string;
  readonly terminated?: boolean;
  readonly signum?: string;
  readonly expired?: boolean;
}

/** What the assembler hands to the exporter. */
export interface FinishedTask {
  readonly record: TaskRecord;
  /**
   * `complete`: final event seen and nothing known to be missing; `held_too_long`: final event
   * seen, but something (an attempt's start or end, the name) never arrived within the grace
   * period; `evicted`: never finished and pushed out of the bounded in-flight table.
   */
  readonly completeness:
    'complete' | 'held_too_long' | 'evicted' | 'expired' | 'lost' | 'outage' | 'cancelled';
  /**
   * Where the task's span goes when the worker companion is in use; undefined means the default
   * (trace id from the root task id, parent from `parent_id`), exactly as without the companion.
   */
  readonly trace?: TraceAssignment;
}

/** The trace a task's spans go into, decided once per task tree (see TaskAssembler). */
export interface TraceAssignment {
  readonly traceId: string;
  /** Only on the tree's root task: the producer's span, from the message's traceparent. */
  readonly remoteParent?: UpstreamContext;
  /**
   * The upstream context of the tree's trace, on every task of the tree: its `tracestate` and
   * trace flags are carried to every span, as an SDK carries a parent's to each child.
   */
  readonly upstream?: UpstreamContext;
  readonly links: readonly TaskSpanLink[];
}

/** A span link of the task span: to each chord header task, or to a late-known upstream span. */
export interface TaskSpanLink {
  readonly traceId: string;
  readonly spanId: string;
  readonly traceState?: string;
  readonly attributes: Readonly<Record<string, string | number>>;
}
