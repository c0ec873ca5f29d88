/** Why a message or an event in it was not used. Each reason is a counter label. */
export type DecodeRejectionReason =
  | 'unsupported_content_type'
  | 'compressed'
  | 'invalid_json'
  | 'invalid_envelope'
  | 'not_an_event'
  | 'unknown_event_type'
  | 'invalid_field'
  | 'message_too_large'
  /** Redis: a message arrived while the bridge's read buffer was full (a burst longer than
   * --redis-max-buffered-bytes can hold); it is dropped unread. */
  | 'buffer_full'
  /** A `task-otel-context` event's traceparent is not a valid W3C version-00 header: the
   * traceparent is ignored, the rest of the event is used. */
  | 'invalid_traceparent'
  /** An event's timestamp is out of range or far from its arrival time (decode/fieldBounds.ts). */
  | 'implausible_timestamp'
  /** A `task-started` past the attempts kept per task (assemble/appendAttempt.ts). */
  | 'too_many_attempts'
  /** A custom task event past the number one task's span keeps (customSpanEvents.ts). */
  | 'custom_event_limit';

export interface DecodeRejection {
  readonly reason: DecodeRejectionReason;
  /** Human detail for the once-per-kind log line; never holds event payloads. */
  readonly detail: string;
}
