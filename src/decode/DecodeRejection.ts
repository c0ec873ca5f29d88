/** Why a message or an event in it was not used. Each reason is a counter label. */
export type DecodeRejectionReason =
  | 'unsupported_content_type'
  | 'compressed'
  | 'invalid_json'
  | 'invalid_envelope'
  | 'not_an_event'
  | 'unknown_event_type'
  | 'invalid_field'
  | 'message_too_large';

export interface DecodeRejection {
  readonly reason: DecodeRejectionReason;
  /** Human detail for the once-per-kind log line; never holds event payloads. */
  readonly detail: string;
}
