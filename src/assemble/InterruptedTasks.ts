import type { TaskEvent } from '../decode/CeleryEvent.js';
import { BoundedLru } from './BoundedLru.js';
import { type Attempt, NO_ATTEMPTS, NO_TIMES, type TaskRecord } from './TaskRecord.js';

/**
 * Tasks whose run was interrupted: the worker went offline while running it (the attempt ends
 * `LOST`), or cancelled it (`task-cancelled`, the attempt ends `CANCELLED`). Such a task may not
 * be over: an `acks_late` task's message goes back to the queue and runs again (a redelivery),
 * and a worker that announced `worker-offline` (a warm shutdown, or a forged event) may still
 * send the real outcome. docs/task-lifecycle.md explains the choices; in short:
 *
 * - The interrupted task is held for the finish grace period (`--finish-grace-ms`) rather than
 *   exported at once: the real outcome (or `task-cancelled`, which a worker sends right before
 *   `worker-offline` but which may arrive after it) replaces the bridge's `LOST`, and a
 *   redelivery received meanwhile keeps the task in flight: its run is the next attempt of the
 *   same span.
 * - After it was exported (as `lost` or `cancelled`), the task's next events are not late: they
 *   make a continuation span, a child of the first span with span id from (task id, delivery
 *   number), attempts numbered on from the first span's. This module remembers what that needs,
 *   for the last MAX_INTERRUPTED_TASKS such tasks.
 */
export const MAX_INTERRUPTED_TASKS = 10_000;

/** What a continuation needs of the task's exported span(s). */
interface ExportedInterrupted {
  readonly name?: string;
  readonly rootId?: string;
  readonly parentId?: string;
  readonly queue?: string;
  readonly exchange?: string;
  readonly routingKey?: string;
  readonly retries?: number;
  /** Spans of this task exported so far (the first is delivery 0). */
  readonly delivery: number;
  /** Attempt spans exported so far, over every delivery. */
  readonly attempts: number;
  /** The interrupted attempt: a real outcome after the export belongs to it. */
  readonly interrupted?: Pick<Attempt, 'startedAt' | 'hostname'>;
  /** Events up to this time are of the exported span (duplicates), not of a new run. */
  readonly until: number;
}

const OUTCOMES: ReadonlySet<TaskEvent['type']> = new Set([
  'task-succeeded',
  'task-failed',
  'task-retried',
  'task-revoked',
  'task-rejected',
  'task-cancelled',
]);

/** `lost` / `cancelled` while the task's last run was interrupted and nothing came after it. */
export function interruptedCompleteness(record: TaskRecord): 'lost' | 'cancelled' | undefined {
  if (record.final !== undefined) return undefined;
  const last = latestAttempt(record);
  if (last === undefined || (last.outcome !== 'LOST' && last.outcome !== 'CANCELLED')) {
    return undefined;
  }
  // Received again after the interrupted run started: a redelivery is on its way.
  const since = last.startedAt ?? last.endedAt ?? Number.POSITIVE_INFINITY;
  if (record.receivedTimes.some((t) => t > since)) return undefined;
  return last.outcome === 'LOST' ? 'lost' : 'cancelled';
}

function latestAttempt(record: TaskRecord): Attempt | undefined {
  let best: Attempt | undefined;
  for (const attempt of record.attempts) {
    const at = attempt.startedAt ?? attempt.endedAt ?? 0;
    if (best === undefined || at >= (best.startedAt ?? best.endedAt ?? 0)) best = attempt;
  }
  return best;
}

export class InterruptedTasks {
  private readonly exported = new BoundedLru<string, ExportedInterrupted>(MAX_INTERRUPTED_TASKS);

  /** Notes a task exported as `lost` or `cancelled`, so that a later run continues it. */
  exportedInterrupted(record: TaskRecord): void {
    const last = latestAttempt(record);
    this.exported.set(record.id, {
      name: record.name,
      rootId: record.rootId,
      parentId: record.parentId,
      queue: record.queue,
      exchange: record.exchange,
      routingKey: record.routingKey,
      retries: record.retries,
      delivery: record.delivery ?? 0,
      attempts: (record.attemptOffset ?? 0) + record.attempts.length,
      interrupted:
        last === undefined ? undefined : { startedAt: last.startedAt, hostname: last.hostname },
      until: Math.max(last?.startedAt ?? 0, record.receivedAt ?? 0, record.sentAt ?? 0),
    });
  }

  /** Forgets a task exported in any other way (its id may be reused only as a duplicate). */
  exportedOtherwise(id: string): void {
    this.exported.delete(id);
  }

  /**
   * For an event of a task exported as interrupted: the record of its continuation, which the
   * caller puts in flight; undefined when the event is not news (a duplicate of what was
   * exported) or the task was not interrupted.
   */
  continuation(event: TaskEvent): TaskRecord | undefined {
    const before = this.exported.peek(event.uuid);
    if (before === undefined) return undefined;
    const outcome = OUTCOMES.has(event.type);
    const interrupted = before.interrupted;
    // The real outcome of the interrupted run: same worker, after its start.
    const ofInterrupted =
      outcome &&
      interrupted?.startedAt !== undefined &&
      interrupted.startedAt <= event.timestamp &&
      (interrupted.hostname === undefined ||
        event.hostname === undefined ||
        interrupted.hostname === event.hostname);
    if (!ofInterrupted && event.timestamp <= before.until) return undefined;
    if (event.type === 'task-sent') return undefined;
    this.exported.delete(event.uuid);
    const record: TaskRecord = {
      id: event.uuid,
      receivedTimes: NO_TIMES,
      lastEventAt: event.timestamp,
      attempts: ofInterrupted
        ? [{ startedAt: interrupted.startedAt, hostname: interrupted.hostname }]
        : NO_ATTEMPTS,
      delivery: before.delivery + 1,
      attemptOffset: before.attempts,
    };
    if (before.name !== undefined) record.name = before.name;
    if (before.rootId !== undefined) record.rootId = before.rootId;
    if (before.parentId !== undefined) record.parentId = before.parentId;
    if (before.queue !== undefined) record.queue = before.queue;
    if (before.exchange !== undefined) record.exchange = before.exchange;
    if (before.routingKey !== undefined) record.routingKey = before.routingKey;
    if (before.retries !== undefined) record.retries = before.retries;
    return record;
  }
}

/**
 * The attempt the bridge ended as LOST that an outcome at `at` from `host` belongs to (the
 * latest such attempt started before it on that worker), if any.
 */
export function lostAttemptFor(
  record: TaskRecord,
  at: number,
  host: string | undefined,
): Attempt | undefined {
  let best: Attempt | undefined;
  for (const attempt of record.attempts) {
    if (attempt.outcome !== 'LOST' || attempt.startedAt === undefined) continue;
    if (attempt.startedAt > at) continue;
    if (attempt.hostname !== undefined && host !== undefined && attempt.hostname !== host) continue;
    if (best?.startedAt === undefined || attempt.startedAt > best.startedAt) best = attempt;
  }
  return best;
}
