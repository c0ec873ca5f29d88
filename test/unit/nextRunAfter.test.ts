import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { nextRunAfter } from '../../src/beat/nextRunAfter.js';
import type { BeatSchedule } from '../../src/decode/BeatEvent.js';
import { decodeBeatEvent } from '../../src/decode/decodeBeatEvent.js';

/**
 * Expected values come from Celery 5.2.6 itself: test/celery/beatScheduleFixture.py calls
 * celery.schedules.crontab.remaining_estimate / is_due and celery.schedules.schedule.remaining_estimate
 * / is_due with a fixed clock, in each app time zone, and the schedule is serialised by the beat
 * companion's own schedule_fields (what the bridge receives).
 */
interface FixtureCase {
  readonly function: string;
  readonly zone: string;
  readonly spec: Record<string, unknown>;
  readonly schedule: Record<string, unknown>;
  readonly last_run_at: number;
  readonly last_run_local?: string;
  readonly now: number;
  readonly remaining: number;
  readonly next_run_at: number;
  readonly next_run_local?: string;
  readonly is_due: boolean;
}

const fixture = JSON.parse(
  readFileSync(new URL('../fixtures/celery-beat-schedules-5.2.6.json', import.meta.url), 'utf8'),
) as { celery: string; cases: FixtureCase[] };

/** The schedule as the bridge decodes it from a beat-schedule event. */
function decodedSchedule(wire: Record<string, unknown>): BeatSchedule {
  const event = decodeBeatEvent(
    'beat-schedule',
    0,
    { app: 'fixture', entries: [{ name: 'e', task: 't', schedule: wire }] },
    (rejection) => {
      throw new Error(rejection.detail);
    },
  );
  if (event?.type !== 'beat-schedule' || event.entries[0] === undefined)
    throw new Error('not decoded');
  return event.entries[0].schedule;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** UTC offset in seconds of an ISO time written with its offset (`...+05:30`). */
function isoOffset(iso: string | undefined): number | undefined {
  const match = /([+-])(\d\d):(\d\d)$/.exec(iso ?? '');
  if (match === null) return undefined;
  return (match[1] === '-' ? -1 : 1) * (Number(match[2]) * 3600 + Number(match[3]) * 60);
}

/**
 * Where Celery 5.2.6's crontab arithmetic is off and the bridge is not, and why:
 * - `dst_offset`: the next run is across a daylight-saving change from the previous one and
 *   Celery (pytz) adds its delta to the previous run with the previous run's UTC offset, so it
 *   answers the right wall time with the wrong offset (`remaining()` only corrects this when
 *   `now`, not the next run, is past the change).
 * - `skipped_month`: a day-of-month crontab whose previous run was on the last day of a month at a
 *   time that does not match (`crontab._delta_to_next` steps to the next month from there): Celery
 *   answers the month after.
 * While beat runs, the bridge follows beat's own estimate (`next_run_at` of the companion), so
 * these only matter for the runs it predicts while beat is gone.
 */
function knownCeleryDeviation(c: FixtureCase, bridge: number): string | undefined {
  const last = isoOffset(c.last_run_local);
  const next = isoOffset(c.next_run_local);
  if (last !== undefined && next !== undefined && last !== next) {
    if (Math.abs(c.next_run_at - bridge - (next - last)) < 0.001) return 'dst_offset';
  }
  const lastDay = new Date((c.last_run_at + (last ?? 0)) * 1000);
  const lastOfMonth = new Date(lastDay.getTime() + 86_400_000).getUTCDate() === 1;
  if (c.spec['day_of_month'] !== undefined && lastOfMonth && c.next_run_at > bridge + 27 * 86_400)
    return 'skipped_month';
  return undefined;
}

function label(c: FixtureCase): string {
  return `${c.function} ${JSON.stringify(c.spec)} in ${c.zone}, last run ${c.last_run_local ?? c.last_run_at}`;
}

describe('nextRunAfter against Celery 5.2.6', () => {
  it('has the fixture of the Celery version the project tests with', () => {
    expect(fixture.celery).toBe('5.2.6');
    expect(fixture.cases.length).toBeGreaterThan(1000);
  });

  it('gives the instant Celery runs each crontab and interval entry next', () => {
    const wrong: string[] = [];
    const known: Record<string, number> = {};
    for (const c of fixture.cases) {
      const next = nextRunAfter(decodedSchedule(c.schedule), c.last_run_at);
      if (next !== undefined && Math.abs(next - c.next_run_at) <= 0.001) continue;
      const deviation = next === undefined ? undefined : knownCeleryDeviation(c, next);
      if (deviation !== undefined) known[deviation] = (known[deviation] ?? 0) + 1;
      else wrong.push(`${label(c)}: Celery ${c.next_run_local ?? c.next_run_at}, bridge ${next}`);
    }
    expect(wrong).toEqual([]);
    // The two known Celery 5.2.6 deviations (docs/periodic-tasks.md), and only a few of them.
    expect(known).toEqual({ dst_offset: 44, skipped_month: 2 });
  });

  it('agrees with is_due: due exactly when the next run is not after now', () => {
    for (const c of fixture.cases) {
      const next = nextRunAfter(decodedSchedule(c.schedule), c.last_run_at) as number;
      expect(next <= c.now, label(c)).toBe(c.is_due);
    }
  });

  it('crosses minute, hour, day, month and year boundaries in UTC', () => {
    const every = (fields: Partial<Record<string, number[]>>): BeatSchedule => ({
      type: 'crontab',
      cron: '',
      tz: 'UTC',
      minute: fields['minute'] ?? range(0, 59),
      hour: fields['hour'] ?? range(0, 23),
      dayOfWeek: fields['dayOfWeek'] ?? range(0, 6),
      dayOfMonth: fields['dayOfMonth'] ?? range(1, 31),
      monthOfYear: fields['monthOfYear'] ?? range(1, 12),
    });
    const at = (iso: string): number => Date.parse(iso) / 1000;
    expect(nextRunAfter(every({}), at('2026-12-31T23:59:59Z'))).toBe(at('2027-01-01T00:00:00Z'));
    expect(nextRunAfter(every({ minute: [0] }), at('2026-03-10T10:00:00Z'))).toBe(
      at('2026-03-10T11:00:00Z'),
    );
    // 29 February on a Monday: the next one is in 2044 (searched, not looped forever).
    expect(
      nextRunAfter(
        every({ minute: [0], hour: [0], dayOfMonth: [29], monthOfYear: [2], dayOfWeek: [1] }),
        at('2026-01-01T00:00:00Z'),
      ),
    ).toBe(at('2044-02-29T00:00:00Z'));
    // 31 February never comes.
    expect(
      nextRunAfter(every({ dayOfMonth: [31], monthOfYear: [2] }), at('2026-01-01T00:00:00Z')),
    ).toBeUndefined();
  });

  it('takes a missing wall time with the offset before the change, a repeated one at its first occurrence', () => {
    const daily = (hour: number, minute: number): BeatSchedule => ({
      type: 'crontab',
      cron: '',
      tz: 'Europe/Berlin',
      minute: [minute],
      hour: [hour],
      dayOfWeek: range(0, 6),
      dayOfMonth: range(1, 31),
      monthOfYear: range(1, 12),
    });
    const at = (iso: string): number => Date.parse(iso) / 1000;
    // 2026-03-29 02:30 does not exist in Berlin (02:00 CET -> 03:00 CEST).
    expect(nextRunAfter(daily(2, 30), at('2026-03-28T12:00:00Z'))).toBe(at('2026-03-29T01:30:00Z'));
    // 2026-10-25 02:30 happens twice (CEST, then CET): the first.
    expect(nextRunAfter(daily(2, 30), at('2026-10-24T12:00:00Z'))).toBe(at('2026-10-25T00:30:00Z'));
  });

  it('cannot tell solar, custom, relative schedules or unknown zones', () => {
    expect(nextRunAfter({ type: 'solar', event: 'sunset', lat: 0, lon: 0 }, 0)).toBeUndefined();
    expect(nextRunAfter({ type: 'other', repr: '<x>' }, 0)).toBeUndefined();
    expect(nextRunAfter({ type: 'interval', seconds: 5, relative: true }, 0)).toBeUndefined();
    expect(
      nextRunAfter(
        {
          type: 'crontab',
          cron: '',
          tz: 'Mars/Olympus_Mons',
          minute: [0],
          hour: [0],
          dayOfWeek: [0],
          dayOfMonth: [1],
          monthOfYear: [1],
        },
        0,
      ),
    ).toBeUndefined();
  });
});
