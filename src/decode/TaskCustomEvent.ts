import { truncateMiddle } from '../shared/truncate.js';
import { unwrapKombuTyped } from './kombuTypedJson.js';

/**
 * A task event of a type Celery itself does not send, e.g. `task-progress` from user code:
 * `self.send_event('task-progress', current=3, total=10)` in a bound task publishes an event of
 * that type with the task's `uuid` (celery/app/task.py `Task.send_event` -> the app's default
 * event dispatcher, `EventDispatcher.send`). It becomes a span event on the task's span.
 */
export interface TaskCustomEvent {
  readonly type: `task-${string}`;
  readonly custom: true;
  readonly uuid: string;
  readonly timestamp: number;
  readonly hostname?: string;
  /** The user's fields, bounded (see the constants below); kombu typed values unwrapped. */
  readonly fields: Readonly<Record<string, string | number | boolean>>;
  /** Fields left out: past MAX_CUSTOM_FIELDS, or of no usable name. */
  readonly droppedFields: number;
}

/** Fields of one custom event kept at most; the rest are counted in `droppedFields`. */
export const MAX_CUSTOM_FIELDS = 16;
/** A field name longer than this is not kept. */
export const MAX_CUSTOM_FIELD_NAME = 64;
/** String values (and JSON of lists and objects) are cut to this many characters. */
export const MAX_CUSTOM_VALUE_LENGTH = 256;
/** A custom event type longer than this is not a custom event (it is counted as unknown). */
export const MAX_CUSTOM_TYPE_LENGTH = 64;

/** Every event's envelope fields (celery/events/event.py `Event`, dispatcher `send`): not user data. */
const ENVELOPE: ReadonlySet<string> = new Set([
  'type',
  'uuid',
  'timestamp',
  'hostname',
  'utcoffset',
  'pid',
  'clock',
  'local_received',
]);

export function isCustomTaskType(type: string): type is `task-${string}` {
  return type.startsWith('task-') && type.length > 5 && type.length <= MAX_CUSTOM_TYPE_LENGTH;
}

/** The custom event of a decoded JSON object whose type and uuid were already checked. */
export function taskCustomEvent(
  type: `task-${string}`,
  uuid: string,
  timestamp: number,
  raw: Record<string, unknown>,
): TaskCustomEvent {
  const fields: Record<string, string | number | boolean> = {};
  let kept = 0;
  let dropped = 0;
  for (const key of Object.keys(raw)) {
    if (ENVELOPE.has(key)) continue;
    const value = customValue(unwrapKombuTyped(raw[key]));
    if (value === undefined) continue;
    if (kept >= MAX_CUSTOM_FIELDS || key.length === 0 || key.length > MAX_CUSTOM_FIELD_NAME) {
      dropped++;
      continue;
    }
    fields[key] = value;
    kept++;
  }
  const hostname = raw['hostname'];
  return {
    type,
    custom: true,
    uuid,
    timestamp,
    hostname: typeof hostname === 'string' ? hostname : undefined,
    fields,
    droppedFields: dropped,
  };
}

function customValue(value: unknown): string | number | boolean | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return truncateMiddle(value, MAX_CUSTOM_VALUE_LENGTH);
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'boolean') return value;
  // Lists and objects: their JSON, cut. (The message itself is already bounded in bytes.)
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch {
    return undefined;
  }
  return json === undefined ? undefined : truncateMiddle(json, MAX_CUSTOM_VALUE_LENGTH);
}
