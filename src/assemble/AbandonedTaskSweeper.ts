import type { Logger } from '../log/Logger.js';
import type { WorkerLiveness } from './WorkerLiveness.js';
import { guarded } from '../shared/guarded.js';
import type { TaskAssembler } from './TaskAssembler.js';

/** What the sweeper counts: the tasks it gives up on, and bugs it caught. */
export interface SweeperCounters {
  tasksExpired(count: number): void;
  tasksLost(count: number): void;
  tasksGivenUpAfterOutage(count: number): void;
  internalError(where: string, error: unknown): void;
}

/** How often workers are checked for lost heartbeats, and tasks for the age limit. */
const LIVENESS_CHECK_MS = 1000;
const EXPIRY_CHECK_MS = 60_000;

export interface AbandonedTaskSweeperOptions {
  /** `--max-task-age-ms`: an unfinished task with no event for this long is exported (expired). */
  readonly maxTaskAgeMs: number;
  /** `--outage-grace-ms`: after a broker outage, tasks with no new event for this long go. */
  readonly outageGraceMs: number;
}

/**
 * Gives up on tasks that will never finish, so they are exported (as incomplete) instead of
 * waiting in memory: the running tasks of a worker that went offline or stopped heartbeating
 * (`lost`), tasks past the age limit (`expired`), and tasks that got no event after a broker
 * outage (`outage`). docs/reliability.md.
 */
export class AbandonedTaskSweeper {
  private timers: NodeJS.Timeout[] = [];
  /**
   * Pending outage checks, each dropped once it ran: a fired Timeout keeps its callback, and with
   * it the snapshot of every unfinished task, so a flapping broker must not pile them up.
   */
  private readonly outageChecks = new Set<NodeJS.Timeout>();

  constructor(
    private readonly assembler: TaskAssembler,
    private readonly liveness: WorkerLiveness,
    private readonly stats: SweeperCounters,
    private readonly logger: Logger,
    private readonly options: AbandonedTaskSweeperOptions,
  ) {}

  start(): void {
    const report = (where: string, error: unknown): void => this.stats.internalError(where, error);
    this.timers.push(
      setInterval(
        guarded('lost_task_check', report, () => this.giveUpOnLostTasks()),
        LIVENESS_CHECK_MS,
      ).unref(),
    );
    this.timers.push(
      setInterval(
        guarded('expiry_check', report, () =>
          this.stats.tasksExpired(
            this.assembler.expireOlderThan(this.options.maxTaskAgeMs, Date.now()),
          ),
        ),
        EXPIRY_CHECK_MS,
      ).unref(),
    );
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    for (const timer of this.outageChecks) clearTimeout(timer);
    this.outageChecks.clear();
  }

  /**
   * Back from a broker outage: events published meanwhile may be gone (Redis pub/sub keeps
   * nothing; a restarted RabbitMQ drops transient messages; a reconnecting worker may drop what it
   * had buffered). Tasks in flight now that get no event within the grace period are exported as
   * incomplete instead of waiting for the task age limit.
   */
  afterOutage(): void {
    const before = this.assembler.unfinishedLastEvents();
    if (before.size === 0) return;
    const report = (where: string, error: unknown): void => this.stats.internalError(where, error);
    const timer = setTimeout(
      guarded('outage_check', report, () => {
        this.outageChecks.delete(timer);
        const gaveUp = this.assembler.giveUpUnchanged(before);
        if (gaveUp > 0) {
          this.stats.tasksGivenUpAfterOutage(gaveUp);
          this.logger.warn(
            'tasks in flight during the broker outage got no further event: exported as incomplete',
            { tasks: gaveUp },
          );
        }
      }),
      this.options.outageGraceMs,
    ).unref();
    this.outageChecks.add(timer);
  }

  /** Ends the running tasks of workers that went offline or stopped heartbeating. */
  private giveUpOnLostTasks(): void {
    for (const hostname of this.liveness.takeNewlyDown()) {
      const lost = this.assembler.workerLost(hostname, Date.now() / 1000);
      if (lost > 0) {
        this.stats.tasksLost(lost);
        this.logger.warn('worker went offline with tasks running: their spans end as lost', {
          worker: hostname,
          tasks: lost,
        });
      }
    }
  }
}
