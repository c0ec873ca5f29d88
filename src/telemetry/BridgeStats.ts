import type { AssemblerCounters } from '../assemble/TaskAssembler.js';
import type { DecodeRejection } from '../shared/DecodeRejection.js';
import type { SerializerDropReason } from '../export/ProtobufSpanSerializer.js';
import type { SpanExportCounters } from '../export/SpanExportQueue.js';
import type { Logger } from '../log/Logger.js';
import { describeBug } from '../shared/describeError.js';

/**
 * The bridge's own counters. Problems are logged once per kind when first seen (with what to do),
 * then only as a periodic summary: a flood of bad events never becomes a flood of log lines.
 */
export class BridgeStats implements AssemblerCounters, SpanExportCounters {
  readonly eventsByType = new Map<string, number>();
  readonly rejectedByReason = new Map<string, number>();
  readonly droppedSpansByReason = new Map<string, number>();
  /** Event fields cut or dropped at intake for their size or range, by field (fieldBounds.ts). */
  readonly truncatedByField = new Map<string, number>();
  spansExported = 0;
  tasksExported = 0;
  lateEvents = 0;
  duplicateEvents = 0;
  evictedTasks = 0;
  /** Worker companion: tree/chord contexts forgotten (bounded memory); root contexts too late. */
  evictedTraceContexts = 0;
  lateTraceContexts = 0;
  brokerDisconnects = 0;
  exportOutages = 0;
  expiredTasks = 0;
  lostTasks = 0;
  /** Given up after a broker outage: no event within --outage-grace-ms. */
  outageTasks = 0;
  /** Bugs caught where they would have ended the process, by where (see internalError). */
  readonly internalErrorsByWhere = new Map<string, number>();
  private readonly reported = new Set<string>();
  private sinceSummary = new Map<string, number>();

  constructor(private readonly logger: Logger) {}

  event(type: string): void {
    this.eventsByType.set(type, (this.eventsByType.get(type) ?? 0) + 1);
  }

  rejected(rejection: DecodeRejection, count: number): void {
    this.add(this.rejectedByReason, rejection.reason, count);
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
    this.add(this.truncatedByField, field, count);
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
    this.lateEvents++;
  }

  duplicateEvent(): void {
    this.duplicateEvents++;
  }

  tasksEvicted(count: number): void {
    this.evictedTasks += count;
    this.noteProblem('tasks_evicted', count);
    this.once(
      'tasks_evicted',
      'the in-flight task table is full: the oldest unfinished tasks are exported as incomplete spans (raise --max-in-flight-tasks or --max-in-flight-bytes if tasks legitimately wait long)',
    );
  }

  traceContextsEvicted(count: number): void {
    this.evictedTraceContexts += count;
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

  lateTraceContext(): void {
    this.lateTraceContexts++;
    this.noteProblem('trace_context_late', 1);
  }

  taskExported(): void {
    this.tasksExported++;
  }

  exported(count: number): void {
    this.spansExported += count;
  }

  tasksExpired(count: number): void {
    if (count === 0) return;
    this.expiredTasks += count;
    this.noteProblem('tasks_expired', count);
  }

  tasksLost(count: number): void {
    this.lostTasks += count;
  }

  tasksGivenUpAfterOutage(count: number): void {
    this.outageTasks += count;
  }

  exportFailing(detail: string): void {
    this.exportOutages++;
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

  dropped(
    reason: 'queue_full' | 'export_rejected' | SerializerDropReason,
    count: number,
    detail: string,
  ): void {
    this.add(this.droppedSpansByReason, reason, count);
    this.noteProblem(`spans_dropped:${reason}`, count);
    this.once(`dropped:${reason}`, detail);
  }

  /**
   * A bug caught in a timer, the /metrics handler or console rendering: counted, logged once per
   * place (with the first error's stack and causes), and the bridge goes on.
   */
  internalError(where: string, error: unknown): void {
    this.add(this.internalErrorsByWhere, where, 1);
    this.noteProblem(`internal_error:${where}`, 1);
    if (this.reported.has(`internal_error:${where}`)) return;
    this.reported.add(`internal_error:${where}`);
    this.logger.error(
      'internal error, caught; the bridge goes on (counted in celery_otel_bridge.internal_errors)',
      {
        where,
        error: describeBug(error),
      },
    );
  }

  brokerDisconnected(): void {
    this.brokerDisconnects++;
  }

  /** Logs what went wrong since the last call, if anything. Called on a timer. */
  logSummary(): void {
    if (this.sinceSummary.size === 0) return;
    const fields: Record<string, number> = {};
    for (const [key, value] of this.sinceSummary) fields[key] = value;
    this.sinceSummary = new Map();
    this.logger.warn('problems since the last summary', fields);
  }

  private once(key: string, detail: string): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.logger.warn(detail);
  }

  private noteProblem(key: string, count: number): void {
    this.add(this.sinceSummary, key, count);
  }

  private add(map: Map<string, number>, key: string, count: number): void {
    map.set(key, (map.get(key) ?? 0) + count);
  }
}
