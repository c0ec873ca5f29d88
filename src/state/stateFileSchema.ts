import type { AssemblerChanges, AssemblerSnapshot } from '../assemble/TaskAssembler.js';
import type {
  Attempt,
  CustomSpanEvent,
  AttemptOutcome,
  TaskFinal,
  TaskFinalState,
  TaskRecord,
} from '../assemble/TaskRecord.js';
import type { UpstreamContext } from '../decode/CeleryEvent.js';

export const STATE_FORMAT = 'celery-otel-bridge/state';
export const STATE_VERSION = 1;
export const JOURNAL_FORMAT = 'celery-otel-bridge/state-journal';
export const JOURNAL_VERSION = 1;

/** What the state file (the base) holds (JSON). */
export interface StateFileContent {
  readonly format: typeof STATE_FORMAT;
  readonly version: typeof STATE_VERSION;
  readonly savedAt: string;
  /**
   * The id of the journal that continues this base (state/StateJournal.ts): only a journal whose
   * header names it is applied. Absent in files of bridges without a journal: the base alone.
   */
  readonly journal?: string;
  readonly tasks: TaskRecord[];
  readonly finishedIds: string[];
}

/** The journal's first line (JSON). */
export interface JournalHeader {
  readonly format: typeof JOURNAL_FORMAT;
  readonly version: typeof JOURNAL_VERSION;
  /** The `journal` id of the base this journal continues. */
  readonly base: string;
}

/** Each further line of the journal (JSON): what one checkpoint changed (AssemblerChanges). */
export interface JournalEntry extends AssemblerChanges {
  readonly savedAt: string;
}

/**
 * A field of the file is not what the bridge writes. The message names the field by its place in
 * the format (`tasks[3].name`) and what was expected, never the value found: the file may be
 * someone else's, planted to make the bridge print it.
 */
export class StateSchemaError extends Error {
  override readonly name = 'StateSchemaError';
}

/** Task ids, names and the like: far longer than anything the bridge keeps. */
const MAX_ID_LENGTH = 1024;
/**
 * Epoch seconds the bridge can have written: from 1970 to the year 3000. Anything beyond is not a
 * time a task ran at (and would break date formatting further on).
 */
const MAX_EPOCH_SECONDS = 32_503_680_000;

// Every value of each union, checked by the compiler: a new outcome or state added to
// TaskRecord.ts must be added here too, or the type check fails.
const ATTEMPT_OUTCOMES: Record<AttemptOutcome, true> = {
  SUCCESS: true,
  FAILURE: true,
  RETRY: true,
  REVOKED: true,
  REJECTED: true,
  LOST: true,
  CANCELLED: true,
};
const FINAL_STATES: Record<TaskFinalState, true> = {
  SUCCESS: true,
  FAILURE: true,
  REVOKED: true,
  REJECTED: true,
};

type Json = Record<string, unknown>;

/**
 * Checks a parsed state file field by field against the format the bridge writes and returns a
 * fresh copy holding only the known fields: the file is trusted no further than that. Throws
 * StateSchemaError at the first field that does not fit, so a file is used whole or not at all.
 */
export function validateStateFile(value: unknown): {
  savedAt: string;
  journal: string | undefined;
  snapshot: AssemblerSnapshot;
} {
  const root = object(value, 'the file');
  if (root['format'] !== STATE_FORMAT || root['version'] !== STATE_VERSION) {
    throw new StateSchemaError(
      `it is not a celery-otel-bridge state file of version ${STATE_VERSION} ("format" and "version")`,
    );
  }
  const savedAt = isoTime(root['savedAt'], '"savedAt"');
  known(root, ['format', 'version', 'savedAt', 'journal', 'tasks', 'finishedIds'], 'the file');
  const journal = root['journal'] === undefined ? undefined : journalId(root['journal'], 'journal');
  const tasks = array(root['tasks'], 'tasks').map((task, index) =>
    taskRecord(task, `tasks[${index}]`),
  );
  const finishedIds = identifiers(root['finishedIds'], 'finishedIds');
  return { savedAt, journal, snapshot: { tasks, finishedIds } };
}

/** Checks the journal's first line; returns the id of the base it continues. */
export function validateJournalHeader(value: unknown): string {
  const root = object(value, 'its first line');
  if (root['format'] !== JOURNAL_FORMAT || root['version'] !== JOURNAL_VERSION) {
    throw new StateSchemaError(
      `it is not a celery-otel-bridge state journal of version ${JOURNAL_VERSION} ("format" and "version")`,
    );
  }
  known(root, ['format', 'version', 'base'], 'its first line');
  return journalId(root['base'], 'base');
}

/**
 * Checks one journal entry as `validateStateFile` checks the base, field by field, naming the
 * field and never the value; returns a fresh copy holding only the known fields.
 */
export function validateJournalEntry(value: unknown): JournalEntry {
  const root = object(value, 'the entry');
  known(root, ['savedAt', 'removedIds', 'finishedIds', 'changed', 'added'], 'the entry');
  const records = (key: 'changed' | 'added'): TaskRecord[] =>
    array(root[key], key).map((task, index) => taskRecord(task, `${key}[${index}]`));
  return {
    savedAt: isoTime(root['savedAt'], '"savedAt"'),
    removedIds: identifiers(root['removedIds'], 'removedIds'),
    finishedIds: identifiers(root['finishedIds'], 'finishedIds'),
    changed: records('changed'),
    added: records('added'),
  };
}

function isoTime(value: unknown, at: string): string {
  if (typeof value !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/.test(value)) {
    throw new StateSchemaError(`${at} is not an ISO 8601 UTC time`);
  }
  return value;
}

/** The random id linking a base and its journal: 32 lowercase hex digits. */
function journalId(value: unknown, at: string): string {
  if (typeof value !== 'string' || !/^[0-9a-f]{32}$/.test(value)) {
    throw new StateSchemaError(`${at} is not 32 lowercase hex digits`);
  }
  return value;
}

function identifiers(value: unknown, at: string): string[] {
  return array(value, at).map((id, index) => identifier(id, `${at}[${index}]`));
}

function taskRecord(value: unknown, at: string): TaskRecord {
  const r = object(value, at);
  known(r, TASK_KEYS, at);
  const record: TaskRecord = {
    id: identifier(r['id'], `${at}.id`),
    lastEventAt: epoch(r['lastEventAt'], `${at}.lastEventAt`),
    receivedTimes: array(r['receivedTimes'], `${at}.receivedTimes`).map((time, index) =>
      epoch(time, `${at}.receivedTimes[${index}]`),
    ),
    attempts: array(r['attempts'], `${at}.attempts`).map((attempt, index) =>
      attemptOf(attempt, `${at}.attempts[${index}]`),
    ),
  };
  const out = record as unknown as Json;
  for (const key of ['rootId', 'parentId'] as const) copy(out, r, key, at, identifier);
  // Celery's default exchange is the empty string: these may be empty.
  for (const key of [
    'name',
    'queue',
    'exchange',
    'routingKey',
    'eta',
    'expires',
    'workerHostname',
    'args',
    'kwargs',
    'result',
  ] as const) {
    copy(out, r, key, at, text);
  }
  copy(out, r, 'chordCallbackId', at, identifier);
  copy(out, r, 'groupId', at, identifier);
  for (const key of ['workerHostnameAt', 'messageAt', 'sentAt', 'receivedAt'] as const) {
    copy(out, r, key, at, epoch);
  }
  for (const key of ['retries', 'groupIndex', 'groupSize'] as const) copy(out, r, key, at, count);
  // A continuation of a task exported as lost or cancelled (assemble/InterruptedTasks.ts).
  for (const key of ['delivery', 'attemptOffset'] as const) copy(out, r, key, at, count);
  copy(out, r, 'customEvents', at, customEventsOf);
  copy(out, r, 'final', at, finalOf);
  copy(out, r, 'upstream', at, upstreamOf);
  return record;
}

const TASK_KEYS = [
  'id',
  'name',
  'rootId',
  'parentId',
  'queue',
  'exchange',
  'routingKey',
  'eta',
  'expires',
  'retries',
  'workerHostname',
  'workerHostnameAt',
  'messageAt',
  'args',
  'kwargs',
  'result',
  'sentAt',
  'receivedAt',
  'receivedTimes',
  'lastEventAt',
  'attempts',
  'final',
  'upstream',
  'groupId',
  'groupIndex',
  'groupSize',
  'chordCallbackId',
  'delivery',
  'attemptOffset',
  'customEvents',
] as const satisfies readonly (keyof TaskRecord)[];

/** Custom task events kept for span events (assemble/customSpanEvents.ts). */
function customEventsOf(value: unknown, at: string): CustomSpanEvent[] {
  return array(value, at).map((item, index) => {
    const where = `${at}[${index}]`;
    const e = object(item, where);
    known(e, ['type', 'at', 'fields', 'droppedFields'], where);
    const fields: Record<string, string | number | boolean> = {};
    for (const [key, field] of Object.entries(object(e['fields'], `${where}.fields`))) {
      if (typeof field !== 'string' && typeof field !== 'boolean' && typeof field !== 'number') {
        throw new StateSchemaError(`${where}.fields has a value of the wrong type`);
      }
      fields[key] = field;
    }
    return {
      type: text(e['type'], `${where}.type`),
      at: epoch(e['at'], `${where}.at`),
      fields,
      droppedFields: count(e['droppedFields'], `${where}.droppedFields`),
    };
  });
}

const ATTEMPT_KEYS = [
  'startedAt',
  'endedAt',
  'hostname',
  'outcome',
  'exception',
  'traceback',
  'runtime',
] as const satisfies readonly (keyof Attempt)[];

function attemptOf(value: unknown, at: string): Attempt {
  const a = object(value, at);
  known(a, ATTEMPT_KEYS, at);
  const attempt: Json = {};
  copy(attempt, a, 'startedAt', at, epoch);
  copy(attempt, a, 'endedAt', at, epoch);
  copy(attempt, a, 'hostname', at, text);
  copy(attempt, a, 'outcome', at, (v, where) => oneOf(v, ATTEMPT_OUTCOMES, where));
  copy(attempt, a, 'exception', at, text);
  copy(attempt, a, 'traceback', at, text);
  copy(attempt, a, 'runtime', at, duration);
  return attempt;
}

const FINAL_KEYS = [
  'state',
  'at',
  'exception',
  'traceback',
  'terminated',
  'signum',
  'expired',
] as const satisfies readonly (keyof TaskFinal)[];

function finalOf(value: unknown, at: string): TaskFinal {
  const f = object(value, at);
  known(f, FINAL_KEYS, at);
  const final: Json = {
    state: oneOf(f['state'], FINAL_STATES, `${at}.state`),
    at: epoch(f['at'], `${at}.at`),
  };
  copy(final, f, 'exception', at, text);
  copy(final, f, 'traceback', at, text);
  copy(final, f, 'terminated', at, flag);
  copy(final, f, 'signum', at, text);
  copy(final, f, 'expired', at, flag);
  return final as unknown as TaskFinal;
}

function upstreamOf(value: unknown, at: string): UpstreamContext {
  const u = object(value, at);
  known(u, ['traceId', 'spanId', 'traceFlags', 'traceState'], at);
  const traceId = u['traceId'];
  const spanId = u['spanId'];
  const traceFlags = u['traceFlags'];
  if (typeof traceId !== 'string' || !/^[0-9a-f]{32}$/.test(traceId) || /^0+$/.test(traceId)) {
    throw new StateSchemaError(`${at}.traceId is not 32 lowercase hex digits`);
  }
  if (typeof spanId !== 'string' || !/^[0-9a-f]{16}$/.test(spanId) || /^0+$/.test(spanId)) {
    throw new StateSchemaError(`${at}.spanId is not 16 lowercase hex digits`);
  }
  if (
    typeof traceFlags !== 'number' ||
    !Number.isInteger(traceFlags) ||
    traceFlags < 0 ||
    traceFlags > 255
  ) {
    throw new StateSchemaError(`${at}.traceFlags is not an integer from 0 to 255`);
  }
  const upstream: Json = { traceId, spanId, traceFlags };
  copy(upstream, u, 'traceState', at, text);
  return upstream as unknown as UpstreamContext;
}

/** Sets out[key] from source[key] checked, when present (the bridge writes no nulls). */
function copy<T>(
  out: Json,
  source: Json,
  key: string,
  at: string,
  check: (value: unknown, where: string) => T,
): void {
  const value = source[key];
  if (value !== undefined) out[key] = check(value, `${at}.${key}`);
}

function object(value: unknown, at: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new StateSchemaError(`${at} is not a JSON object`);
  }
  return value as Json;
}

/** Unknown keys are refused, and not named: a key is content too. */
function known(value: Json, keys: readonly string[], at: string): void {
  for (const key of Object.keys(value)) {
    if (!keys.includes(key))
      throw new StateSchemaError(`${at} has a field the format does not have`);
  }
}

function array(value: unknown, at: string): unknown[] {
  if (!Array.isArray(value)) throw new StateSchemaError(`${at} is not a JSON array`);
  return value;
}

function identifier(value: unknown, at: string): string {
  if (typeof value !== 'string' || value === '' || value.length > MAX_ID_LENGTH) {
    throw new StateSchemaError(`${at} is not a string of 1 to ${MAX_ID_LENGTH} characters`);
  }
  return value;
}

function text(value: unknown, at: string): string {
  if (typeof value !== 'string') throw new StateSchemaError(`${at} is not a string`);
  return value;
}

function epoch(value: unknown, at: string): number {
  if (typeof value !== 'number' || !(value >= 0 && value <= MAX_EPOCH_SECONDS)) {
    throw new StateSchemaError(`${at} is not a time in epoch seconds (0 to ${MAX_EPOCH_SECONDS})`);
  }
  return value;
}

function duration(value: unknown, at: string): number {
  if (typeof value !== 'number' || !(value >= 0 && value <= MAX_EPOCH_SECONDS)) {
    throw new StateSchemaError(`${at} is not a duration in seconds`);
  }
  return value;
}

function count(value: unknown, at: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new StateSchemaError(`${at} is not a whole number`);
  }
  return value;
}

function flag(value: unknown, at: string): boolean {
  if (typeof value !== 'boolean') throw new StateSchemaError(`${at} is not true or false`);
  return value;
}

function oneOf<T extends string>(value: unknown, values: Record<T, true>, at: string): T {
  if (typeof value !== 'string' || !Object.hasOwn(values, value)) {
    throw new StateSchemaError(`${at} is not one of ${Object.keys(values).join(', ')}`);
  }
  return value as T;
}
