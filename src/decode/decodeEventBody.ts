import { truncateMiddle } from '../shared/truncate.js';
import type { RawEventMessage } from '../shared/RawEventMessage.js';
import {
  type CeleryEvent,
  type TaskContextEvent,
  type TaskEvent,
  type TaskEventType,
  type WorkerEvent,
  type WorkerEventType,
  TASK_CONTEXT_EVENT_TYPE,
  TASK_EVENT_TYPES,
  WORKER_EVENT_TYPES,
} from './CeleryEvent.js';
import type { DecodeRejection, DecodeRejectionReason } from '../shared/DecodeRejection.js';
import {
  type BoundedField,
  type FieldCutSink,
  boundedName,
  boundedNumber,
  boundedToken,
  implausibleTimestamp,
  wholeNumber,
  MAX_HEARTBEAT_FREQ_S,
  MAX_ID_LENGTH,
  MAX_RUNTIME_S,
  MAX_SIGNUM_LENGTH,
  MAX_TIME_TEXT_LENGTH,
} from './fieldBounds.js';
import { BEAT_EVENT_TYPES, type BeatEventType } from './BeatEvent.js';
import { decodeBeatEvent } from './decodeBeatEvent.js';
import { kombuTypedString, unwrapKombuTyped } from './kombuTypedJson.js';
import { isCustomTaskType, taskCustomEvent } from './TaskCustomEvent.js';
import { upstreamContext } from './traceContext.js';

export interface DecodeOptions {
  /** Larger bodies are rejected before parsing, so one message cannot hold a lot of memory. */
  readonly maxMessageBytes: number;
  /**
   * Free-text fields (args, kwargs, result, exception, traceback) are cut to this many characters
   * as they arrive, keeping head and tail: a 10 MB traceback on a task that waits for a retry must
   * not sit in memory whole. Defaults to no limit.
   */
  readonly maxFieldLength?: number;
  /**
   * The bridge's clock (epoch seconds), read once per message: event timestamps far from it are
   * rejected (fieldBounds.ts `implausibleTimestamp`). Without it only the absolute range is checked.
   */
  readonly nowEpochSeconds?: () => number;
}

/**
 * Where decoded events and rejections go; the decoder allocates no result objects. Fields cut or
 * dropped for their size go to `truncated` (FieldCutSink).
 */
export interface DecodeSink extends FieldCutSink {
  event(event: CeleryEvent): void;
  reject(rejection: DecodeRejection, count: number): void;
}

/**
 * Decodes one broker message into Celery events.
 *
 * Celery 5 workers buffer task events and publish them as one JSON list under routing key
 * `task.multi` (celery/events/dispatcher.py `EventDispatcher.flush`); everything else is a single
 * JSON object. Only JSON is decodable without Python: pickle, msgpack and yaml bodies are
 * rejected with a reason the caller reports once.
 */
export function decodeEventBody(
  message: RawEventMessage,
  options: DecodeOptions,
  sink: DecodeSink,
): void {
  const contentType = mediaType(message.contentType);
  if (contentType !== 'application/json') {
    sink.reject(
      {
        reason: 'unsupported_content_type',
        detail:
          `content type ${JSON.stringify(message.contentType)} cannot be decoded: set ` +
          `event_serializer = 'json' in the Celery config of every worker and client`,
      },
      1,
    );
    return;
  }
  if (message.compression !== undefined) {
    sink.reject(
      {
        reason: 'compressed',
        detail:
          `Celery events arrive compressed (${message.compression}): the bridge reads ` +
          'uncompressed events only; remove the compression setting of the event producers',
      },
      1,
    );
    return;
  }
  if (message.body.length > options.maxMessageBytes) {
    sink.reject(
      {
        reason: 'message_too_large',
        detail: `a ${message.body.length}-byte event message exceeds the ${options.maxMessageBytes}-byte limit (--max-message-bytes)`,
      },
      1,
    );
    return;
  }
  let parsed: unknown;
  try {
    // Buffer#toString decodes UTF-8 and replaces invalid sequences with U+FFFD instead of failing.
    parsed = JSON.parse(message.body.toString('utf8'));
  } catch {
    // Not V8's message: it quotes the bytes around the error, which may be anyone's data.
    sink.reject(
      {
        reason: 'invalid_json',
        detail: `a message on routing key ${message.routingKey} is not valid JSON`,
      },
      1,
    );
    return;
  }
  const arrival = options.nowEpochSeconds?.();
  if (Array.isArray(parsed)) {
    for (const item of parsed as unknown[]) decodeOne(item, sink, options.maxFieldLength, arrival);
  } else {
    decodeOne(parsed, sink, options.maxFieldLength, arrival);
  }
}

function mediaType(contentType: string): string {
  const semicolon = contentType.indexOf(';');
  return (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
}

function decodeOne(
  value: unknown,
  sink: DecodeSink,
  maxFieldLength: number | undefined,
  arrival: number | undefined,
): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return reject(sink, 'not_an_event', 'an event is not a JSON object');
  }
  const raw = value as Record<string, unknown>;
  const type = raw['type'];
  const timestamp = raw['timestamp'];
  if (typeof type !== 'string') {
    return reject(sink, 'not_an_event', 'an event has no string "type"');
  }
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp) || timestamp < 0) {
    return reject(sink, 'invalid_field', `a ${clip(type)} event has no valid "timestamp"`);
  }
  const implausible = implausibleTimestamp(timestamp, arrival);
  if (implausible !== undefined) {
    return reject(
      sink,
      'implausible_timestamp',
      `a ${clip(type)} event's timestamp is ${implausible} (epoch seconds, relative to its arrival): check the clock of the host that sent it`,
    );
  }
  if (TASK_EVENT_TYPES.has(type) || type === TASK_CONTEXT_EVENT_TYPE) {
    const uuid = id(raw['uuid']);
    if (uuid === undefined) {
      return reject(sink, 'invalid_field', `a ${type} event has no valid "uuid"`);
    }
    if (type === TASK_CONTEXT_EVENT_TYPE) {
      sink.event(taskContextEvent(uuid, timestamp, raw, sink));
    } else {
      sink.event(taskEvent(type as TaskEventType, uuid, timestamp, raw, maxFieldLength, sink));
    }
    return;
  }
  if (WORKER_EVENT_TYPES.has(type)) {
    const hostname = boundedName(raw['hostname'], 'hostname', sink);
    if (hostname === undefined || hostname.length === 0) {
      return reject(sink, 'invalid_field', `a ${type} event has no "hostname"`);
    }
    const event: WorkerEvent = {
      type: type as WorkerEventType,
      hostname,
      timestamp,
      freq: boundedNumber(raw['freq'], undefined, Number.MIN_VALUE, MAX_HEARTBEAT_FREQ_S, sink),
      active: count(raw['active']),
      processed: count(raw['processed']),
      swVersion: shortString(raw['sw_ver']),
      loadavg: loadavg(raw['loadavg']),
    };
    sink.event(event);
    return;
  }
  if (BEAT_EVENT_TYPES.has(type)) {
    // The beat companion's events (src/decode/decodeBeatEvent.ts).
    const beat = decodeBeatEvent(type as BeatEventType, timestamp, raw, (r) => sink.reject(r, 1));
    if (beat !== undefined) sink.event(beat);
    return;
  }
  if (isCustomTaskType(type)) {
    // User code's `self.send_event('task-progress', ...)`: a span event on the task's span.
    const uuid = id(raw['uuid']);
    if (uuid !== undefined) {
      sink.event(taskCustomEvent(type, uuid, timestamp, raw));
      return;
    }
  }
  // Counted (BridgeStats keeps this reason out of the problem log: any newer Celery or any
  // tool on the exchange may send types of its own).
  reject(sink, 'unknown_event_type', `event type ${JSON.stringify(clip(type))} is not known`);
}

function taskEvent(
  type: TaskEventType,
  uuid: string,
  timestamp: number,
  raw: Record<string, unknown>,
  maxFieldLength: number | undefined,
  sink: FieldCutSink,
): TaskEvent {
  return {
    type,
    uuid,
    timestamp,
    hostname: boundedName(raw['hostname'], 'hostname', sink),
    name: boundedName(raw['name'], 'name', sink),
    rootId: boundedToken(unwrapKombuTyped(raw['root_id']), 'root_id', MAX_ID_LENGTH, sink),
    parentId: boundedToken(unwrapKombuTyped(raw['parent_id']), 'parent_id', MAX_ID_LENGTH, sink),
    retries: wholeNumber(raw['retries'], 'retries', sink),
    eta: boundedToken(unwrapKombuTyped(raw['eta']), 'eta', MAX_TIME_TEXT_LENGTH, sink),
    expires: boundedToken(unwrapKombuTyped(raw['expires']), 'expires', MAX_TIME_TEXT_LENGTH, sink),
    queue: boundedName(raw['queue'], 'queue', sink),
    exchange: boundedName(raw['exchange'], 'exchange', sink),
    routingKey: boundedName(raw['routing_key'], 'routing_key', sink),
    args: text(raw['args'], maxFieldLength, 'args', sink),
    kwargs: text(raw['kwargs'], maxFieldLength, 'kwargs', sink),
    result: text(raw['result'], maxFieldLength, 'result', sink),
    runtime: boundedNumber(raw['runtime'], 'runtime', 0, MAX_RUNTIME_S, sink),
    exception: text(raw['exception'], maxFieldLength, 'exception', sink),
    traceback: text(raw['traceback'], maxFieldLength, 'traceback', sink),
    terminated: bool(raw['terminated']),
    signum: boundedToken(scalar(raw['signum']), 'signum', MAX_SIGNUM_LENGTH, sink),
    expired: bool(raw['expired']),
    requeue: bool(raw['requeue']),
  };
}

/**
 * The worker companion's event (companion/celery_otel_bridge_companion). An invalid traceparent
 * is dropped and counted; the group and chord ids in the same event are still used.
 */
function taskContextEvent(
  uuid: string,
  timestamp: number,
  raw: Record<string, unknown>,
  sink: DecodeSink,
): TaskContextEvent {
  const traceparent = raw['traceparent'];
  let upstream: TaskContextEvent['upstream'];
  if (traceparent !== undefined && traceparent !== null) {
    const parsed =
      typeof traceparent === 'string'
        ? upstreamContext(traceparent, str(raw['tracestate']))
        : { invalid: `a ${typeof traceparent}, not a string` };
    if ('invalid' in parsed) {
      reject(
        sink,
        'invalid_traceparent',
        `a task's traceparent header is not a valid W3C version-00 traceparent (${parsed.invalid}): ` +
          'the task keeps the trace Celery ids give it; check what sets the header on the producer',
      );
    } else {
      upstream = parsed;
    }
  }
  return {
    type: TASK_CONTEXT_EVENT_TYPE,
    uuid,
    timestamp,
    hostname: boundedName(raw['hostname'], 'hostname', sink),
    rootId: boundedToken(unwrapKombuTyped(raw['root_id']), 'root_id', MAX_ID_LENGTH, sink),
    parentId: boundedToken(unwrapKombuTyped(raw['parent_id']), 'parent_id', MAX_ID_LENGTH, sink),
    upstream,
    group: boundedToken(unwrapKombuTyped(raw['group']), 'group', MAX_ID_LENGTH, sink),
    groupIndex: count(raw['group_index']),
    groupSize: count(raw['group_size']),
    chord: boundedToken(unwrapKombuTyped(raw['chord']), 'chord', MAX_ID_LENGTH, sink),
  };
}

function reject(sink: DecodeSink, reason: DecodeRejectionReason, detail: string): void {
  sink.reject({ reason, detail }, 1);
}

function text(
  value: unknown,
  maxLength: number | undefined,
  field: BoundedField,
  sink: FieldCutSink,
): string | undefined {
  if (typeof value !== 'string') return undefined;
  if (maxLength === undefined || value.length <= maxLength) return value;
  sink.truncated?.(field, 1);
  return truncateMiddle(value, maxLength);
}

/** A string, or a kombu >= 5.3 typed value (uuid, datetime...) as the string it stands for. */
function str(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  return typeof value === 'object' && value !== null ? kombuTypedString(value) : undefined;
}

function id(value: unknown): string | undefined {
  const text = str(value);
  return text !== undefined && text.length > 0 && text.length <= MAX_ID_LENGTH ? text : undefined;
}

/** `loadavg`: Celery sends a list of three numbers (`os.getloadavg()` rounded). */
function loadavg(value: unknown): WorkerEvent['loadavg'] {
  if (!Array.isArray(value) || value.length !== 3) return undefined;
  const [one, five, fifteen] = value as unknown[];
  const load = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  return load(one) && load(five) && load(fifteen) ? [one, five, fifteen] : undefined;
}

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** `signum` is a signal name or number, depending on how the revoke was sent. */
function scalar(value: unknown): string | undefined {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : undefined;
}

function bool(value: unknown): boolean | undefined {
  return typeof value === 'boolean' ? value : undefined;
}

function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

/** A short identifier (a version number): at most 32 printable ASCII characters, else dropped. */
function shortString(value: unknown): string | undefined {
  return typeof value === 'string' && /^[\x21-\x7e]{1,32}$/.test(value) ? value : undefined;
}
