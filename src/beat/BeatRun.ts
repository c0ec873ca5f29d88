/**
 * `celery.beat.outcome` of a run:
 * - `on_time`: sent by beat, started within `--beat-late-after-ms` of being sent, succeeded;
 * - `late`: the same, but started later than that (waited in the queue);
 * - `failed`: the task failed, was revoked, or rejected without requeue;
 * - `missed`: beat sent nothing by the expected time plus `--beat-tolerance-ms` (`not_sent`;
 *   `send_error` when beat tried and could not), or the task did not start within that tolerance
 *   of being sent (`not_started`), or did not finish within `--beat-run-timeout-ms` of starting
 *   (`not_finished`).
 */
export type BeatOutcome = 'on_time' | 'late' | 'missed' | 'failed';

export const BEAT_OUTCOMES: readonly BeatOutcome[] = ['on_time', 'late', 'missed', 'failed'];

export type MissedReason = 'not_sent' | 'send_error' | 'not_started' | 'not_finished';

/** A span's identity, for links between runs and to the task span. */
export interface SpanRef {
  readonly traceId: string;
  readonly spanId: string;
}

/** A run whose outcome is decided: what its span is made of. */
export interface BeatRun {
  readonly app: string;
  readonly entry: string;
  readonly task: string | undefined;
  /** Absent for a run beat never sent. */
  readonly taskId: string | undefined;
  readonly outcome: BeatOutcome;
  readonly missedReason?: MissedReason;
  /** Why it failed: the task's final state, or beat's send error. */
  readonly detail?: string;
  /** Unix seconds: when the run was due (beat's `scheduled_at`, or the bridge's expected time). */
  readonly scheduledAt: number;
  readonly sentAt: number | undefined;
  readonly startedAt: number | undefined;
  /** Unix seconds: the task's final event, or when the bridge gave up on it. */
  readonly endedAt: number;
  /** Seconds from sent to started, when both are known. */
  readonly lateness: number | undefined;
  readonly span: SpanRef;
  /** The entry's run before this one, so a user can walk the history. */
  readonly previous: SpanRef | undefined;
}
