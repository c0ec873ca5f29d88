import { hrTime } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { DataPoint, HistogramMetricData, MetricData } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { spanIdFor, traceIdFor } from '../../src/shared/deterministicIds.js';
import { BeatTracker, type BeatTrackerOptions } from '../../src/beat/BeatTracker.js';
import type { BeatRun } from '../../src/beat/BeatRun.js';
import { beatMetricData } from '../../src/metrics/beatMetricData.js';
import { beatRunSpan } from '../../src/beat/beatRunSpan.js';
import type { BeatEvent, BeatSchedule } from '../../src/decode/BeatEvent.js';
import { type CeleryEvent, isTaskEvent } from '../../src/decode/CeleryEvent.js';
import { isBeatEvent } from '../../src/decode/BeatEvent.js';
import type { DecodeRejection } from '../../src/shared/DecodeRejection.js';
import { decodeEventBody } from '../../src/decode/decodeEventBody.js';
import { Logger } from '../../src/log/Logger.js';
import { TaskAssembler } from '../../src/assemble/TaskAssembler.js';
import { BridgeStats } from '../../src/telemetry/BridgeStats.js';
import { amqpBeatFixtureMessages } from '../support/fixtures.js';
import { ASSEMBLER_OPTIONS } from '../support/pipeline.js';

const OPTIONS: BeatTrackerOptions = {
  toleranceMs: 8000,
  lateAfterMs: 3000,
  runTimeoutMs: 60_000,
  maxEntries: 100,
};

function quietLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = new Logger('debug', (line: string) => lines.push(line));
  return { logger, lines };
}

/** The tracker wired as Bridge wires it: the real task assembler behind `peekTask`. */
function setup(options: Partial<BeatTrackerOptions> = {}) {
  const runs: BeatRun[] = [];
  const { logger, lines } = quietLogger();
  const assembler = new TaskAssembler(
    ASSEMBLER_OPTIONS,
    () => undefined,
    new BridgeStats(new Logger('error', () => undefined)),
  );
  const tracker = new BeatTracker(
    { ...OPTIONS, ...options },
    (run) => runs.push(run),
    logger,
    (taskId) => assembler.peek(taskId),
  );
  assemblers.set(tracker, assembler);
  return { tracker, runs, lines };
}

const assemblers = new WeakMap<BeatTracker, TaskAssembler>();

function feed(tracker: BeatTracker, event: BeatEvent | CeleryEvent, now: number): void {
  if (isBeatEvent(event)) {
    if (event.type === 'beat-schedule') tracker.onSchedule(event, now);
    else if (event.type === 'beat-heartbeat') tracker.onHeartbeat(event, now);
    else tracker.onRun(event, now);
  } else if (isTaskEvent(event)) {
    tracker.onTaskEvent(event);
    assemblers.get(tracker)?.handle(event);
  }
}

function fixtureEvents(): CeleryEvent[] {
  const events: CeleryEvent[] = [];
  const rejected: DecodeRejection[] = [];
  for (const message of amqpBeatFixtureMessages()) {
    decodeEventBody(
      message,
      { maxMessageBytes: 1 << 24 },
      { event: (e) => events.push(e), reject: (r) => rejected.push(r) },
    );
  }
  expect(rejected).toEqual([]);
  return events;
}

function metric(data: MetricData[], name: string): MetricData {
  const found = data.find((m) => m.descriptor.name === name);
  if (found === undefined) throw new Error(`no ${name}`);
  return found;
}

function points(data: MetricData[], name: string): DataPoint<number>[] {
  return metric(data, name).dataPoints as DataPoint<number>[];
}

function runsOf(data: MetricData[], entry: string, outcome: string): number | undefined {
  return points(data, 'celery.beat.runs').find(
    (p) =>
      p.attributes['celery.beat.entry'] === entry &&
      p.attributes['celery.beat.outcome'] === outcome,
  )?.value;
}

const every = (seconds: number): BeatSchedule => ({ type: 'interval', seconds, relative: false });

describe('BeatTracker on a captured celery beat + worker stream', () => {
  const events = fixtureEvents();
  const last = Math.max(...events.map((e) => e.timestamp));
  const lastHeartbeat = Math.max(
    ...events.filter((e) => e.type === 'beat-heartbeat').map((e) => e.timestamp),
  );

  it('decodes the companion events of the real beat', () => {
    const schedule = events.find((e) => e.type === 'beat-schedule');
    expect(schedule).toMatchObject({ type: 'beat-schedule', app: 'fixture', truncated: false });
    const names = schedule?.type === 'beat-schedule' ? schedule.entries.map((e) => e.name) : [];
    expect(names).toEqual(expect.arrayContaining(['every-2s', 'failing', 'nightly']));
    const nightly =
      schedule?.type === 'beat-schedule'
        ? schedule.entries.find((e) => e.name === 'nightly')
        : undefined;
    expect(nightly?.schedule).toMatchObject({
      type: 'crontab',
      cron: '30 2 * * *',
      tz: 'Europe/Berlin',
      minute: [30],
      hour: [2],
    });
    expect(events.filter((e) => e.type === 'beat-run')).toHaveLength(5);
  });

  it('counts on-time and failed runs, even a run whose task events came before beat-run', () => {
    const { tracker, runs } = setup();
    for (const event of events) feed(tracker, event, event.timestamp + 0.05);
    const data = beatMetricData(tracker, last, hrTime());
    expect(runsOf(data, 'every-2s', 'on_time')).toBe(3);
    expect(runsOf(data, 'failing', 'failed')).toBe(2);
    expect(runsOf(data, 'every-2s', 'missed')).toBe(0);
    expect(runs).toHaveLength(5);
    expect(tracker.pendingRuns).toBe(0);
    // The nightly crontab: beat's own estimate, 02:30 in Berlin.
    const nightly = points(data, 'celery.beat.next_run').find(
      (p) => p.attributes['celery.beat.entry'] === 'nightly',
    );
    expect(new Date(Math.round(nightly?.value ?? 0) * 1000).toISOString()).toMatch(
      /T01:30:00\.000Z$/,
    );
    expect(points(data, 'celery.beat.up')).toEqual([
      expect.objectContaining({ attributes: { 'celery.beat.app': 'fixture' }, value: 1 }),
    ]);
    const lateness = metric(data, 'celery.beat.lateness') as HistogramMetricData;
    expect(
      lateness.dataPoints.find((p) => p.attributes['celery.beat.entry'] === 'every-2s')?.value
        .count,
    ).toBe(3);
    const since = points(data, 'celery.beat.since_last_success').find(
      (p) => p.attributes['celery.beat.entry'] === 'every-2s',
    );
    expect(since?.value).toBeGreaterThanOrEqual(0);
    expect(since?.value).toBeLessThan(5);
  });

  it('links each run to its task span and to the run before it', () => {
    const { tracker, runs } = setup();
    for (const event of events) feed(tracker, event, event.timestamp + 0.05);
    const resource = resourceFromAttributes({ 'service.name': 'celery' });
    const ok = runs.filter((r) => r.entry === 'every-2s');
    const spans = ok.map((r) =>
      beatRunSpan(r, { resource, scope: { name: 'x' }, maxAttributeLength: 1000 }),
    );
    for (const [i, span] of spans.entries()) {
      const run = ok[i] as BeatRun;
      const taskId = run.taskId as string;
      expect(span.name).toBe('beat/every-2s');
      expect(span.spanContext().traceId).toBe(traceIdFor(taskId));
      expect(span.links[0]).toMatchObject({
        context: { traceId: traceIdFor(taskId), spanId: spanIdFor(taskId) },
        attributes: { 'celery.link.type': 'beat_task' },
      });
      expect(span.attributes['celery.beat.outcome']).toBe('on_time');
    }
    // Each run links to the entry's previous run (sent before it), whatever order they finish in.
    const bySpanId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const linked = spans.filter((s) =>
      s.links.some(
        (l) =>
          l.attributes?.['celery.link.type'] === 'beat_previous_run' &&
          bySpanId.has(l.context.spanId),
      ),
    );
    expect(linked).toHaveLength(2);
    const failed = runs.find((r) => r.entry === 'failing');
    expect(
      beatRunSpan(failed as BeatRun, { resource, scope: { name: 'x' }, maxAttributeLength: 1000 })
        .status,
    ).toEqual({
      code: 2,
      message: 'the task of this run ended FAILURE',
    });
  });

  it('beat stopped: gone after two heartbeat intervals, then the runs it should send are missed', () => {
    const { tracker, runs, lines } = setup();
    for (const event of events) feed(tracker, event, event.timestamp + 0.05);
    tracker.check(lastHeartbeat + 3); // within 2 x 2 s of the last heartbeat
    expect(
      beatMetricData(tracker, lastHeartbeat + 3, hrTime()).find(
        (m) => m.descriptor.name === 'celery.beat.up',
      )?.dataPoints[0]?.value,
    ).toBe(1);
    tracker.check(lastHeartbeat + 5);
    expect(
      points(beatMetricData(tracker, lastHeartbeat + 5, hrTime()), 'celery.beat.up')[0]?.value,
    ).toBe(0);
    expect(lines.some((l) => l.includes('celery beat is gone'))).toBe(true);
    const before = runs.length;
    // every-2s was due about 2 s after its last run; missed once the tolerance (8 s) passed.
    tracker.check(lastHeartbeat + 7);
    expect(runs.length).toBe(before);
    tracker.check(lastHeartbeat + 20);
    const missed = runs.slice(before).filter((r) => r.entry === 'every-2s');
    expect(missed.length).toBeGreaterThanOrEqual(4);
    expect(missed.every((r) => r.missedReason === 'not_sent' && r.taskId === undefined)).toBe(true);
    // Successive missed runs are linked too, to the last real run first.
    expect(missed[0]?.previous?.spanId).toBe(
      runs.filter((r) => r.entry === 'every-2s' && r.taskId !== undefined).at(-1)?.span.spanId,
    );
    expect(missed[1]?.previous).toEqual(missed[0]?.span);
  });
});

describe('BeatTracker outcomes and bounds', () => {
  const base = 1_800_000_000;
  const schedule = (names: string[], truncated = false) =>
    ({
      type: 'beat-schedule',
      timestamp: base,
      app: 'proj',
      truncated,
      entries: names.map((name) => ({
        name,
        task: `proj.${name}`,
        schedule: every(60),
        nextRunAt: base + 60,
      })),
    }) as const;
  const run = (entry: string, taskId: string, at: number) =>
    ({
      type: 'beat-run',
      timestamp: at,
      app: 'proj',
      entry,
      task: `proj.${entry}`,
      taskId,
      scheduledAt: at,
      nextRunAt: at + 60,
    }) as const;
  const task = (
    type: 'task-started' | 'task-succeeded' | 'task-failed' | 'task-retried',
    uuid: string,
    at: number,
  ) => ({ type, uuid, timestamp: at }) as const;

  it('late: started more than --beat-late-after-ms after it was sent', () => {
    const { tracker, runs } = setup();
    tracker.onSchedule(schedule(['a']), base);
    tracker.onRun(run('a', 't1', base + 60), base + 60);
    tracker.onTaskEvent(task('task-started', 't1', base + 65));
    tracker.onTaskEvent(task('task-succeeded', 't1', base + 66));
    expect(runs[0]).toMatchObject({ outcome: 'late', lateness: 5 });
  });

  it('a retried task is one run, decided by its last attempt', () => {
    const { tracker, runs } = setup();
    tracker.onSchedule(schedule(['a']), base);
    tracker.onRun(run('a', 't1', base + 60), base + 60);
    tracker.onTaskEvent(task('task-started', 't1', base + 60.5));
    tracker.onTaskEvent(task('task-retried', 't1', base + 61));
    tracker.onTaskEvent(task('task-started', 't1', base + 70));
    tracker.onTaskEvent(task('task-succeeded', 't1', base + 71));
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ outcome: 'on_time', lateness: 0.5 });
  });

  it('missed: sent but not started within the tolerance, or started and never finished', () => {
    const { tracker, runs } = setup();
    tracker.onSchedule(schedule(['a', 'b']), base);
    tracker.onRun(run('a', 't1', base + 60), base + 60);
    tracker.onRun(run('b', 't2', base + 60), base + 60);
    tracker.onTaskEvent(task('task-started', 't2', base + 61));
    tracker.check(base + 67);
    expect(runs).toHaveLength(0);
    tracker.check(base + 69);
    expect(runs.map((r) => [r.entry, r.outcome, r.missedReason])).toEqual([
      ['a', 'missed', 'not_started'],
    ]);
    tracker.check(base + 61 + 61);
    expect(runs.map((r) => [r.entry, r.missedReason])).toContainEqual(['b', 'not_finished']);
    // A task that starts after its run was declared missed changes nothing.
    tracker.onTaskEvent(task('task-succeeded', 't1', base + 200));
    expect(runs.filter((r) => r.entry === 'a')).toHaveLength(1);
  });

  it('missed: nothing sent by the expected time plus the tolerance, with beat up', () => {
    const { tracker, runs } = setup();
    tracker.onSchedule(schedule(['a']), base);
    tracker.onHeartbeat({ type: 'beat-heartbeat', timestamp: base, app: 'proj', freq: 1000 }, base);
    tracker.check(base + 67);
    expect(runs).toHaveLength(0);
    tracker.check(base + 69);
    expect(runs).toMatchObject([
      { outcome: 'missed', missedReason: 'not_sent', scheduledAt: base + 60 },
    ]);
    // The next expected run is one interval later.
    expect(
      points(beatMetricData(tracker, base + 69, hrTime()), 'celery.beat.next_run')[0]?.value,
    ).toBe(base + 120);
  });

  it('a run beat could not send is missed (send_error)', () => {
    const { tracker, runs } = setup();
    tracker.onRun(
      {
        type: 'beat-run',
        timestamp: base,
        app: 'proj',
        entry: 'a',
        error: "OperationalError('x')",
      },
      base,
    );
    expect(runs).toMatchObject([
      { outcome: 'missed', missedReason: 'send_error', detail: "OperationalError('x')" },
    ]);
  });

  it('an entry removed from a complete schedule disappears from the metrics; a truncated one keeps it', () => {
    const { tracker } = setup();
    tracker.onSchedule(schedule(['a', 'b']), base);
    tracker.onRun(run('b', 't1', base + 60), base + 60);
    const entries = (data: MetricData[]) =>
      new Set(points(data, 'celery.beat.runs').map((p) => p.attributes['celery.beat.entry']));
    expect(entries(beatMetricData(tracker, base, hrTime()))).toEqual(new Set(['a', 'b']));
    tracker.onSchedule(schedule(['a'], true), base + 70);
    expect(entries(beatMetricData(tracker, base, hrTime()))).toEqual(new Set(['a', 'b']));
    tracker.onSchedule(schedule(['a']), base + 80);
    expect(entries(beatMetricData(tracker, base, hrTime()))).toEqual(new Set(['a']));
    expect(tracker.pendingRuns).toBe(0);
    for (const name of ['celery.beat.next_run', 'celery.beat.lateness'])
      expect(
        metric(beatMetricData(tracker, base, hrTime()), name).dataPoints.every(
          (p) => p.attributes['celery.beat.entry'] === 'a',
        ),
      ).toBe(true);
  });

  it('tracks at most --beat-max-entries entries, counts the rest and logs once', () => {
    const { tracker, lines } = setup({ maxEntries: 3 });
    tracker.onSchedule(schedule(['a', 'b', 'c', 'd', 'e']), base);
    expect(tracker.entries).toBe(3);
    expect(tracker.untracked.entry_limit).toBe(2);
    const untracked = points(
      beatMetricData(tracker, base, hrTime()),
      'celery_otel_bridge.beat.untracked',
    );
    expect(untracked.find((p) => p.attributes['reason'] === 'entry_limit')?.value).toBe(2);
    expect(lines.filter((l) => l.includes('at its limit'))).toHaveLength(1);
    expect(
      points(beatMetricData(tracker, base, hrTime()), 'celery_otel_bridge.beat.entries')[0]?.value,
    ).toBe(3);
  });

  it('keeps at most MAX_PENDING_RUNS_PER_ENTRY runs of one entry waiting', () => {
    const { tracker } = setup({ toleranceMs: 1e9 });
    tracker.onSchedule(schedule(['a']), base);
    for (let i = 0; i < 1005; i++) tracker.onRun(run('a', `t${i}`, base + i), base + i);
    expect(tracker.pendingRuns).toBe(1000);
    expect(tracker.untracked.run_limit).toBe(5);
  });
});
