import { BEAT_OUTCOMES, type BeatOutcome, type MissedReason } from '../shared/attributeSpecs.js';

/** Declared with the other attribute values (shared/attributeSpecs.ts). */
export type { BeatOutcome, MissedReason };
export { BEAT_OUTCOMES };

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
