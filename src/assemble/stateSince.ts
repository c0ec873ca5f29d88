import type { TaskRecord } from './TaskRecord.js';

/**
 * When an in-flight task's current state began, in epoch seconds on the workers' clocks: the
 * running attempt's start; for a waiting task the time it became runnable (its latest receipt
 * or the end of its previous attempt, or its ETA if later: a task waiting for its ETA is not
 * stuck); NaN when unknown. For `celery.tasks.oldest_age`.
 */
export function stateSince(record: Readonly<TaskRecord>): number {
  let open: number | undefined;
  let lastEnd: number | undefined;
  for (const attempt of record.attempts) {
    if (attempt.endedAt === undefined) {
      if (attempt.startedAt !== undefined && (open === undefined || attempt.startedAt > open)) {
        open = attempt.startedAt;
      }
    } else if (lastEnd === undefined || attempt.endedAt > lastEnd) {
      lastEnd = attempt.endedAt;
    }
  }
  if (open !== undefined) return open;
  let since = Number.NaN;
  for (const t of record.receivedTimes) if (!(t <= since)) since = t;
  if (lastEnd !== undefined && !(lastEnd <= since)) since = lastEnd;
  if (record.eta !== undefined) {
    const eta = Date.parse(record.eta) / 1000;
    if (Number.isFinite(eta) && !(eta <= since)) since = eta;
  }
  return since;
}
