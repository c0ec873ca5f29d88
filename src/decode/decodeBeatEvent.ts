import {
  type BeatEntry,
  type BeatEvent,
  type BeatEventType,
  type BeatSchedule,
} from './BeatEvent.js';
import type { DecodeRejection } from '../shared/DecodeRejection.js';
import { MAX_NAME_LENGTH } from './fieldBounds.js';

/** Names (app, entry, task, ids, zone) longer than this are not names we keep. */
/** Entries of one `beat-schedule` event used at most (the companion sends at most as many). */
export const MAX_SCHEDULE_ENTRIES = 10_000;
/** A heartbeat interval outside this range (seconds) is taken as this bound. */
const MIN_FREQ_S = 0.1;
const MAX_FREQ_S = 86_400;

/** Valid ranges of Celery's crontab fields (celery/schedules.py `crontab`). */
const CRONTAB_FIELDS = [
  ['minute', 'minute', 0, 59],
  ['hour', 'hour', 0, 23],
  ['dayOfWeek', 'day_of_week', 0, 6],
  ['dayOfMonth', 'day_of_month', 1, 31],
  ['monthOfYear', 'month_of_year', 1, 12],
] as const;

/**
 * Decodes one beat companion event (see BeatEvent.ts and the companion's beat.py for the wire
 * format). Everything an event carries is bounded here: names by length, schedules by count and
 * value range. An entry that is not well formed is left out of its schedule and counted; an event
 * without what it needs is rejected whole.
 */
export function decodeBeatEvent(
  type: BeatEventType,
  timestamp: number,
  raw: Record<string, unknown>,
  reject: (rejection: DecodeRejection) => void,
): BeatEvent | undefined {
  const app = name(raw['app']);
  if (app === undefined) {
    reject({ reason: 'invalid_field', detail: `a ${type} event has no valid "app"` });
    return undefined;
  }
  const hostname = name(raw['hostname']);
  switch (type) {
    case 'beat-heartbeat': {
      const freq = num(raw['freq']);
      if (freq === undefined || freq <= 0) {
        reject({ reason: 'invalid_field', detail: 'a beat-heartbeat event has no valid "freq"' });
        return undefined;
      }
      return {
        type,
        timestamp,
        hostname,
        app,
        freq: Math.min(MAX_FREQ_S, Math.max(MIN_FREQ_S, freq)),
      };
    }
    case 'beat-run': {
      const entry = name(raw['entry']);
      if (entry === undefined) {
        reject({ reason: 'invalid_field', detail: 'a beat-run event has no valid "entry"' });
        return undefined;
      }
      return {
        type,
        timestamp,
        hostname,
        app,
        entry,
        task: name(raw['task']),
        taskId: name(raw['task_id']),
        scheduledAt: time(raw['scheduled_at']),
        nextRunAt: time(raw['next_run_at']),
        error: name(raw['error']),
      };
    }
    case 'beat-schedule': {
      const list = raw['entries'];
      if (!Array.isArray(list)) {
        reject({ reason: 'invalid_field', detail: 'a beat-schedule event has no "entries" list' });
        return undefined;
      }
      const entries: BeatEntry[] = [];
      const seen = new Set<string>();
      let invalid = 0;
      for (const item of (list as unknown[]).slice(0, MAX_SCHEDULE_ENTRIES)) {
        const decoded = beatEntry(item);
        if (decoded === undefined || seen.has(decoded.name)) invalid++;
        else {
          seen.add(decoded.name);
          entries.push(decoded);
        }
      }
      if (invalid > 0) {
        reject({
          reason: 'invalid_field',
          detail: `${invalid} entries of a beat-schedule event are not well formed (or repeat a name) and are left out`,
        });
      }
      return {
        type,
        timestamp,
        hostname,
        app,
        entries,
        truncated: raw['truncated'] === true || list.length > MAX_SCHEDULE_ENTRIES,
      };
    }
  }
}

function beatEntry(value: unknown): BeatEntry | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const raw = value as Record<string, unknown>;
  const entryName = name(raw['name']);
  const task = name(raw['task']);
  const schedule = beatSchedule(raw['schedule']);
  if (entryName === undefined || task === undefined || schedule === undefined) return undefined;
  return {
    name: entryName,
    task,
    schedule,
    lastRunAt: time(raw['last_run_at']),
    nextRunAt: time(raw['next_run_at']),
    queue: name(raw['queue']),
  };
}

function beatSchedule(value: unknown): BeatSchedule | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const raw = value as Record<string, unknown>;
  switch (raw['type']) {
    case 'crontab': {
      const fields: Record<string, number[]> = {};
      for (const [key, wire, min, max] of CRONTAB_FIELDS) {
        const values = intSet(raw[wire], min, max);
        if (values === undefined) return undefined;
        fields[key] = values;
      }
      return {
        type: 'crontab',
        cron: name(raw['cron']) ?? '',
        tz: name(raw['tz']),
        minute: fields['minute'] as number[],
        hour: fields['hour'] as number[],
        dayOfWeek: fields['dayOfWeek'] as number[],
        dayOfMonth: fields['dayOfMonth'] as number[],
        monthOfYear: fields['monthOfYear'] as number[],
      };
    }
    case 'interval': {
      const seconds = num(raw['seconds']);
      if (seconds === undefined || seconds <= 0) return undefined;
      return { type: 'interval', seconds, relative: raw['relative'] === true };
    }
    case 'solar': {
      const lat = num(raw['lat']);
      const lon = num(raw['lon']);
      const event = name(raw['event']);
      if (lat === undefined || lon === undefined || event === undefined) return undefined;
      return { type: 'solar', event, lat, lon };
    }
    default:
      return { type: 'other', repr: name(raw['repr']) ?? '' };
  }
}

/** A sorted set of whole numbers in [min, max], not empty; undefined otherwise. */
function intSet(value: unknown, min: number, max: number): number[] | undefined {
  if (!Array.isArray(value) || value.length === 0 || value.length > max - min + 1) return undefined;
  const out = new Set<number>();
  for (const item of value as unknown[]) {
    if (typeof item !== 'number' || !Number.isInteger(item) || item < min || item > max)
      return undefined;
    out.add(item);
  }
  return [...out].sort((a, b) => a - b);
}

function name(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_NAME_LENGTH
    ? value
    : undefined;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** Unix seconds: finite, not negative. */
function time(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}
