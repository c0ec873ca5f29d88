import type { BeatSchedule } from '../decode/BeatEvent.js';

/** Years searched ahead for a crontab match (a 29 February on a given weekday recurs within 28). */
const CRONTAB_SEARCH_DAYS = 366 * 29;
/** Time zones whose formatter is kept; names come from events, so the cache is bounded. */
const MAX_CACHED_ZONES = 64;

const formatters = new Map<string, Intl.DateTimeFormat>();

interface Wall {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
}

/**
 * When a schedule entry that last ran at `lastRunAt` (Unix seconds) should run next, in Unix
 * seconds, as Celery's scheduler computes it; undefined when the bridge cannot tell (solar and
 * custom schedules, `relative` intervals, a time zone the runtime does not know, a crontab that
 * never matches). Then only beat's own estimates (`next_run_at` of the companion's events) are
 * used.
 *
 * - interval (`celery.schedules.schedule`): `last_run_at + run_every`
 *   (`schedule.remaining_estimate` = `remaining(last_run_at, run_every, now)`).
 * - crontab: the first minute strictly after `lastRunAt`'s minute whose month, day of month, day
 *   of week (0 = Sunday), hour and minute are all in the entry's expanded fields, read on the
 *   wall clock of the crontab's zone (`crontab.remaining_delta`, which ANDs the day fields and
 *   works in `crontab.tz`). Celery's estimate agrees whenever `lastRunAt` is on the current day,
 *   which is how beat calls it (the entry's `last_run_at` is the previous run); for an older
 *   `lastRunAt` Celery may answer a later time that is still in the past, and both mean "due".
 *   A wall time that does not exist (the hour skipped when daylight saving starts) is taken with
 *   the offset before the change, an ambiguous one (the hour repeated when it ends) at its first
 *   occurrence.
 */
export function nextRunAfter(schedule: BeatSchedule, lastRunAt: number): number | undefined {
  switch (schedule.type) {
    case 'interval':
      return schedule.relative ? undefined : lastRunAt + schedule.seconds;
    case 'crontab':
      return nextCrontabMatch(schedule, lastRunAt);
    default:
      return undefined;
  }
}

function nextCrontabMatch(
  schedule: Extract<BeatSchedule, { type: 'crontab' }>,
  after: number,
): number | undefined {
  const zone = schedule.tz ?? 'UTC';
  const format = formatter(zone);
  if (format === undefined) return undefined;
  const minutes = schedule.minute;
  const hours = schedule.hour;
  const months = new Set(schedule.monthOfYear);
  const daysOfMonth = new Set(schedule.dayOfMonth);
  const daysOfWeek = new Set(schedule.dayOfWeek);
  const start = wallClock(format, after);
  const startDay = Date.UTC(start.year, start.month - 1, start.day);
  for (let offset = 0; offset < CRONTAB_SEARCH_DAYS; offset++) {
    const date = new Date(startDay + offset * 86_400_000);
    if (
      !months.has(date.getUTCMonth() + 1) ||
      !daysOfMonth.has(date.getUTCDate()) ||
      !daysOfWeek.has(date.getUTCDay())
    )
      continue;
    for (const hour of hours) {
      if (offset === 0 && hour < start.hour) continue;
      for (const minute of minutes) {
        if (offset === 0 && hour === start.hour && minute <= start.minute) continue;
        const wall: Wall = {
          year: date.getUTCFullYear(),
          month: date.getUTCMonth() + 1,
          day: date.getUTCDate(),
          hour,
          minute,
        };
        const instant = instantOf(format, wall);
        // Around a daylight-saving change a later wall time can map to an earlier instant.
        if (instant > after) return instant;
      }
    }
  }
  return undefined;
}

function formatter(zone: string): Intl.DateTimeFormat | undefined {
  let format = formatters.get(zone);
  if (format !== undefined) return format;
  try {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
  } catch {
    return undefined; // RangeError: a zone this runtime's ICU does not know
  }
  if (formatters.size < MAX_CACHED_ZONES) formatters.set(zone, format);
  return format;
}

function wallClock(format: Intl.DateTimeFormat, seconds: number): Wall & { second: number } {
  const parts: Record<string, number> = {};
  for (const part of format.formatToParts(new Date(Math.floor(seconds) * 1000))) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  return {
    year: parts['year'] as number,
    month: parts['month'] as number,
    day: parts['day'] as number,
    hour: (parts['hour'] as number) % 24,
    minute: parts['minute'] as number,
    second: parts['second'] as number,
  };
}

/** The zone's offset from UTC at an instant, in seconds (wall clock read as UTC minus instant). */
function offsetAt(format: Intl.DateTimeFormat, seconds: number): number {
  const wall = wallClock(format, seconds);
  const asUtc =
    Date.UTC(wall.year, wall.month - 1, wall.day, wall.hour, wall.minute, wall.second) / 1000;
  return asUtc - Math.floor(seconds);
}

function sameWall(a: Wall, b: Wall): boolean {
  return (
    a.year === b.year &&
    a.month === b.month &&
    a.day === b.day &&
    a.hour === b.hour &&
    a.minute === b.minute
  );
}

/** The instant (Unix seconds) a wall-clock minute of the zone names (see nextRunAfter on DST). */
function instantOf(format: Intl.DateTimeFormat, wall: Wall): number {
  const asUtc = Date.UTC(wall.year, wall.month - 1, wall.day, wall.hour, wall.minute) / 1000;
  const before = asUtc - offsetAt(format, asUtc - 43_200);
  const after = asUtc - offsetAt(format, asUtc + 43_200);
  const candidates = [before, after].filter((t) => sameWall(wallClock(format, t), wall));
  if (candidates.length === 0) return before;
  return Math.min(...candidates);
}
