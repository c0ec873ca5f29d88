/**
 * Bounds on every field an event carries, by kind, applied as events are decoded: anyone who can
 * publish to `celeryev` can send any value, and names, hosts and queues end up as map keys,
 * metric label values and span names. Free text (args, exceptions, tracebacks) is bounded
 * separately, by `--max-attribute-length` (DecodeOptions.maxFieldLength).
 *
 * The limits (docs/hostile-input.md):
 * - names (task name, hostname, queue, exchange, routing key): 255 characters, the longest
 *   name AMQP 0-9-1 allows for queues, exchanges and routing keys (`shortstr`), and longer than a
 *   `celery@<fully qualified host name>` (253) needs. Longer ones are cut, ending in `…`.
 * - ids (uuid, root and parent ids, group, chord): 256 characters; a longer id is not used.
 * - eta / expires: 64 characters (an ISO 8601 timestamp is 32); a longer one is not used.
 * - timestamps: epoch seconds within [arrival − 7 days, arrival + 1 hour] (see
 *   `plausibleTimestamp`); the event is rejected otherwise.
 * - durations (`runtime`): 0 to 1 year of seconds; counts (`retries`, worker `active`,
 *   `processed`): non-negative safe integers; heartbeat `freq`: above 0, at most 1 hour.
 *
 * https://www.rabbitmq.com/amqp-0-9-1-reference#domain.shortstr
 */

/** Longest task name, hostname, queue, exchange or routing key kept, in UTF-16 units. */
export const MAX_NAME_LENGTH = 255;
/** Longest task id (and root, parent, group, chord id) used. */
export const MAX_ID_LENGTH = 256;
/** Longest `eta` / `expires` kept. */
export const MAX_TIME_TEXT_LENGTH = 64;
/** Longest `signum` kept (a signal name or number). */
export const MAX_SIGNUM_LENGTH = 32;

/** Events stamped earlier than this before their arrival are refused. */
export const MAX_EVENT_AGE_S = 7 * 24 * 3600;
/** Events stamped later than this after their arrival are refused (clock skew allowance). */
export const MAX_EVENT_FUTURE_S = 3600;
/** Whatever the arrival time: never after 9999-12-31T23:59:59Z (JavaScript dates end near it). */
export const MAX_EPOCH_SECONDS = 253_402_300_799;

/** Longest task `runtime` kept, in seconds. */
export const MAX_RUNTIME_S = 365 * 24 * 3600;
/** Longest heartbeat interval kept, in seconds. */
export const MAX_HEARTBEAT_FREQ_S = 3600;

/** The event fields that can be cut or dropped at intake: the `field` attribute of the counter. */
export type BoundedField =
  | 'name'
  | 'hostname'
  | 'queue'
  | 'exchange'
  | 'routing_key'
  | 'root_id'
  | 'parent_id'
  | 'group'
  | 'chord'
  | 'eta'
  | 'expires'
  | 'signum'
  | 'runtime'
  | 'retries'
  | 'args'
  | 'kwargs'
  | 'result'
  | 'exception'
  | 'traceback';

/**
 * A name cut to `maxLength`, ending in `…` when it was cut. Never splits a surrogate pair (a
 * half pair would become U+FFFD in the UTF-8 the bridge sends).
 */
export function cutName(value: string, maxLength: number = MAX_NAME_LENGTH): string {
  if (value.length <= maxLength) return value;
  let end = Math.max(0, maxLength - 1);
  const last = value.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${value.slice(0, end)}…`;
}

/**
 * Why an event's timestamp cannot be used, or undefined when it is plausible: a finite number
 * of epoch seconds, positive, within the JavaScript date range, and, when the arrival time is
 * known, no more than MAX_EVENT_AGE_S before it and MAX_EVENT_FUTURE_S after it. Celery stamps
 * events with `time.time()` of the sending host (celery/events/event.py `Event`), so an honest
 * timestamp is near the arrival time on any host whose clock is roughly right; the past window
 * leaves room for events that waited in the bridge's own RabbitMQ queue (30 minutes by default).
 */
export function implausibleTimestamp(
  timestamp: number,
  arrivalEpochSeconds: number | undefined,
): string | undefined {
  if (!(timestamp > 0) || timestamp > MAX_EPOCH_SECONDS) return 'out of range';
  if (arrivalEpochSeconds === undefined) return undefined;
  if (timestamp < arrivalEpochSeconds - MAX_EVENT_AGE_S) return 'more than 7 days in the past';
  if (timestamp > arrivalEpochSeconds + MAX_EVENT_FUTURE_S) return 'more than 1 hour in the future';
  return undefined;
}

/** Told about every field cut or dropped at intake (a counter by field). */
export interface FieldCutSink {
  truncated?(field: BoundedField, count: number): void;
}

/** A name field: a string, cut to MAX_NAME_LENGTH. */
export function boundedName(
  value: unknown,
  field: BoundedField,
  sink: FieldCutSink,
): string | undefined {
  if (typeof value !== 'string') return undefined;
  if (value.length <= MAX_NAME_LENGTH) return value;
  sink.truncated?.(field, 1);
  return cutName(value);
}

/** A string field that is useless cut (an id, a timestamp text): dropped when too long. */
export function boundedToken(
  value: unknown,
  field: BoundedField,
  maxLength: number,
  sink: FieldCutSink,
): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return undefined;
  if (value.length <= maxLength) return value;
  sink.truncated?.(field, 1);
  return undefined;
}

/** A number within [min, max], else undefined (counted when it was a number out of range). */
export function boundedNumber(
  value: unknown,
  field: BoundedField | undefined,
  min: number,
  max: number,
  sink: FieldCutSink,
): number | undefined {
  if (typeof value !== 'number') return undefined;
  if (value >= min && value <= max) return value;
  if (field !== undefined) sink.truncated?.(field, 1);
  return undefined;
}

/** A count: a non-negative safe integer, else undefined (counted when it was another number). */
export function wholeNumber(
  value: unknown,
  field: BoundedField,
  sink: FieldCutSink,
): number | undefined {
  if (typeof value !== 'number') return undefined;
  if (Number.isSafeInteger(value) && value >= 0) return value;
  sink.truncated?.(field, 1);
  return undefined;
}
