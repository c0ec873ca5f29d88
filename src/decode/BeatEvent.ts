/**
 * The events the beat companion (companion/celery_otel_bridge_companion/beat.py) sends from the
 * `celery beat` process through Celery's event dispatcher (group `beat`, routing keys
 * `beat.schedule`, `beat.heartbeat`, `beat.run`). Celery itself sends nothing of the kind: see
 * docs/periodic-tasks.md for what `task-sent` events alone allow.
 */
export type BeatEventType = 'beat-schedule' | 'beat-heartbeat' | 'beat-run';

/**
 * A schedule as Celery expresses it (celery/schedules.py). Crontab fields come expanded, as
 * `crontab` parsed them (`_expand_cronspec`), and are matched together (month AND day of month
 * AND day of week, unlike Vixie cron), in `tz`, the zone Celery evaluates the crontab in.
 */
export type BeatSchedule =
  | {
      readonly type: 'crontab';
      /** The five fields as written, for display: `minute hour day_of_month month day_of_week`. */
      readonly cron: string;
      /** IANA zone name; undefined when Celery's zone has no name the bridge can use. */
      readonly tz: string | undefined;
      readonly minute: readonly number[];
      readonly hour: readonly number[];
      /** 0 = Sunday, as Celery counts. */
      readonly dayOfWeek: readonly number[];
      readonly dayOfMonth: readonly number[];
      readonly monthOfYear: readonly number[];
    }
  | { readonly type: 'interval'; readonly seconds: number; readonly relative: boolean }
  | { readonly type: 'solar'; readonly event: string; readonly lat: number; readonly lon: number }
  | { readonly type: 'other'; readonly repr: string };

export interface BeatEntry {
  readonly name: string;
  readonly task: string;
  readonly schedule: BeatSchedule;
  /** Unix seconds, Celery's `last_run_at` of the entry. */
  readonly lastRunAt?: number;
  /** Unix seconds, beat's own estimate (`now + remaining_estimate(last_run_at)`). */
  readonly nextRunAt?: number;
  readonly queue?: string;
}

export interface BeatScheduleEvent {
  readonly type: 'beat-schedule';
  readonly timestamp: number;
  readonly hostname?: string;
  /** The Celery app's main name: one beat schedule per app. */
  readonly app: string;
  readonly entries: readonly BeatEntry[];
  /** The companion sent only the first entries of a larger schedule. */
  readonly truncated: boolean;
}

export interface BeatHeartbeatEvent {
  readonly type: 'beat-heartbeat';
  readonly timestamp: number;
  readonly hostname?: string;
  readonly app: string;
  /** Seconds until the next heartbeat. */
  readonly freq: number;
}

export interface BeatRunEvent {
  readonly type: 'beat-run';
  readonly timestamp: number;
  readonly hostname?: string;
  readonly app: string;
  readonly entry: string;
  readonly task?: string;
  /** The task id of the run; absent when beat could not send it (`error`). */
  readonly taskId?: string;
  readonly scheduledAt?: number;
  readonly nextRunAt?: number;
  readonly error?: string;
}

export type BeatEvent = BeatScheduleEvent | BeatHeartbeatEvent | BeatRunEvent;

export const BEAT_EVENT_TYPES: ReadonlySet<string> = new Set<BeatEventType>([
  'beat-schedule',
  'beat-heartbeat',
  'beat-run',
]);

export function isBeatEvent(event: { readonly type: string }): event is BeatEvent {
  return BEAT_EVENT_TYPES.has(event.type);
}
