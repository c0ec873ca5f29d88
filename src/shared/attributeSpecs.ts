/**
 * Every attribute name the bridge puts on spans, span events, links, resources and metrics, and
 * every value it enumerates: the one place they are spelled. Spans and metrics take the names
 * from `ATTR`; docs/span-model.md's attribute reference is generated from `ATTRIBUTE_SPECS`
 * (`npm run docs`) and a unit test checks the page against it, as `optionSpecs.ts` is checked
 * against the configuration reference.
 *
 * Names follow the OpenTelemetry semantic conventions where one exists (messaging, error,
 * exception, service, host: https://opentelemetry.io/docs/specs/semconv/registry/attributes/);
 * Celery's own ids and states are `celery.*` (docs/span-model.md says why for each).
 */

/** Where an attribute is found; the attribute reference has one column for it. */
export type AttributeCarrier =
  | 'task span'
  | 'attempt span'
  | 'exception event'
  | 'task-revoked event'
  | 'link'
  | 'resource'
  | 'beat run span'
  | 'metrics';

export interface AttributeSpec {
  readonly name: string;
  readonly on: readonly AttributeCarrier[];
  /** Every value the bridge sets, when it chooses among a few (on spans and resources). */
  readonly values?: readonly string[];
  /** What the value is, when not one of `values` (or besides them). */
  readonly value?: string;
}

/** `celery.task.incomplete`: why a task span went out without everything (TaskRecord `completeness`). */
export const INCOMPLETE_REASONS = [
  'held_too_long',
  'evicted',
  'expired',
  'lost',
  'outage',
  'cancelled',
] as const;
export type IncompleteReason = (typeof INCOMPLETE_REASONS)[number];

/**
 * `error.type` on a span the bridge ended without an exception: why it gave up. A task span's is
 * its `celery.task.incomplete` (`held_too_long` has its final event, so never an error); an
 * attempt's is `lost` or `cancelled`.
 */
export const BRIDGE_ERROR_TYPES = ['lost', 'cancelled', 'expired', 'outage', 'evicted'] as const;
export type BridgeErrorType = (typeof BRIDGE_ERROR_TYPES)[number];

/** `celery.task.state` on a task span: the final state, or the last known for one unfinished. */
export const TASK_SPAN_STATES = [
  'SUCCESS',
  'FAILURE',
  'REVOKED',
  'REJECTED',
  'STARTED',
  'RETRY',
  'RECEIVED',
  'PENDING',
] as const;

/** `celery.attempt.outcome` (TaskRecord `AttemptOutcome`). */
export const ATTEMPT_OUTCOMES = [
  'SUCCESS',
  'FAILURE',
  'RETRY',
  'REVOKED',
  'REJECTED',
  'LOST',
  'CANCELLED',
] as const;

/** `messaging.system`: the broker's well-known identifier. */
export const MESSAGING_SYSTEMS = ['rabbitmq', 'redis'] as const;
export type MessagingSystem = (typeof MESSAGING_SYSTEMS)[number];

/** `messaging.operation.type` and `messaging.operation.name` of a task span. */
export const OPERATION_PROCESS = 'process';

/** `celery.link.type` of each link the bridge makes. */
export const LINK_TYPES = ['chord_header', 'upstream', 'beat_task', 'beat_previous_run'] as const;
export type LinkType = (typeof LINK_TYPES)[number];

/**
 * `celery.beat.outcome` of a run:
 * - `on_time`: sent by beat, started within `--beat-late-after-ms` of being sent, succeeded;
 * - `late`: the same, but started later than that (waited in the queue);
 * - `failed`: the task failed, was revoked, or rejected without requeue;
 * - `missed`: beat sent nothing by the expected time plus `--beat-tolerance-ms` (`not_sent`;
 *   `send_error` when beat tried and could not), or the task did not start within that tolerance
 *   of being sent (`not_started`), or did not finish within `--beat-run-timeout-ms` of starting
 *   (`not_finished`).
 */
export const BEAT_OUTCOMES = ['on_time', 'late', 'missed', 'failed'] as const;
export type BeatOutcome = (typeof BEAT_OUTCOMES)[number];

/** `celery.beat.missed_reason` of a missed beat run. */
export const MISSED_REASONS = ['not_sent', 'send_error', 'not_started', 'not_finished'] as const;
export type MissedReason = (typeof MISSED_REASONS)[number];

/** `celery.task.state` of the `celery.tasks` counter: one per task event type. */
export const TASK_EVENT_STATES = [
  'sent',
  'received',
  'started',
  'succeeded',
  'failed',
  'retried',
  'revoked',
  'rejected',
  'cancelled',
] as const;
export type TaskEventState = (typeof TASK_EVENT_STATES)[number];

/** `celery.task.state` of the in-flight and oldest-age gauges. */
export const IN_FLIGHT_STATES = ['waiting', 'running'] as const;

/** `celery.task.outcome` of the runtime histogram. */
export const RUNTIME_OUTCOMES = ['success', 'failure', 'retry'] as const;
export type RuntimeOutcome = (typeof RUNTIME_OUTCOMES)[number];

/** `celery.worker.loadavg.period` of each of a heartbeat's three `loadavg` values. */
export const LOADAVG_PERIODS = ['1m', '5m', '15m'] as const;

/** `reason` of `celery_otel_bridge.spans.dropped`. */
export const SPAN_DROP_REASONS = [
  'queue_full',
  'export_rejected',
  'too_large',
  'unserializable',
] as const;
export type SpanDropReason = (typeof SPAN_DROP_REASONS)[number];

/** `reason` of `celery_otel_bridge.trace_contexts.dropped` (TraceTrees). */
export const TRACE_CONTEXT_DROP_REASONS = ['evicted', 'late'] as const;
export type TraceContextDropReason = (typeof TRACE_CONTEXT_DROP_REASONS)[number];

/** `reason` of `celery_otel_bridge.beat.untracked` (BeatTracker `UntrackedReason`). */
export const BEAT_UNTRACKED_REASONS = ['entry_limit', 'app_limit', 'run_limit'] as const;

/** `celery_otel_bridge.finding` of the self-diagnosis (EventStreamDiagnosis `Finding`). */
export const DIAGNOSIS_FINDINGS = [
  'no_task_events',
  'no_task_sent',
  'lossy_version',
  'clock_skew',
] as const;

const SPECS = {
  TASK_ID: {
    name: 'celery.task.id',
    on: ['task span', 'attempt span', 'link', 'beat run span'],
    value: 'the task id (on a chord header link and a beat run: the linked task)',
  },
  MESSAGE_ID: { name: 'messaging.message.id', on: ['task span'], value: 'the task id' },
  TASK_NAME: {
    name: 'celery.task.name',
    on: ['task span', 'attempt span', 'beat run span', 'metrics'],
    value: 'the task name',
  },
  TASK_STATE: {
    name: 'celery.task.state',
    on: ['task span', 'metrics'],
    values: TASK_SPAN_STATES,
  },
  TASK_RETRIES: { name: 'celery.task.retries', on: ['task span'], value: 'retries seen' },
  TASK_ATTEMPTS: { name: 'celery.task.attempts', on: ['task span'], value: 'attempts seen' },
  TASK_ROOT_ID: { name: 'celery.task.root_id', on: ['task span'], value: "Celery's root_id" },
  TASK_PARENT_ID: {
    name: 'celery.task.parent_id',
    on: ['task span'],
    value: "Celery's parent_id",
  },
  TASK_ETA: { name: 'celery.task.eta', on: ['task span'], value: "the task's eta" },
  TASK_EXPIRES: { name: 'celery.task.expires', on: ['task span'], value: "the task's expires" },
  GROUP_ID: { name: 'celery.group.id', on: ['task span'], value: 'the group id (companion)' },
  GROUP_INDEX: {
    name: 'celery.group.index',
    on: ['task span', 'link'],
    value: "the task's place in its group (companion)",
  },
  GROUP_SIZE: { name: 'celery.group.size', on: ['task span'], value: 'the group size (companion)' },
  CHORD_CALLBACK_ID: {
    name: 'celery.chord.callback_id',
    on: ['task span'],
    value: "the chord callback's task id (companion)",
  },
  TASK_RECEIVED_COUNT: {
    name: 'celery.task.received_count',
    on: ['task span'],
    value: 'deliveries, when more than one',
  },
  TASK_DELIVERY: {
    name: 'celery.task.delivery',
    on: ['task span'],
    value: '1, 2, … on a continuation span',
  },
  TASK_INCOMPLETE: {
    name: 'celery.task.incomplete',
    on: ['task span'],
    values: INCOMPLETE_REASONS,
  },
  WORKER_HOSTNAME: {
    name: 'celery.worker.hostname',
    on: ['task span', 'attempt span', 'metrics'],
    value: "the worker's node name",
  },
  TASK_ARGS: { name: 'celery.task.args', on: ['task span'], value: 'with `--capture-args`' },
  TASK_KWARGS: { name: 'celery.task.kwargs', on: ['task span'], value: 'with `--capture-args`' },
  TASK_RESULT: { name: 'celery.task.result', on: ['task span'], value: 'with `--capture-result`' },
  MESSAGING_SYSTEM: { name: 'messaging.system', on: ['task span'], values: MESSAGING_SYSTEMS },
  MESSAGING_OPERATION_TYPE: {
    name: 'messaging.operation.type',
    on: ['task span'],
    values: [OPERATION_PROCESS],
  },
  MESSAGING_OPERATION_NAME: {
    name: 'messaging.operation.name',
    on: ['task span'],
    values: [OPERATION_PROCESS],
  },
  MESSAGING_DESTINATION_NAME: {
    name: 'messaging.destination.name',
    on: ['task span', 'metrics'],
    value: 'the queue',
  },
  RABBITMQ_ROUTING_KEY: {
    name: 'messaging.rabbitmq.destination.routing_key',
    on: ['task span'],
    value: 'the routing key (RabbitMQ)',
  },
  ERROR_TYPE: {
    name: 'error.type',
    on: ['task span', 'attempt span', 'metrics'],
    values: BRIDGE_ERROR_TYPES,
    value: 'the Python exception class',
  },
  ATTEMPT: { name: 'celery.attempt', on: ['attempt span'], value: '0, 1, …' },
  ATTEMPT_OUTCOME: {
    name: 'celery.attempt.outcome',
    on: ['attempt span'],
    values: ATTEMPT_OUTCOMES,
  },
  ATTEMPT_START_UNKNOWN: {
    name: 'celery.attempt.start_unknown',
    on: ['attempt span'],
    values: ['true'],
  },
  TASK_RUNTIME: {
    name: 'celery.task.runtime',
    on: ['attempt span'],
    value: "task-succeeded's runtime, seconds",
  },
  EXCEPTION_TYPE: {
    name: 'exception.type',
    on: ['exception event'],
    value: 'the Python exception class',
  },
  EXCEPTION_MESSAGE: {
    name: 'exception.message',
    on: ['exception event'],
    value: 'the exception message',
  },
  EXCEPTION_STACKTRACE: {
    name: 'exception.stacktrace',
    on: ['exception event'],
    value: "Celery's traceback",
  },
  REVOKE_TERMINATED: {
    name: 'celery.revoke.terminated',
    on: ['task-revoked event'],
    values: ['true', 'false'],
  },
  REVOKE_SIGNUM: {
    name: 'celery.revoke.signum',
    on: ['task-revoked event'],
    value: 'the signal sent',
  },
  REVOKE_EXPIRED: {
    name: 'celery.revoke.expired',
    on: ['task-revoked event'],
    values: ['true', 'false'],
  },
  LINK_TYPE: { name: 'celery.link.type', on: ['link'], values: LINK_TYPES },
  SERVICE_NAME: {
    name: 'service.name',
    on: ['resource'],
    value: '`--service-name` / `--service-name-map`; `celery-otel-bridge` on its own resource',
  },
  SERVICE_VERSION: {
    name: 'service.version',
    on: ['resource'],
    value: "the bridge's version, on its own resource",
  },
  TELEMETRY_SDK_LANGUAGE: {
    name: 'telemetry.sdk.language',
    on: ['resource'],
    values: ['nodejs'],
  },
  SERVICE_INSTANCE_ID: {
    name: 'service.instance.id',
    on: ['resource'],
    value: "the worker's node name",
  },
  HOST_NAME: { name: 'host.name', on: ['resource'], value: "the node name's host part" },
  BEAT_APP: {
    name: 'celery.beat.app',
    on: ['beat run span', 'metrics'],
    value: "the beat app's name",
  },
  BEAT_ENTRY: {
    name: 'celery.beat.entry',
    on: ['beat run span', 'metrics'],
    value: 'the schedule entry',
  },
  BEAT_OUTCOME: {
    name: 'celery.beat.outcome',
    on: ['beat run span', 'metrics'],
    values: BEAT_OUTCOMES,
  },
  BEAT_SCHEDULED_TIME: {
    name: 'celery.beat.scheduled_time',
    on: ['beat run span'],
    value: 'when the run was due, Unix seconds',
  },
  BEAT_MISSED_REASON: {
    name: 'celery.beat.missed_reason',
    on: ['beat run span'],
    values: MISSED_REASONS,
  },
  BEAT_LATENESS: {
    name: 'celery.beat.lateness',
    on: ['beat run span'],
    value: 'sent to started, seconds',
  },
  BEAT_ERROR: { name: 'celery.beat.error', on: ['beat run span'], value: "beat's send error" },
  // Metric attributes only; their values are in each metric's spec (metricSpecs.ts).
  TASK_OUTCOME: { name: 'celery.task.outcome', on: ['metrics'] },
  EVENT_TYPE: { name: 'celery.event.type', on: ['metrics'] },
  LOADAVG_PERIOD: { name: 'celery.worker.loadavg.period', on: ['metrics'] },
  REASON: { name: 'reason', on: ['metrics'] },
  FIELD: { name: 'field', on: ['metrics'] },
  WHERE: { name: 'where', on: ['metrics'] },
  FINDING: { name: 'celery_otel_bridge.finding', on: ['metrics'] },
  /** The worker's Celery version (`sw_ver`) on a `lossy_version` finding. */
  WORKER_VERSION: { name: 'celery.worker.version', on: ['metrics'] },
  /** The SDK's cardinality-limit series (https://opentelemetry.io/docs/specs/otel/metrics/sdk/#overflow-attribute). */
  METRIC_OVERFLOW: { name: 'otel.metric.overflow', on: ['metrics'] },
  /** The instrumentation scope as /metrics labels, as the SDK's Prometheus exporter writes it. */
  OTEL_SCOPE_NAME: { name: 'otel.scope.name', on: ['metrics'] },
  OTEL_SCOPE_VERSION: { name: 'otel.scope.version', on: ['metrics'] },
  OTEL_SCOPE_SCHEMA_URL: { name: 'otel.scope.schema_url', on: ['metrics'] },
} as const satisfies Record<string, AttributeSpec>;

/** Every attribute, in the order of the reference table. */
export const ATTRIBUTE_SPECS: readonly AttributeSpec[] = Object.values(SPECS);

/** The attribute names, by constant: `ATTR.TASK_ID` is `celery.task.id`. */
export const ATTR = Object.fromEntries(
  Object.entries(SPECS).map(([key, spec]) => [key, spec.name]),
) as { readonly [K in keyof typeof SPECS]: (typeof SPECS)[K]['name'] };
