import type { AssemblerCounters } from '../assemble/TaskAssembler.js';
import type { DecodeRejection } from '../shared/DecodeRejection.js';
import type { SpanExportCounters } from '../export/SpanExportQueue.js';
import type { Logger } from '../log/Logger.js';
import type { SpanDropReason, TraceContextDropReason } from '../shared/attributeSpecs.js';
import { describeBug } from '../shared/describeError.js';
import {
  type CountedMetric,
  METRIC_SPECS,
  type MetricKey,
  type MetricSpec,
} from '../shared/metricSpecs.js';

/**
 * The bridge's own counters. Problems are logged once per kind when first seen (with what to do),
 * then only as a periodic summary: a flood of bad events never becomes a flood of log lines.
 *
 * The counters exported as metrics are kept by their metric (metricSpecs.ts, `counted: true`),
 * by the value of its one attribute ('' without one): BridgeMetrics observes every such metric
 * from `series`, so a new counter needs no field, getter or instrument of its own.
 */
export class BridgeStats implements AssemblerCounters, SpanExportCounters {
  private readonly counts = new Map<CountedMetric, Map<string, number>>();
  /** The hottest counter (every event), looked up once. */
  private readonly eventsByType: Map<string, number>;
  private readonly reported = new Set<string>();
  private sinceSummary = new Map<string, number>();

  constructor(private readonly logger: Logger) {
    for (const [key, spec] of Object.entries(METRIC_SPECS) as [MetricKey, MetricSpec][]) {
      if (spec.counted === true) this.counts.set(key as CountedMetric, new Map());
    }
    this.eventsByType = this.seriesOf('events');
  }

  /** Adds `value` to a counted metric, for `attribute` (the value of its one attribute). */
  count(metric: CountedMetric, value = 1, attribute = ''): void {
    this.add(this.seriesOf(metric), attribute, value);
  }

  /** A counted metric's counts by attribute value ('' for a metric without attributes). */
  series(metric: CountedMetric): ReadonlyMap<string, number> {
    return this.seriesOf(metric);
  }

  /** A counted metric's count over all its attribute values. */
  total(metric: CountedMetric): number {
    let sum = 0;
    for (const value of this.seriesOf(metric).values()) sum += value;
    return sum;
  }

  event(type: string): void {
    this.eventsByType.set(type, (this.eventsByType.get(type) ?? 0) + 1);
  }

  rejected(rejection: DecodeRejection, count: number): void {
    this.count('eventsRejected', count, rejection.reason);
    // Event types the bridge has no use for (another tool's, a newer Celery's) are no problem.
    if (rejection.reason === 'unknown_event_type') return;
    this.noteProblem(`rejected:${rejection.reason}`, count);
    // One line per distinct detail kind (e.g. per unsupported content type), not per event.
    const key = `${rejection.reason}:${rejection.detail.slice(0, 120)}`;
    if (this.reported.size < 1000 && !this.reported.has(key)) {
      this.reported.add(key);
      this.logger.warn('event rejected', { reason: rejection.reason, detail: rejection.detail });
    }
  }

  truncated(field: string, count: number): void {
    this.count('eventsTruncated', count, field);
    this.noteProblem(`truncated:${field}`, count);
    this.once(
      `truncated:${field}`,
      `an event's "${field}" was longer or larger than the bridge keeps: it is cut or left out (docs/hostile-input.md)`,
    );
  }

  tooManyAttempts(): void {
    this.rejected(
      {
        reason: 'too_many_attempts',
        detail:
          'a task has more task-started events than the bridge keeps attempts for (256): later attempts are left out of its spans',
      },
      1,
    );
  }

  lateEvent(): void {
    this.count('eventsLate');
  }

  duplicateEvent(): void {
    this.count('eventsDuplicate');
  }

  /** A task count went out without its queue: too many tasks waited for their task-sent. */
  taskCountWithoutQueue(): void {
    this.count('taskCountsWithoutQueue');
    this.noteProblem('task_counts_without_queue', 1);
    this.once(
      'task_counts_without_queue',
      'too many task counts wait for their task-sent (a flood of task events that have none): they go out without their queue (docs/metrics.md)',
    );
  }

  tasksEvicted(count: number): void {
    this.count('tasksEvicted', count);
    this.noteProblem('tasks_evicted', count);
    this.once(
      'tasks_evicted',
      'the in-flight task table is full: the oldest unfinished tasks are exported as incomplete spans (raise --max-in-flight-tasks or --max-in-flight-bytes if tasks legitimately wait long)',
    );
  }

  /** Worker companion: a tree's or chord's context forgotten (bounded memory, TraceTrees). */
  traceContextsEvicted(count: number): void {
    this.traceContextsDropped('evicted', count);
    this.noteProblem('trace_contexts_evicted', count);
    this.once(
      'trace_contexts_evicted',
      'the memory of task trees with an upstream trace context or group is full: the least recently used is forgotten, and tasks of that tree still to come keep the trace of their root task id',
    );
  }

  customEventsDropped(count: number): void {
    this.rejected(
      {
        reason: 'custom_event_limit',
        detail:
          'a task sent more custom events (task-progress...) than its span keeps: the later ones are counted, not exported',
      },
      count,
    );
  }

  /** Worker companion: a root's context came after its tree's trace was fixed. */
  lateTraceContext(): void {
    this.traceContextsDropped('late', 1);
    this.noteProblem('trace_context_late', 1);
  }

  exported(count: number): void {
    this.count('spansExported', count);
  }

  tasksExpired(count: number): void {
    if (count === 0) return;
    this.count('tasksExpired', count);
    this.noteProblem('tasks_expired', count);
  }

  tasksLost(count: number): void {
    this.count('tasksLost', count);
  }

  tasksGivenUpAfterOutage(count: number): void {
    this.count('tasksOutage', count);
  }

  exportFailing(detail: string): void {
    this.logger.warn(
      'the collector is failing: spans are kept (up to OTEL_BSP_MAX_QUEUE_SIZE) and retried with backoff',
      {
        error: detail,
      },
    );
  }

  exportRecovered(outageMs: number): void {
    this.logger.info('the collector accepts spans again', { outageMs });
  }

  dropped(reason: SpanDropReason, count: number, detail: string): void {
    this.count('spansDropped', count, reason);
    this.noteProblem(`spans_dropped:${reason}`, count);
    this.once(`dropped:${reason}`, detail);
  }

  /**
   * A bug caught in a timer, the /metrics handler or console rendering: counted, logged once per
   * place (with the first error's stack and causes), and the bridge goes on.
   */
  internalError(where: string, error: unknown): void {
    this.count('internalErrors', 1, where);
    this.noteProblem(`internal_error:${where}`, 1);
    if (this.reported.has(`internal_error:${where}`)) return;
    this.reported.add(`internal_error:${where}`);
    this.logger.error(
      `internal error, caught; the bridge goes on (counted in ${METRIC_SPECS.internalErrors.name})`,
      {
        where,
        error: describeBug(error),
      },
    );
  }

  brokerDisconnected(): void {
    this.count('brokerDisconnects');
  }

  /** Logs what went wrong since the last call, if anything. Called on a timer. */
  logSummary(): void {
    if (this.sinceSummary.size === 0) return;
    const fields: Record<string, number> = {};
    for (const [key, value] of this.sinceSummary) fields[key] = value;
    this.sinceSummary = new Map();
    this.logger.warn('problems since the last summary', fields);
  }

  /** The reason is one of the metric's declared values, which BridgeMetrics serves from 0. */
  private traceContextsDropped(reason: TraceContextDropReason, count: number): void {
    this.count('traceContextsDropped', count, reason);
  }

  private once(key: string, detail: string): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.logger.warn(detail);
  }

  private noteProblem(key: string, count: number): void {
    this.add(this.sinceSummary, key, count);
  }

  private seriesOf(metric: CountedMetric): Map<string, number> {
    const series = this.counts.get(metric);
    if (series === undefined) throw new Error(`${metric} is not a counted metric (metricSpecs.ts)`);
    return series;
  }

  private add(map: Map<string, number>, key: string, count: number): void {
    map.set(key, (map.get(key) ?? 0) + count);
  }
}
