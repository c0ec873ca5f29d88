import { describe, expect, it } from 'vitest';
import type { CeleryEvent } from '../../src/decode/CeleryEvent.js';
import type { DecodeRejection } from '../../src/shared/DecodeRejection.js';
import { decodeEventBody } from '../../src/decode/decodeEventBody.js';

function decode(body: unknown): { events: CeleryEvent[]; rejected: DecodeRejection[] } {
  const events: CeleryEvent[] = [];
  const rejected: DecodeRejection[] = [];
  decodeEventBody(
    {
      routingKey: 'beat.schedule',
      contentType: 'application/json',
      body: Buffer.from(JSON.stringify(body)),
    },
    { maxMessageBytes: 1 << 24 },
    { event: (e) => events.push(e), reject: (r) => rejected.push(r) },
  );
  return { events, rejected };
}

const CRON = {
  type: 'crontab',
  cron: '0 2 * * *',
  tz: 'Europe/Berlin',
  minute: [0],
  hour: [2],
  day_of_week: [0, 1, 2, 3, 4, 5, 6],
  day_of_month: Array.from({ length: 31 }, (_, i) => i + 1),
  month_of_year: Array.from({ length: 12 }, (_, i) => i + 1),
};

describe('decoding the beat companion events', () => {
  it('keeps well-formed entries and leaves out, and counts, the others', () => {
    const { events, rejected } = decode({
      type: 'beat-schedule',
      timestamp: 1,
      app: 'proj',
      entries: [
        { name: 'nightly', task: 'proj.report', schedule: CRON, next_run_at: 5 },
        { name: 'poll', task: 'proj.poll', schedule: { type: 'interval', seconds: 10 } },
        { name: 'bad-minute', task: 't', schedule: { ...CRON, minute: [60] } },
        { name: 'bad-interval', task: 't', schedule: { type: 'interval', seconds: -1 } },
        { name: 'x'.repeat(300), task: 't', schedule: { type: 'interval', seconds: 1 } },
        { name: 'poll', task: 'again', schedule: { type: 'interval', seconds: 1 } },
        'not an entry',
      ],
    });
    expect(events).toHaveLength(1);
    const schedule = events[0];
    expect(schedule?.type === 'beat-schedule' && schedule.entries.map((e) => e.name)).toEqual([
      'nightly',
      'poll',
    ]);
    expect(rejected).toEqual([
      {
        reason: 'invalid_field',
        detail:
          '5 entries of a beat-schedule event are not well formed (or repeat a name) and are left out',
      },
    ]);
  });

  it('rejects events without an app, an entry or a heartbeat interval', () => {
    expect(decode({ type: 'beat-heartbeat', timestamp: 1, freq: 2 }).rejected[0]?.detail).toBe(
      'a beat-heartbeat event has no valid "app"',
    );
    expect(decode({ type: 'beat-run', timestamp: 1, app: 'p' }).rejected[0]?.detail).toBe(
      'a beat-run event has no valid "entry"',
    );
    expect(decode({ type: 'beat-heartbeat', timestamp: 1, app: 'p', freq: 0 }).events).toEqual([]);
    expect(decode({ type: 'beat-schedule', timestamp: 1, app: 'p', entries: {} }).events).toEqual(
      [],
    );
  });

  it('bounds the heartbeat interval and drops ill-typed optional fields', () => {
    const { events } = decode({
      type: 'beat-heartbeat',
      timestamp: 1,
      app: 'p',
      freq: 1e12,
    });
    expect(events).toEqual([
      { type: 'beat-heartbeat', timestamp: 1, hostname: undefined, app: 'p', freq: 86_400 },
    ]);
    const run = decode({
      type: 'beat-run',
      timestamp: 1,
      app: 'p',
      entry: 'e',
      task_id: 42,
      scheduled_at: 'soon',
      next_run_at: -5,
    }).events[0];
    expect(run).toMatchObject({ entry: 'e', taskId: undefined, scheduledAt: undefined });
    expect(run?.type === 'beat-run' && run.nextRunAt).toBeUndefined();
  });

  it('caps a schedule at 10,000 entries and says it is truncated', () => {
    const entries = Array.from({ length: 10_001 }, (_, i) => ({
      name: `e${i}`,
      task: 't',
      schedule: { type: 'interval', seconds: 60 },
    }));
    const { events } = decode({ type: 'beat-schedule', timestamp: 1, app: 'p', entries });
    const schedule = events[0];
    expect(schedule?.type === 'beat-schedule' && schedule.entries.length).toBe(10_000);
    expect(schedule?.type === 'beat-schedule' && schedule.truncated).toBe(true);
  });
});
