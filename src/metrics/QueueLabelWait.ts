/** One increment of `celery.tasks` waiting for the task's queue. */
export interface WaitingCount {
  readonly name: string;
  readonly state: string;
  readonly worker: string | undefined;
}

/**
 * Task counts held until the task's queue is known, so that they are counted under it.
 *
 * Only `task-sent` names a task's queue (celery/app/amqp.py `send_task_message`: the `queue` of
 * its event; `task-received` has none), and the client publishes it after the task message, on
 * the event dispatcher's own connection. The worker's events then often arrive first (with a
 * fresh client per task, as in the integration tests, a good share of `task-received`,
 * `task-started` and `task-failed` did), and were counted without a queue, so a panel or alert
 * filtered by queue missed them. A count of a task whose queue is not known yet waits here
 * until the `task-sent` comes or `graceMs` passed (then it is counted without a queue, as before).
 *
 * Bounded: at most `maxTasks` tasks wait, each with at most `maxCountsPerTask` counts (a task
 * has a handful of events; a flood of one task id's events must not grow a list); past either a
 * count goes out at once, without a queue. Nothing is ever dropped, only counted later or without
 * the label.
 */
export class QueueLabelWait {
  /** Task id -> when its first count began to wait, and its counts; oldest first. */
  private readonly waiting = new Map<string, { sinceMs: number; counts: WaitingCount[] }>();
  /**
   * No count is due before this (the oldest one's wait ends then, or later if it was resolved):
   * `expire` runs for every event while counts wait, and returns here without walking the map.
   */
  private dueMs = Number.POSITIVE_INFINITY;

  constructor(
    private readonly maxTasks: number,
    private readonly maxCountsPerTask: number,
    private readonly graceMs: number,
    private readonly count: (count: WaitingCount, queue: string | undefined) => void,
  ) {}

  /** Tasks whose counts wait. */
  get size(): number {
    return this.waiting.size;
  }

  /** Holds a count of the task; false (nothing held) when a bound is reached. */
  hold(taskId: string, count: WaitingCount, nowMs: number): boolean {
    const entry = this.waiting.get(taskId);
    if (entry !== undefined) {
      if (entry.counts.length >= this.maxCountsPerTask) return false;
      entry.counts.push(count);
      return true;
    }
    if (this.waiting.size >= this.maxTasks) return false;
    if (this.waiting.size === 0) this.dueMs = nowMs + this.graceMs;
    this.waiting.set(taskId, { sinceMs: nowMs, counts: [count] });
    return true;
  }

  /** The task's queue is known (its `task-sent`): its held counts go out under it. */
  resolve(taskId: string, queue: string | undefined): void {
    const entry = this.waiting.get(taskId);
    if (entry === undefined) return;
    this.waiting.delete(taskId);
    for (const count of entry.counts) this.count(count, queue);
  }

  /** Counts that waited `graceMs` go out without a queue: no `task-sent` is coming for them. */
  expire(nowMs: number): void {
    if (nowMs < this.dueMs) return;
    this.dueMs = Number.POSITIVE_INFINITY;
    for (const [taskId, entry] of this.waiting) {
      if (nowMs - entry.sinceMs < this.graceMs) {
        this.dueMs = entry.sinceMs + this.graceMs;
        return;
      }
      this.resolve(taskId, undefined);
    }
  }

  /** Everything held goes out now (the bridge stops). */
  flush(): void {
    for (const taskId of [...this.waiting.keys()]) this.resolve(taskId, undefined);
  }
}
