import type { TaskEvent } from '../decode/CeleryEvent.js';
import { appendAttempt } from './appendAttempt.js';
import { applyTaskMessage, type TaskMessageRules } from './applyTaskMessage.js';
import { lostAttemptFor } from './InterruptedTasks.js';
import { noteWorker } from './noteWorker.js';
import type { Attempt, TaskRecord } from './TaskRecord.js';

export interface TaskEventRules extends TaskMessageRules {
  /** Keep the result (user data): only when the user opted in. */
  readonly captureResult: boolean;
}

/** What applying an event reports besides its changes. */
export interface TaskEventReport {
  duplicateEvent(): void;
  /** An attempt past the attempts kept per task (appendAttempt.ts) was left out. */
  tooManyAttempts?(): void;
}

/**
 * Applies one task event to the task's record, whatever order events arrive in: attempts are
 * matched by timestamp and host (an attempt's outcome may come before its start, the next
 * attempt's start before the previous one's `task-retried`). The caller keeps `lastEventAt` and
 * decides what the result means (held, complete: TaskAssembler).
 */
export function applyTaskEvent(
  record: TaskRecord,
  event: TaskEvent,
  rules: TaskEventRules,
  report: TaskEventReport,
): void {
  switch (event.type) {
    case 'task-sent':
    case 'task-received':
      if (applyTaskMessage(record, event, rules) === 'duplicate') report.duplicateEvent();
      return;
    case 'task-started':
      startAttempt(record, event, rules, report);
      return;
    case 'task-succeeded':
      if (rules.captureResult && event.result !== undefined) record.result = event.result;
      endAttempt(record, event, 'SUCCESS', rules, report);
      record.final ??= { state: 'SUCCESS', at: event.timestamp };
      return;
    case 'task-failed':
      // A second task-failed of the same run (a hard time limit: TimeLimitExceeded from
      // celery/worker/request.py `on_timeout`, then WorkerLostError from `on_failure`).
      if (record.final?.state === 'FAILURE' && !hasOpenAttempt(record)) {
        report.duplicateEvent();
        return;
      }
      endAttempt(record, event, 'FAILURE', rules, report);
      record.final ??= {
        state: 'FAILURE',
        at: event.timestamp,
        exception: event.exception,
        traceback: event.traceback,
      };
      return;
    case 'task-retried':
      endAttempt(record, event, 'RETRY', rules, report);
      return;
    case 'task-revoked':
      // `terminated` revokes kill a running attempt; others drop a task that never ran
      // (celery/worker/request.py `Request.revoked`, `terminate`).
      noteWorker(record, event, rules.strings);
      if (hasOpenAttempt(record)) endAttempt(record, event, 'REVOKED', rules, report);
      record.final ??= {
        state: 'REVOKED',
        at: event.timestamp,
        terminated: event.terminated,
        signum: event.signum,
        expired: event.expired,
      };
      return;
    case 'task-rejected':
      noteWorker(record, event, rules.strings);
      if (hasOpenAttempt(record)) endAttempt(record, event, 'REJECTED', rules, report);
      // A rejected message with requeue=True goes back to the queue and runs again.
      if (event.requeue !== true) record.final ??= { state: 'REJECTED', at: event.timestamp };
      return;
    case 'task-cancelled':
      // The worker killed the run; the message may run again (InterruptedTasks).
      endAttempt(record, event, 'CANCELLED', rules, report);
      return;
  }
}

function hasOpenAttempt(record: TaskRecord): boolean {
  return record.attempts.some((a) => a.endedAt === undefined);
}

function startAttempt(
  record: TaskRecord,
  event: TaskEvent,
  rules: TaskEventRules,
  report: TaskEventReport,
): void {
  const at = event.timestamp;
  const host = event.hostname;
  if (record.attempts.some((a) => a.startedAt === at && a.hostname === host)) {
    report.duplicateEvent();
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
  } else if (!appendAttempt(record, { startedAt: at, hostname: rules.strings.intern(host) })) {
    report.tooManyAttempts?.();
    return;
  }
  noteWorker(record, event, rules.strings);
}

function endAttempt(
  record: TaskRecord,
  event: TaskEvent,
  outcome: Attempt['outcome'],
  rules: TaskEventRules,
  report: TaskEventReport,
): void {
  const at = event.timestamp;
  const host = event.hostname;
  if (record.attempts.some((a) => a.endedAt === at && a.outcome === outcome)) {
    report.duplicateEvent();
    return;
  }
  // The attempt this ends is the latest open one that started before it on the same worker.
  let best: Attempt | undefined;
  for (const attempt of record.attempts) {
    if (attempt.endedAt !== undefined || attempt.startedAt === undefined) continue;
    if (attempt.startedAt > at || !sameHost(attempt.hostname, host)) continue;
    if (best?.startedAt === undefined || attempt.startedAt > best.startedAt) best = attempt;
  }
  // The bridge's own LOST (its worker went offline) gives way to the real outcome.
  const lost = best === undefined ? lostAttemptFor(record, at, host) : undefined;
  const target = best ?? lost ?? { hostname: rules.strings.intern(host) };
  if (best === undefined && lost === undefined && !appendAttempt(record, target)) {
    report.tooManyAttempts?.();
    return;
  }
  target.endedAt = at;
  target.outcome = outcome;
  target.exception = event.exception;
  target.traceback = event.traceback;
  target.runtime = event.runtime;
  noteWorker(record, event, rules.strings);
}

/** Unknown hosts match anything: some events are missing a hostname. */
function sameHost(a: string | undefined, b: string | undefined): boolean {
  return a === undefined || b === undefined || a === b;
}
