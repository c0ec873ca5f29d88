import type { TaskEvent } from '../decode/CeleryEvent.js';
import type { Attempt, FinishedTask, TaskRecord } from './TaskRecord.js';

export interface TaskAssemblerOptions {
  /** In-flight tasks kept at most; the oldest is exported as incomplete when one more arrives. */
  readonly maxInFlightTasks: number;
  /**
   * How long a task whose final event arrived is held for events known to be missing (the
   * `task-sent` from another process, an attempt's start or outcome) before it is exported with
   * what arrived. Complete tasks are exported at once.
   */
  readonly finishGraceMs: number;
  /** Ids of exported tasks remembered, so late or duplicate events make no second span. */
  readonly maxFinishedTaskIds: number;
  /** Keep args, kwargs and result (user data): only when the user opted in. */
  readonly captureArgs: boolean;
  readonly captureResult: boolean;
}

export interface AssemblerCounters {
  /** An event for a task already exported (late, duplicated, or a redelivery after the end). */
  lateEvent(): void;
  duplicateEvent(): void;
  tasksEvicted(count: number): void;
}

/** A task received more often than this is counted no further (redelivery loops). */
const MAX_RECEIVED_TIMES = 64;

/** Clients that send `task-sent` at all are expected to keep doing so for this long. */
const SENT_EVENTS_MEMORY_MS = 10 * 60_000;

/**
 * Turns the stream of task events into one finished record per task id: the place where Celery
 * events become tasks. (export/taskSpans.ts then makes the spans.)
 *
 * Events from different processes arrive in any order: a client's `task-sent` after the worker's
 * `task-received`, the next attempt's `task-started` before the previous attempt's
 * `task-retried`. So nothing here depends on arrival order: attempts are matched by timestamp and
 * host, and a task is only handed on when its final event is in and nothing is known missing, or
 * when the grace period for the missing parts ran out.
 */
export class TaskAssembler {
  private readonly inFlight = new Map<string, TaskRecord>();
  /** Final event seen, waiting for stragglers: task id -> monotonic deadline (ms). */
  private readonly held = new Map<string, number>();
  private readonly finishedIds = new Set<string>();
  private lastSentEventMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly options: TaskAssemblerOptions,
    private readonly emit: (task: FinishedTask) => void,
    private readonly counters: AssemblerCounters,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  handle(event: TaskEvent): void {
    if (this.finishedIds.has(event.uuid)) {
      this.counters.lateEvent();
      return;
    }
    let record = this.inFlight.get(event.uuid);
    if (record === undefined) {
      record = { id: event.uuid, receivedTimes: [], lastEventAt: event.timestamp, attempts: [] };
      this.inFlight.set(event.uuid, record);
      if (this.inFlight.size > this.options.maxInFlightTasks) this.evictOldest();
    }
    if (event.timestamp > record.lastEventAt) record.lastEventAt = event.timestamp;
    this.apply(record, event);
    if (record.final !== undefined) this.settle(record);
  }

  /** Exports held tasks whose grace period is over. Call it on a timer. */
  tick(): void {
    const now = this.nowMs();
    // Deadlines are set as now + a constant, so the map is in deadline order.
    for (const [id, deadline] of this.held) {
      if (deadline > now) break;
      const record = this.inFlight.get(id);
      this.held.delete(id);
      if (record !== undefined) this.finish(record, 'held_too_long');
    }
  }

  /** On shutdown: hand on every task whose final event arrived, complete or not. */
  flushHeld(): void {
    for (const id of this.held.keys()) {
      const record = this.inFlight.get(id);
      if (record !== undefined) this.finish(record, 'held_too_long');
    }
    this.held.clear();
  }

  private apply(record: TaskRecord, event: TaskEvent): void {
    switch (event.type) {
      case 'task-sent':
        this.lastSentEventMs = this.nowMs();
        record.sentAt = min(record.sentAt, event.timestamp);
        this.learn(record, event);
        if (event.queue !== undefined && event.queue !== '') record.queue = event.queue;
        if (event.exchange !== undefined) record.exchange = event.exchange;
        if (event.routingKey !== undefined) record.routingKey = event.routingKey;
        return;
      case 'task-received':
        if (record.receivedTimes.includes(event.timestamp)) {
          this.counters.duplicateEvent();
          return;
        }
        if (record.receivedTimes.length < MAX_RECEIVED_TIMES)
          record.receivedTimes.push(event.timestamp);
        record.receivedAt = min(record.receivedAt, event.timestamp);
        this.noteWorker(record, event);
        this.learn(record, event);
        return;
      case 'task-started':
        this.startAttempt(record, event);
        return;
      case 'task-succeeded':
        if (this.options.captureResult && event.result !== undefined) record.result = event.result;
        this.endAttempt(record, event, 'SUCCESS');
        record.final ??= { state: 'SUCCESS', at: event.timestamp };
        return;
      case 'task-failed':
        this.endAttempt(record, event, 'FAILURE');
        record.final ??= {
          state: 'FAILURE',
          at: event.timestamp,
          exception: event.exception,
          traceback: event.traceback,
        };
        return;
      case 'task-retried':
        this.endAttempt(record, event, 'RETRY');
        return;
      case 'task-revoked':
        // `terminated` revokes kill a running attempt; others drop a task that never ran
        // (celery/worker/request.py `Request.revoked`, `terminate`).
        this.noteWorker(record, event);
        if (record.attempts.some((a) => a.endedAt === undefined)) {
          this.endAttempt(record, event, 'REVOKED');
        }
        record.final ??= {
          state: 'REVOKED',
          at: event.timestamp,
          terminated: event.terminated,
          signum: event.signum,
          expired: event.expired,
        };
        return;
      case 'task-rejected':
        this.noteWorker(record, event);
        if (record.attempts.some((a) => a.endedAt === undefined)) {
          this.endAttempt(record, event, 'REJECTED');
        }
        // A rejected message with requeue=True goes back to the queue and runs again.
        if (event.requeue !== true) record.final ??= { state: 'REJECTED', at: event.timestamp };
        return;
    }
  }

  /**
   * Fields of `task-sent` / `task-received`, which describe the task message. Name and root are
   * the same on every message of a task; per-message fields (eta, args) are taken from the latest
   * message by event time, so the result does not depend on arrival order.
   */
  private learn(record: TaskRecord, event: TaskEvent): void {
    if (event.name !== undefined) record.name = event.name;
    if (event.rootId !== undefined) record.rootId = event.rootId;
    // A retry re-sends the message naming the task as its own parent (celery/app/task.py
    // `Task.retry` -> `signature_from_request`); keep the real parent, never make a cycle.
    if (
      event.parentId !== undefined &&
      event.parentId !== record.id &&
      record.parentId === undefined
    ) {
      record.parentId = event.parentId;
    }
    if (event.retries !== undefined) record.retries = Math.max(record.retries ?? 0, event.retries);
    if (record.messageAt !== undefined && event.timestamp < record.messageAt) return;
    record.messageAt = event.timestamp;
    record.eta = event.eta;
    record.expires = event.expires;
    if (this.options.captureArgs) {
      if (event.args !== undefined) record.args = event.args;
      if (event.kwargs !== undefined) record.kwargs = event.kwargs;
    }
  }

  private noteWorker(record: TaskRecord, event: TaskEvent): void {
    if (event.hostname === undefined) return;
    if (record.workerHostnameAt !== undefined && event.timestamp < record.workerHostnameAt) return;
    record.workerHostname = event.hostname;
    record.workerHostnameAt = event.timestamp;
  }

  private startAttempt(record: TaskRecord, event: TaskEvent): void {
    const at = event.timestamp;
    const host = event.hostname;
    if (record.attempts.some((a) => a.startedAt === at && a.hostname === host)) {
      this.counters.duplicateEvent();
      return;
    }
    // The outcome may have arrived first: attach the start to the earliest outcome after it.
    let best: Attempt | undefined;
    for (const attempt of record.attempts) {
      if (attempt.startedAt !== undefined || attempt.endedAt === undefined) continue;
      if (attempt.endedAt < at || !sameHost(attempt.hostname, host)) continue;
      if (best?.endedAt === undefined || attempt.endedAt < best.endedAt) best = attempt;
    }
    if (best !== undefined) {
      best.startedAt = at;
      best.hostname ??= host;
    } else {
      record.attempts.push({ startedAt: at, hostname: host });
    }
    this.noteWorker(record, event);
  }

  private endAttempt(record: TaskRecord, event: TaskEvent, outcome: Attempt['outcome']): void {
    const at = event.timestamp;
    const host = event.hostname;
    if (record.attempts.some((a) => a.endedAt === at && a.outcome === outcome)) {
      this.counters.duplicateEvent();
      return;
    }
    // The attempt this ends is the latest open one that started before it on the same worker.
    let best: Attempt | undefined;
    for (const attempt of record.attempts) {
      if (attempt.endedAt !== undefined || attempt.startedAt === undefined) continue;
      if (attempt.startedAt > at || !sameHost(attempt.hostname, host)) continue;
      if (best?.startedAt === undefined || attempt.startedAt > best.startedAt) best = attempt;
    }
    const target = best ?? { hostname: host };
    if (best === undefined) record.attempts.push(target);
    target.endedAt = at;
    target.outcome = outcome;
    target.exception = event.exception;
    target.traceback = event.traceback;
    target.runtime = event.runtime;
    this.noteWorker(record, event);
  }

  private settle(record: TaskRecord): void {
    if (this.isComplete(record)) {
      this.held.delete(record.id);
      this.finish(record, 'complete');
    } else if (!this.held.has(record.id)) {
      this.held.set(record.id, this.nowMs() + this.options.finishGraceMs);
    }
  }

  private isComplete(record: TaskRecord): boolean {
    if (record.name === undefined) return false;
    // Clients that send `task-sent` are expected to for this task too (task_send_sent_event).
    const sentExpected = this.nowMs() - this.lastSentEventMs < SENT_EVENTS_MEMORY_MS;
    if (sentExpected && record.sentAt === undefined) return false;
    for (const attempt of record.attempts) {
      if (attempt.startedAt === undefined || attempt.endedAt === undefined) return false;
    }
    return true;
  }

  private finish(record: TaskRecord, completeness: FinishedTask['completeness']): void {
    this.inFlight.delete(record.id);
    this.finishedIds.add(record.id);
    if (this.finishedIds.size > this.options.maxFinishedTaskIds) {
      // Sets iterate in insertion order: forget the oldest id.
      const oldest = this.finishedIds.values().next().value;
      if (oldest !== undefined) this.finishedIds.delete(oldest);
    }
    this.emit({ record, completeness });
  }

  private evictOldest(): void {
    const oldest = this.inFlight.values().next().value;
    if (oldest === undefined) return;
    this.held.delete(oldest.id);
    this.counters.tasksEvicted(1);
    this.finish(oldest, oldest.final === undefined ? 'evicted' : 'held_too_long');
  }
}

function min(current: number | undefined, value: number): number {
  return current === undefined || value < current ? value : current;
}

/** Unknown hosts match anything: some events are missing a hostname. */
function sameHost(a: string | undefined, b: string | undefined): boolean {
  return a === undefined || b === undefined || a === b;
}
