import {
  ATTR,
  BEAT_OUTCOMES,
  BEAT_UNTRACKED_REASONS,
  DIAGNOSIS_FINDINGS,
  IN_FLIGHT_STATES,
  LOADAVG_PERIODS,
  RUNTIME_OUTCOMES,
  SPAN_DROP_REASONS,
  TRACE_CONTEXT_DROP_REASONS,
  TASK_EVENT_STATES,
} from './attributeSpecs.js';

/**
 * Every metric the bridge emits, declared once: the instruments (and the computed metrics'
 * descriptors) are made from these entries, and the metrics reference in docs/metrics.md is
 * generated from them (`npm run docs`; a unit test fails when it is out of date). Names, units
 * and attributes are a contract users alert on: the Prometheus spelling follows from them
 * (dots to underscores, `_total` on counters).
 * https://opentelemetry.io/docs/specs/semconv/general/metrics/
 */
export type MetricKind = 'counter' | 'gauge' | 'histogram';

export interface MetricAttributeSpec {
  readonly name: string;
  /** Every value the bridge records, when it chooses among a few. */
  readonly values?: readonly string[];
  /** What the value is (or when the attribute is there), for the reference table. */
  readonly note?: string;
}

export interface MetricSpec {
  readonly name: string;
  readonly kind: MetricKind;
  /** UCUM, as the semantic conventions write units: `s`, `By`, `1`, `{task}`. */
  readonly unit: string;
  readonly description: string;
  readonly attributes: readonly MetricAttributeSpec[];
  /**
   * Counted by BridgeStats and observed from its counts at each collection: adding such a
   * counter is this entry and a `stats.count(...)` where it happens. At most one attribute.
   */
  readonly counted?: true;
  /** The Flower metric it replaces, for the reference table. */
  readonly flower?: string;
  /** The celery-exporter metric it replaces, for the reference table. */
  readonly celeryExporter?: string;
}

function attr(name: string, detail?: readonly string[] | string): MetricAttributeSpec {
  if (detail === undefined) return { name };
  return typeof detail === 'string' ? { name, note: detail } : { name, values: detail };
}

/**
 * Longest a task count waits for its task's `task-sent`, which alone names the queue (read by
 * BridgeMetrics' QueueLabelWait; here so that the description below says the same).
 */
export const QUEUE_LABEL_GRACE_MS = 2000;

const TASK_NAME = attr(
  ATTR.TASK_NAME,
  '`__other__` past `--metrics-max-task-names`; `unknown` when no event told it',
);
const WORKER = attr(ATTR.WORKER_HOSTNAME, 'unless `--metrics-worker-attribute off`');
const HEARTBEAT_WORKER = attr(ATTR.WORKER_HOSTNAME, 'workers known from heartbeats');
const BEAT_ENTRY = [
  attr(ATTR.BEAT_APP),
  attr(ATTR.BEAT_ENTRY),
  attr(ATTR.TASK_NAME, 'when the schedule names it'),
];

export const METRIC_SPECS = {
  // Celery, from the events.
  tasks: {
    name: 'celery.tasks',
    kind: 'counter',
    unit: '{task}',
    description:
      'Task events by state: sent, received, started, succeeded, failed, retried, revoked, rejected',
    attributes: [
      TASK_NAME,
      attr(ATTR.TASK_STATE, TASK_EVENT_STATES),
      attr(
        ATTR.MESSAGING_DESTINATION_NAME,
        `the queue, from the task's \`task-sent\`: a count waits up to ${QUEUE_LABEL_GRACE_MS / 1000} s for it (the worker's events often arrive first)`,
      ),
      attr(ATTR.WORKER_HOSTNAME, 'not on `sent`; unless `--metrics-worker-attribute off`'),
    ],
    flower: '`flower_events_total{type}`',
    celeryExporter: '`celery_task_sent_total`, `celery_task_received_total`, … (one per state)',
  },
  taskRuntime: {
    name: 'celery.task.runtime',
    kind: 'histogram',
    unit: 's',
    description: 'Time the task body ran: task-succeeded runtime, or started to failure/retry',
    attributes: [TASK_NAME, attr(ATTR.TASK_OUTCOME, RUNTIME_OUTCOMES), WORKER],
    flower: '`flower_task_runtime_seconds`',
    celeryExporter: '`celery_task_runtime`',
  },
  taskQueueWait: {
    name: 'celery.task.queue_wait',
    kind: 'histogram',
    unit: 's',
    description: 'Time from sent (else received; after its ETA for delayed tasks) to started',
    attributes: [TASK_NAME, WORKER],
    flower: '`flower_task_prefetch_time_seconds` (received → started, a gauge)',
  },
  taskExceptions: {
    name: 'celery.task.exceptions',
    kind: 'counter',
    unit: '{exception}',
    description:
      'Task failures (task-failed) by task name and exception type (error.type: the Python class)',
    attributes: [
      TASK_NAME,
      attr(
        ATTR.ERROR_TYPE,
        "the Python class of `task-failed`'s exception; `__other__` past `--metrics-max-task-names` types",
      ),
    ],
    celeryExporter: '`celery_task_failed_total{exception}`',
  },
  workerUp: {
    name: 'celery.worker.up',
    kind: 'gauge',
    unit: '1',
    description:
      '1 while the worker heartbeats (Celery: offline after 2 x freq without one), else 0',
    attributes: [HEARTBEAT_WORKER],
    flower: '`flower_worker_online`',
    celeryExporter: '`celery_worker_up`',
  },
  workerTasksActive: {
    name: 'celery.worker.tasks.active',
    kind: 'gauge',
    unit: '{task}',
    description: 'Tasks the worker was running at its last heartbeat',
    attributes: [HEARTBEAT_WORKER],
    flower: '`flower_worker_number_of_currently_executing_tasks`',
    celeryExporter: '`celery_worker_tasks_active`',
  },
  workerTasksPrefetched: {
    name: 'celery.worker.tasks.prefetched',
    kind: 'gauge',
    unit: '{task}',
    description: 'Tasks the worker received and has not started (prefetched or waiting for an ETA)',
    attributes: [HEARTBEAT_WORKER],
    flower: '`flower_worker_number_of_reserved_tasks`',
  },
  workerTasksProcessed: {
    name: 'celery.worker.tasks.processed',
    kind: 'gauge',
    unit: '{task}',
    description: "Tasks the worker processed since it started, from its last heartbeat's processed",
    attributes: [HEARTBEAT_WORKER],
    flower: '`flower_worker_processed_tasks`',
  },
  workerLoadavg: {
    name: 'celery.worker.loadavg',
    kind: 'gauge',
    unit: '1',
    description: "The worker host's load average at its last heartbeat (loadavg), by period",
    attributes: [HEARTBEAT_WORKER, attr(ATTR.LOADAVG_PERIOD, LOADAVG_PERIODS)],
    flower: "`loadavg` in Flower's worker view",
  },
  tasksInFlight: {
    name: 'celery.tasks.in_flight',
    kind: 'gauge',
    unit: '{task}',
    description: 'Tasks received but not finished: waiting (not started) or running',
    attributes: [TASK_NAME, attr(ATTR.TASK_STATE, IN_FLIGHT_STATES)],
  },
  tasksOldestAge: {
    name: 'celery.tasks.oldest_age',
    kind: 'gauge',
    unit: 's',
    description:
      'Age of the oldest waiting (received, not started; since runnable) and running (since started) task, by task name',
    attributes: [TASK_NAME, attr(ATTR.TASK_STATE, IN_FLIGHT_STATES)],
  },
  queueLength: {
    name: 'celery.queue.length',
    kind: 'gauge',
    unit: '{message}',
    description: 'Messages waiting in the queue, as the broker reports it',
    attributes: [attr(ATTR.MESSAGING_DESTINATION_NAME, 'the queue')],
    celeryExporter: '`celery_queue_length`',
  },

  // Celery beat, with the beat companion (docs/periodic-tasks.md).
  beatRuns: {
    name: 'celery.beat.runs',
    kind: 'counter',
    unit: '{run}',
    description: 'Beat runs by outcome: on_time, late, missed, failed',
    attributes: [...BEAT_ENTRY, attr(ATTR.BEAT_OUTCOME, BEAT_OUTCOMES)],
  },
  beatLateness: {
    name: 'celery.beat.lateness',
    kind: 'histogram',
    unit: 's',
    description: 'Time from beat sending a run to its task starting',
    attributes: BEAT_ENTRY,
  },
  beatSinceLastSuccess: {
    name: 'celery.beat.since_last_success',
    kind: 'gauge',
    unit: 's',
    description: 'Time since the last run of the entry that succeeded (seen by this bridge)',
    attributes: BEAT_ENTRY,
  },
  beatNextRun: {
    name: 'celery.beat.next_run',
    kind: 'gauge',
    unit: 's',
    description: 'When the next run of the entry is expected (Unix time)',
    attributes: BEAT_ENTRY,
  },
  beatUp: {
    name: 'celery.beat.up',
    kind: 'gauge',
    unit: '1',
    description: '1 while celery beat heartbeats (gone after twice its interval without one)',
    attributes: [attr(ATTR.BEAT_APP)],
  },

  // The bridge's own health (pushed under the bridge's resource).
  events: {
    name: 'celery_otel_bridge.events',
    kind: 'counter',
    unit: '{event}',
    description: 'Celery events consumed, by type',
    attributes: [attr(ATTR.EVENT_TYPE, 'the event type, `task-received`, `worker-heartbeat`, …')],
    counted: true,
  },
  eventsRejected: {
    name: 'celery_otel_bridge.events.rejected',
    kind: 'counter',
    unit: '{event}',
    description: 'Messages or events that could not be used, by reason',
    attributes: [
      attr(ATTR.REASON, '`invalid_json`, `implausible_timestamp`, `too_many_attempts`, …'),
    ],
    counted: true,
  },
  eventsTruncated: {
    name: 'celery_otel_bridge.events.truncated',
    kind: 'counter',
    unit: '{field}',
    description: 'Event fields cut or left out at intake for their size or range, by field',
    attributes: [
      attr(
        ATTR.FIELD,
        '`name`, `hostname`, `eta`, …: cut or left out at intake, docs/hostile-input.md',
      ),
    ],
    counted: true,
  },
  eventsLate: {
    name: 'celery_otel_bridge.events.late',
    kind: 'counter',
    unit: '{event}',
    description: 'Events for tasks already exported (late or duplicated)',
    attributes: [],
    counted: true,
  },
  taskCountsWithoutQueue: {
    name: 'celery_otel_bridge.task_counts.without_queue',
    kind: 'counter',
    unit: '{count}',
    description:
      'Task counts that went out at once without their queue: too many tasks, or too many counts of one task, were waiting for their task-sent (docs/metrics.md)',
    attributes: [],
    counted: true,
  },
  eventsDuplicate: {
    name: 'celery_otel_bridge.events.duplicate',
    kind: 'counter',
    unit: '{event}',
    description:
      'Events already applied (a redelivery after a restart, a task received twice, a second terminal event of an exported failure): not applied again',
    attributes: [],
    counted: true,
  },
  traceContextsDropped: {
    name: 'celery_otel_bridge.trace_contexts.dropped',
    kind: 'counter',
    unit: '{context}',
    description:
      'Worker-companion trace contexts not applied, by reason: evicted (the memory of task trees was full), late (the tree already had its trace: a span link instead)',
    attributes: [attr(ATTR.REASON, TRACE_CONTEXT_DROP_REASONS)],
    counted: true,
  },
  spansExported: {
    name: 'celery_otel_bridge.spans.exported',
    kind: 'counter',
    unit: '{span}',
    description: 'Spans the collector accepted',
    attributes: [],
    counted: true,
  },
  spansDropped: {
    name: 'celery_otel_bridge.spans.dropped',
    kind: 'counter',
    unit: '{span}',
    description: 'Spans dropped, by reason: queue_full, export_rejected, too_large, unserializable',
    attributes: [attr(ATTR.REASON, SPAN_DROP_REASONS)],
    counted: true,
  },
  spansQueued: {
    name: 'celery_otel_bridge.spans.queued',
    kind: 'gauge',
    unit: '{span}',
    description: 'Spans waiting for the collector or being sent (OTEL_BSP_MAX_QUEUE_SIZE at most)',
    attributes: [],
  },
  tasksEvicted: {
    name: 'celery_otel_bridge.tasks.evicted',
    kind: 'counter',
    unit: '{task}',
    description: 'Unfinished tasks pushed out of the full in-flight table (exported as incomplete)',
    attributes: [],
    counted: true,
  },
  tasksExpired: {
    name: 'celery_otel_bridge.tasks.expired',
    kind: 'counter',
    unit: '{task}',
    description: 'Unfinished tasks given up after the task age limit (exported as incomplete)',
    attributes: [],
    counted: true,
  },
  tasksLost: {
    name: 'celery_otel_bridge.tasks.lost',
    kind: 'counter',
    unit: '{task}',
    description: 'Running tasks ended as lost because their worker went offline',
    attributes: [],
    counted: true,
  },
  tasksOutage: {
    name: 'celery_otel_bridge.tasks.outage',
    kind: 'counter',
    unit: '{task}',
    description:
      'Tasks in flight during a broker outage that got no event within --outage-grace-ms after it (exported as incomplete)',
    attributes: [],
    counted: true,
  },
  tasksTracked: {
    name: 'celery_otel_bridge.tasks.tracked',
    kind: 'gauge',
    unit: '{task}',
    description: 'Tasks held in memory now (in flight or waiting for missing events)',
    attributes: [],
  },
  tasksTrackedBytes: {
    name: 'celery_otel_bridge.tasks.tracked_bytes',
    kind: 'gauge',
    unit: 'By',
    description: 'Estimated memory of the tasks held (bounded by --max-in-flight-bytes)',
    attributes: [],
  },
  intakePaused: {
    name: 'celery_otel_bridge.intake.paused',
    kind: 'gauge',
    unit: '1',
    description:
      '1 while the bridge takes nothing from the broker because the export queue is past its high-water mark',
    attributes: [],
  },
  intakePausedTime: {
    name: 'celery_otel_bridge.intake.paused_time',
    kind: 'counter',
    unit: 's',
    description: 'Time spent paused (the collector was slower than the event stream)',
    attributes: [],
  },
  intakeBuffered: {
    name: 'celery_otel_bridge.intake.buffered',
    kind: 'gauge',
    unit: 'By',
    description:
      'Bytes of broker messages read and waiting in the bridge: on Redis --redis-max-buffered-bytes at most, on RabbitMQ --amqp-prefetch messages at most',
    attributes: [],
  },
  brokerBacklog: {
    name: 'celery_otel_bridge.broker.backlog',
    kind: 'gauge',
    unit: '{message}',
    description:
      "Messages ready in the bridge's own RabbitMQ queue, read every few seconds (up to --amqp-prefetch more are delivered and not yet acknowledged)",
    attributes: [],
  },
  brokerDisconnects: {
    name: 'celery_otel_bridge.broker.disconnects',
    kind: 'counter',
    unit: '{disconnect}',
    description:
      'Times the broker connection was lost, once per outage however many reconnects fail meanwhile',
    attributes: [],
    counted: true,
  },
  brokerConnected: {
    name: 'celery_otel_bridge.broker.connected',
    kind: 'gauge',
    unit: '1',
    description: '1 while connected to the broker and consuming (as /readyz), else 0',
    attributes: [],
  },
  lag: {
    name: 'celery_otel_bridge.lag',
    kind: 'histogram',
    unit: 's',
    description: "Bridge clock minus the event timestamp when a task's final event is processed",
    attributes: [],
  },
  taskNameOverflow: {
    name: 'celery_otel_bridge.metrics.task_name_overflow',
    kind: 'counter',
    unit: '{event}',
    description: 'Task events whose name was reported as __other__ (task name cap reached)',
    attributes: [],
  },
  internalErrors: {
    name: 'celery_otel_bridge.internal_errors',
    kind: 'counter',
    unit: '{error}',
    description:
      'Errors caught where they would have ended the process, by where: a timer, the /metrics handler, console rendering, handling a message',
    attributes: [attr(ATTR.WHERE, 'the timer or handler; each place logged once')],
    counted: true,
  },
  beatEntries: {
    name: 'celery_otel_bridge.beat.entries',
    kind: 'gauge',
    unit: '{entry}',
    description: 'Beat schedule entries tracked (at most --beat-max-entries)',
    attributes: [],
  },
  beatUntracked: {
    name: 'celery_otel_bridge.beat.untracked',
    kind: 'counter',
    unit: '{item}',
    description:
      'Beat entries, apps or waiting runs not tracked because a bound was reached, by reason',
    attributes: [attr(ATTR.REASON, BEAT_UNTRACKED_REASONS)],
  },
  diagnosisFindings: {
    name: 'celery_otel_bridge.diagnosis.findings',
    kind: 'gauge',
    unit: '{finding}',
    description:
      'Problems of the Celery setup seen in the event stream, 1 per finding and host: no_task_events, no_task_sent, lossy_version, clock_skew',
    attributes: [
      attr(ATTR.FINDING, DIAGNOSIS_FINDINGS),
      attr(ATTR.WORKER_HOSTNAME, 'not on `no_task_sent`'),
      attr(ATTR.WORKER_VERSION, 'on `lossy_version`: its Celery version'),
    ],
  },
  workerClockOffset: {
    name: 'celery_otel_bridge.worker.clock_offset',
    kind: 'gauge',
    unit: 's',
    description:
      "How far a host's event timestamps are ahead of the bridge's clock (negative: behind, or its events arrive late), seconds",
    attributes: [attr(ATTR.WORKER_HOSTNAME)],
  },
  // https://opentelemetry.io/docs/specs/semconv/system/process-metrics/#metric-processmemoryusage
  processMemoryUsage: {
    name: 'process.memory.usage',
    kind: 'gauge',
    unit: 'By',
    description: "The bridge process's resident set size",
    attributes: [],
  },
} as const satisfies Record<string, MetricSpec>;

export type MetricKey = keyof typeof METRIC_SPECS;

/** The metrics BridgeStats counts (`counted: true`), by key. */
export type CountedMetric = {
  [K in MetricKey]: (typeof METRIC_SPECS)[K] extends { readonly counted: true } ? K : never;
}[MetricKey];
