import type { InFlightTasks } from './InFlightTasks.js';
import type { TaskRecord } from './TaskRecord.js';

/*
 * When the bridge gives up on tasks that will never finish (README "Reliability"); the assembler
 * exports the tasks these choose. AbandonedTaskSweeper decides when to ask.
 */

/** Unfinished tasks with no event for `maxAgeMs` (by their events' own clock): `expired`. */
export function expiredTaskIds(
  tasks: InFlightTasks,
  maxAgeMs: number,
  nowEpochMs: number,
): string[] {
  return tasks.unfinishedIdsBefore((nowEpochMs - maxAgeMs) / 1000);
}

/**
 * A worker went offline or stopped heartbeating: the tasks it was running will send no more
 * events from it. Their open attempt ends as LOST (changed in place); returns those tasks. Tasks
 * it had only received are left: their unacknowledged messages go back to the queue and run
 * elsewhere.
 */
export function loseWorkerRuns(
  tasks: InFlightTasks,
  hostname: string,
  atEpochSeconds: number,
): TaskRecord[] {
  const lost: TaskRecord[] = [];
  tasks.forEachUnfinishedWithAttempts((record) => {
    const open = record.attempts.find((a) => a.endedAt === undefined && a.startedAt !== undefined);
    if (open?.hostname !== hostname) return;
    open.endedAt = Math.max(atEpochSeconds, open.startedAt ?? atEpochSeconds);
    open.outcome = 'LOST';
    lost.push(record);
  });
  return lost;
}

/**
 * After a broker outage: the tasks of `before` (`unfinishedLastEvents` then) still unfinished and
 * with no event since. Their events were lost while the connection was down: `outage`.
 */
export function unchangedTaskIds(
  tasks: InFlightTasks,
  before: ReadonlyMap<string, number>,
): string[] {
  const ids: string[] = [];
  for (const [id, lastEventAt] of before) {
    if (tasks.unfinishedLastEventAt(id) === lastEventAt) ids.push(id);
  }
  return ids;
}
