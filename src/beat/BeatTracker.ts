import { BEAT_UNTRACKED_REASONS } from '../shared/attributeSpecs.js';
import type { TaskFinalState, TaskRecord } from '../assemble/TaskRecord.js';
import { spanIdFor, traceIdFor } from '../shared/deterministicIds.js';
import type {
  BeatHeartbeatEvent,
  BeatRunEvent,
  BeatSchedule,
  BeatScheduleEvent,
} from '../decode/BeatEvent.js';
import type { TaskEvent } from '../decode/CeleryEvent.js';
import type { Logger } from '../log/Logger.js';
import type { BeatOutcome, BeatRun, MissedReason, SpanRef } from './BeatRun.js';
import { nextRunAfter } from './nextRunAfter.js';

export interface BeatTrackerOptions {
  /** A run due (or sent) this long ago that was not sent (or not started) is missed. */
  readonly toleranceMs: number;
  /** A run that started more than this after it was sent is late. */
  readonly lateAfterMs: number;
  /** A run that started this long ago and did not finish is missed. */
  readonly runTimeoutMs: number;
  /** Schedule entries tracked at most, all beat apps together. */
  readonly maxEntries: number;
}

/** Beat apps (Celery app names) tracked at most. */
export const MAX_BEAT_APPS = 100;
/** Runs of one entry waiting for their task to start or finish, at most. */
export const MAX_PENDING_RUNS_PER_ENTRY = 1000;
/** Runs waiting, all entries together, at most. */
export const MAX_PENDING_RUNS = 100_000;
/**
 * Task outcomes kept for runs whose `beat-run` has not arrived yet, at most: a worker's events
 * travel on another connection than beat's and can overtake them (seen in the captured fixture).
 */
export const MAX_EARLY_TASKS = 10_000;
/** Missed slots counted per entry per check; a long outage is caught up over several checks. */
const MAX_SLOTS_PER_CHECK = 1000;
/** Celery's worker liveness rule, applied to beat: gone after twice its heartbeat interval. */
const HEARTBEAT_EXPIRY_FACTOR = 2;

export type UntrackedReason = (typeof BEAT_UNTRACKED_REASONS)[number];

interface Run {
  readonly entry: Entry;
  readonly taskId: string;
  readonly sentAt: number;
  readonly scheduledAt: number;
  startedAt?: number;
  lastStartAt?: number;
  readonly span: SpanRef;
  readonly previous: SpanRef | undefined;
}

/** Lateness histogram of one entry (cumulative, like SeriesHistogram's). */
export interface LatenessSeries {
  readonly counts: number[];
  count: number;
  sum: number;
  min: number;
  max: number;
}

export interface Entry {
  readonly app: BeatApp;
  readonly name: string;
  task: string | undefined;
  schedule: BeatSchedule | undefined;
  /** JSON of `schedule`, to tell a changed schedule from the same one sent again. */
  scheduleKey: string | undefined;
  /** Unix seconds: the run expected next (undefined: the bridge cannot tell). */
  nextDue: number | undefined;
  lastSuccessAt: number | undefined;
  /** Unix seconds: when the bridge started tracking it (the start of its cumulative series). */
  readonly since: number;
  readonly runs: Record<BeatOutcome, number>;
  lateness: LatenessSeries | undefined;
  readonly pending: Map<string, Run>;
  lastRun: SpanRef | undefined;
}

export interface BeatApp {
  readonly name: string;
  hostname: string | undefined;
  /** Bridge clock (Unix seconds) of the last heartbeat, and its announced interval. */
  lastHeartbeatAt: number | undefined;
  freq: number;
  up: boolean;
  readonly entries: Map<string, Entry>;
}

/** Lateness bucket bounds in seconds (inclusive upper bounds, as the SDK's explicit buckets). */
export const LATENESS_BUCKETS_S = [
  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
];

/**
 * Follows every celery beat schedule entry the beat companion announces: when its next run is
 * due, the runs beat sends and what became of their tasks, and whether beat itself still
 * heartbeats. Decides each run's outcome (BeatRun.ts) and hands finished runs to `runFinished` (their
 * spans). Pure but for `logger`: the clock is passed in, in Unix seconds.
 *
 * Memory is bounded: at most `maxEntries` entries and MAX_BEAT_APPS apps (more are counted as
 * untracked and logged once), at most MAX_PENDING_RUNS_PER_ENTRY / MAX_PENDING_RUNS runs waiting
 * for their task (past it the oldest waiting run of the entry is given up, counted as untracked).
 * An entry missing from a complete `beat-schedule` of its app is removed with its series.
 */
export class BeatTracker {
  readonly apps = new Map<string, BeatApp>();
  readonly untracked: Record<UntrackedReason, number> = {
    entry_limit: 0,
    app_limit: 0,
    run_limit: 0,
  };
  private readonly byTaskId = new Map<string, Run>();
  /** Started / final times of tasks of scheduled task names not (yet) known as runs. */
  private readonly early = new Map<
    string,
    { startedAt?: number; final?: [TaskFinalState, number] }
  >();
  /** Task names of the tracked entries: only their tasks' early events are kept. */
  private scheduledTasks = new Set<string>();
  private entryCount = 0;
  private warnedLimit = false;

  constructor(
    private readonly options: BeatTrackerOptions,
    private readonly runFinished: (run: BeatRun) => void,
    private readonly logger: Logger,
    /** What the bridge already knows of a task (events that came before beat's `beat-run`). */
    private readonly peekTask: (taskId: string) => Readonly<TaskRecord> | undefined = () =>
      undefined,
    /** Unix seconds: the start of the tracker's own cumulative series. */
    readonly createdAt = Date.now() / 1000,
  ) {}

  get entries(): number {
    return this.entryCount;
  }

  get pendingRuns(): number {
    return this.byTaskId.size;
  }

  onSchedule(event: BeatScheduleEvent, now: number): void {
    const app = this.app(event.app, event.hostname);
    if (app === undefined) return;
    const listed = new Set<string>();
    for (const spec of event.entries) {
      listed.add(spec.name);
      const entry = this.entry(app, spec.name, now);
      if (entry === undefined) continue;
      entry.task = spec.task;
      this.scheduledTasks.add(spec.task);
      const key = JSON.stringify(spec.schedule);
      if (key !== entry.scheduleKey || entry.nextDue === undefined) {
        entry.schedule = spec.schedule;
        entry.scheduleKey = key;
        // Beat's own estimate first (Celery's arithmetic, whatever the schedule kind); never
        // before the event: an entry beat finds due now runs on its next tick.
        const next =
          spec.nextRunAt ??
          (spec.lastRunAt === undefined ? undefined : nextRunAfter(spec.schedule, spec.lastRunAt));
        entry.nextDue = next === undefined ? undefined : Math.max(next, event.timestamp);
      }
    }
    if (!event.truncated) {
      let removed = false;
      for (const [name, entry] of app.entries) {
        if (listed.has(name)) continue;
        this.remove(entry);
        removed = true;
      }
      if (removed) {
        this.scheduledTasks = new Set(
          [...this.apps.values()].flatMap((each) =>
            [...each.entries.values()].flatMap((e) => (e.task === undefined ? [] : [e.task])),
          ),
        );
      }
    }
  }

  onHeartbeat(event: BeatHeartbeatEvent, now: number): void {
    const app = this.app(event.app, event.hostname);
    if (app === undefined) return;
    app.lastHeartbeatAt = now;
    app.freq = event.freq;
    if (!app.up) {
      app.up = true;
      this.logger.info('celery beat heartbeats', { app: app.name, hostname: event.hostname });
    }
  }

  onRun(event: BeatRunEvent, now: number): void {
    const app = this.app(event.app, event.hostname);
    if (app === undefined) return;
    const entry = this.entry(app, event.entry, now);
    if (entry === undefined) return;
    if (event.task !== undefined) {
      entry.task = event.task;
      this.scheduledTasks.add(event.task);
    }
    const scheduledAt = Math.min(event.scheduledAt ?? event.timestamp, event.timestamp);
    const next =
      event.nextRunAt ??
      (entry.schedule === undefined ? undefined : nextRunAfter(entry.schedule, event.timestamp));
    entry.nextDue = next;
    if (event.taskId === undefined) {
      const span = missedSpanRef(entry, scheduledAt);
      this.finish(entry, undefined, {
        outcome: 'missed',
        missedReason: 'send_error',
        detail: event.error,
        scheduledAt,
        sentAt: undefined,
        startedAt: undefined,
        endedAt: event.timestamp,
        lateness: undefined,
        span,
        previous: this.advance(entry, span),
      });
      return;
    }
    if (this.byTaskId.has(event.taskId)) return; // the same run reported twice
    const span = runSpanRef(event.taskId);
    const run: Run = {
      entry,
      taskId: event.taskId,
      sentAt: event.timestamp,
      scheduledAt,
      span,
      previous: this.advance(entry, span),
    };
    if (entry.pending.size >= MAX_PENDING_RUNS_PER_ENTRY || this.byTaskId.size >= MAX_PENDING_RUNS)
      this.giveUpOldest(entry);
    entry.pending.set(run.taskId, run);
    this.byTaskId.set(run.taskId, run);
    // The worker's events may have come first (they travel on another connection): still in
    // the task pipeline, or already exported and kept here.
    const known = this.peekTask(run.taskId);
    const early = this.early.get(run.taskId);
    this.early.delete(run.taskId);
    const started =
      known?.attempts.find((attempt) => attempt.startedAt !== undefined)?.startedAt ??
      early?.startedAt;
    if (started !== undefined) this.started(run, started);
    const final = known?.final !== undefined ? known.final : undefined;
    if (final !== undefined) this.finished(run, final.state, final.at);
    else if (early?.final !== undefined) this.finished(run, early.final[0], early.final[1]);
  }

  /** Every task event: only those of runs beat sent are looked at (one map lookup otherwise). */
  onTaskEvent(event: TaskEvent): void {
    const run = this.byTaskId.get(event.uuid);
    if (run === undefined) {
      this.maybeEarly(event);
      return;
    }
    switch (event.type) {
      case 'task-started':
        this.started(run, event.timestamp);
        return;
      case 'task-succeeded':
        this.finished(run, 'SUCCESS', event.timestamp);
        return;
      case 'task-failed':
        this.finished(run, 'FAILURE', event.timestamp);
        return;
      case 'task-revoked':
        this.finished(run, 'REVOKED', event.timestamp);
        return;
      case 'task-rejected':
        if (event.requeue !== true) this.finished(run, 'REJECTED', event.timestamp);
        return;
      default:
        return;
    }
  }

  /** Periodic check: beat liveness, expected runs not sent, sent runs not started/finished. */
  check(now: number): void {
    const tolerance = this.options.toleranceMs / 1000;
    const runTimeout = this.options.runTimeoutMs / 1000;
    for (const app of this.apps.values()) {
      if (
        app.up &&
        app.lastHeartbeatAt !== undefined &&
        now > app.lastHeartbeatAt + HEARTBEAT_EXPIRY_FACTOR * app.freq
      ) {
        app.up = false;
        this.logger.warn(
          'celery beat is gone: no heartbeat for twice its interval; its runs will be missed',
          { app: app.name, hostname: app.hostname, intervalS: app.freq },
        );
      }
      for (const entry of app.entries.values()) {
        for (let slots = 0; slots < MAX_SLOTS_PER_CHECK; slots++) {
          const due = entry.nextDue;
          if (due === undefined || now <= due + tolerance) break;
          const span = missedSpanRef(entry, due);
          entry.nextDue =
            entry.schedule === undefined ? undefined : nextRunAfter(entry.schedule, due);
          this.finish(entry, undefined, {
            outcome: 'missed',
            missedReason: 'not_sent',
            scheduledAt: due,
            sentAt: undefined,
            startedAt: undefined,
            endedAt: due + tolerance,
            lateness: undefined,
            span,
            previous: this.advance(entry, span),
          });
        }
        for (const run of entry.pending.values()) {
          if (run.startedAt === undefined && now > run.sentAt + tolerance) {
            this.missed(run, 'not_started', run.sentAt + tolerance);
          } else if (run.lastStartAt !== undefined && now > run.lastStartAt + runTimeout) {
            this.missed(run, 'not_finished', run.lastStartAt + runTimeout);
          }
        }
      }
    }
  }

  /** Keeps the start and outcome of a task beat may not have announced yet (bounded). */
  private maybeEarly(event: TaskEvent): void {
    if (this.scheduledTasks.size === 0) return;
    const state = FINAL_STATE[event.type];
    if (event.type !== 'task-started' && state === undefined) return;
    if (event.type === 'task-rejected' && event.requeue === true) return;
    const name = event.name ?? this.peekTask(event.uuid)?.name;
    if (name === undefined || !this.scheduledTasks.has(name)) return;
    let early = this.early.get(event.uuid);
    if (early === undefined) {
      if (this.early.size >= MAX_EARLY_TASKS) {
        const oldest = this.early.keys().next().value;
        if (oldest !== undefined) this.early.delete(oldest);
      }
      early = {};
      this.early.set(event.uuid, early);
    }
    if (event.type === 'task-started') early.startedAt ??= event.timestamp;
    else if (state !== undefined) early.final = [state, event.timestamp];
  }

  private started(run: Run, at: number): void {
    run.lastStartAt = Math.max(run.lastStartAt ?? at, at);
    if (run.startedAt !== undefined) return; // a retry: lateness is the first start's
    run.startedAt = at;
    recordLateness(run.entry, Math.max(0, at - run.sentAt));
  }

  private finished(run: Run, state: TaskFinalState, at: number): void {
    const lateness =
      run.startedAt === undefined ? undefined : Math.max(0, run.startedAt - run.sentAt);
    let outcome: BeatOutcome;
    if (state === 'SUCCESS') {
      outcome =
        lateness !== undefined && lateness > this.options.lateAfterMs / 1000 ? 'late' : 'on_time';
      run.entry.lastSuccessAt = Math.max(run.entry.lastSuccessAt ?? at, at);
    } else {
      outcome = 'failed';
    }
    this.settle(run, {
      outcome,
      detail: state === 'SUCCESS' ? undefined : state,
      endedAt: Math.max(at, run.sentAt),
    });
  }

  private missed(run: Run, reason: MissedReason, at: number): void {
    this.settle(run, { outcome: 'missed', missedReason: reason, endedAt: at });
  }

  private settle(
    run: Run,
    how: Pick<BeatRun, 'outcome' | 'endedAt'> & Partial<Pick<BeatRun, 'missedReason' | 'detail'>>,
  ): void {
    run.entry.pending.delete(run.taskId);
    this.byTaskId.delete(run.taskId);
    this.finish(run.entry, run.taskId, {
      ...how,
      scheduledAt: run.scheduledAt,
      sentAt: run.sentAt,
      startedAt: run.startedAt,
      lateness: run.startedAt === undefined ? undefined : Math.max(0, run.startedAt - run.sentAt),
      span: run.span,
      previous: run.previous,
    });
  }

  private finish(
    entry: Entry,
    taskId: string | undefined,
    run: Omit<BeatRun, 'app' | 'entry' | 'task' | 'taskId'>,
  ): void {
    entry.runs[run.outcome]++;
    this.runFinished({ app: entry.app.name, entry: entry.name, task: entry.task, taskId, ...run });
  }

  /** The entry's newest run becomes `span`; returns the one before, for the link. */
  private advance(entry: Entry, span: SpanRef): SpanRef | undefined {
    const previous = entry.lastRun;
    entry.lastRun = span;
    return previous;
  }

  private giveUpOldest(entry: Entry): void {
    const victims = entry.pending.size > 0 ? entry.pending : this.oldestEntryPending();
    const oldest = victims?.values().next().value;
    if (oldest === undefined) return;
    victims?.delete(oldest.taskId);
    this.byTaskId.delete(oldest.taskId);
    this.untracked.run_limit++;
    this.warnLimit('run_limit');
  }

  private oldestEntryPending(): Map<string, Run> | undefined {
    const first = this.byTaskId.values().next().value;
    return first?.entry.pending;
  }

  private app(name: string, hostname: string | undefined): BeatApp | undefined {
    let app = this.apps.get(name);
    if (app === undefined) {
      if (this.apps.size >= MAX_BEAT_APPS) {
        this.untracked.app_limit++;
        this.warnLimit('app_limit');
        return undefined;
      }
      app = { name, hostname, lastHeartbeatAt: undefined, freq: 0, up: false, entries: new Map() };
      this.apps.set(name, app);
    }
    if (hostname !== undefined) app.hostname = hostname;
    return app;
  }

  private entry(app: BeatApp, name: string, now: number): Entry | undefined {
    let entry = app.entries.get(name);
    if (entry !== undefined) return entry;
    if (this.entryCount >= this.options.maxEntries) {
      this.untracked.entry_limit++;
      this.warnLimit('entry_limit');
      return undefined;
    }
    entry = {
      app,
      name,
      task: undefined,
      schedule: undefined,
      scheduleKey: undefined,
      nextDue: undefined,
      lastSuccessAt: undefined,
      since: now,
      runs: { on_time: 0, late: 0, missed: 0, failed: 0 },
      lateness: undefined,
      pending: new Map(),
      lastRun: undefined,
    };
    app.entries.set(name, entry);
    this.entryCount++;
    return entry;
  }

  private remove(entry: Entry): void {
    for (const taskId of entry.pending.keys()) this.byTaskId.delete(taskId);
    entry.app.entries.delete(entry.name);
    this.entryCount--;
  }

  private warnLimit(reason: UntrackedReason): void {
    if (this.warnedLimit) return;
    this.warnedLimit = true;
    this.logger.warn(
      'celery beat tracking is at its limit: further entries, apps or waiting runs are not tracked ' +
        '(counted in celery_otel_bridge.beat.untracked; raise --beat-max-entries if entries)',
      {
        reason,
        maxEntries: this.options.maxEntries,
        maxApps: MAX_BEAT_APPS,
        maxPendingRuns: MAX_PENDING_RUNS,
      },
    );
  }
}

const FINAL_STATE: Partial<Record<TaskEvent['type'], TaskFinalState>> = {
  'task-succeeded': 'SUCCESS',
  'task-failed': 'FAILURE',
  'task-revoked': 'REVOKED',
  'task-rejected': 'REJECTED',
};

function recordLateness(entry: Entry, seconds: number): void {
  const series = (entry.lateness ??= {
    counts: new Array<number>(LATENESS_BUCKETS_S.length + 1).fill(0),
    count: 0,
    sum: 0,
    min: Number.POSITIVE_INFINITY,
    max: Number.NEGATIVE_INFINITY,
  });
  let bucket = 0;
  while (bucket < LATENESS_BUCKETS_S.length && seconds > (LATENESS_BUCKETS_S[bucket] as number))
    bucket++;
  series.counts[bucket] = (series.counts[bucket] as number) + 1;
  series.count++;
  series.sum += seconds;
  series.min = Math.min(series.min, seconds);
  series.max = Math.max(series.max, seconds);
}

/** A run's span lives in its task's trace (a beat-sent task is its own root). */
function runSpanRef(taskId: string): SpanRef {
  return { traceId: traceIdFor(taskId), spanId: spanIdFor(`celery-beat-run:${taskId}`) };
}

/** A run that was never sent has no task: its ids come from the entry and the due time. */
function missedSpanRef(entry: Entry, due: number): SpanRef {
  const key = `celery-beat-missed:${entry.app.name}\u0000${entry.name}\u0000${due.toFixed(3)}`;
  return { traceId: traceIdFor(key), spanId: spanIdFor(key) };
}
