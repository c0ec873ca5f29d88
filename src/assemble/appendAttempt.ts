import { type Attempt, NO_ATTEMPTS, type TaskRecord } from './TaskRecord.js';

/**
 * Execution attempts kept per task at most. Celery retries a task as often as its `max_retries`
 * says (3 by default, unbounded with None), and every `task-started` is an attempt: a task
 * that retries more than this keeps its first attempts, and its `celery.task.retries` still comes
 * from the message's `retries`. The bound also keeps each event's scan of the attempts short:
 * a message of 40,000 `task-started` for one task must not cost 40,000² steps.
 */
export const MAX_ATTEMPTS = 256;

/**
 * Appends an attempt in place (the shared frozen empty list is replaced by a new array the
 * first time); false, changing nothing, once the task has MAX_ATTEMPTS attempts.
 */
export function appendAttempt(record: TaskRecord, attempt: Attempt): boolean {
  if (record.attempts.length >= MAX_ATTEMPTS) return false;
  if (record.attempts === NO_ATTEMPTS) record.attempts = [attempt];
  else record.attempts.push(attempt);
  return true;
}
