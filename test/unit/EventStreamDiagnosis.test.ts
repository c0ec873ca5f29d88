// Self-diagnosis of the event stream on real captured events (Celery 5.2.6, prefork worker with
// -E, clients with task_send_sent_event), and on the same stream with what a misconfigured setup
// would not send: each finding logged once and kept as a gauge.
import { hrTime } from '@opentelemetry/core';
import type { GaugeMetricData } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import type { CeleryEvent } from '../../src/decode/CeleryEvent.js';
import { EventStreamDiagnosis, isLossyVersion } from '../../src/diagnose/EventStreamDiagnosis.js';
import { Logger } from '../../src/log/Logger.js';
import { amqpFixtureMessages } from '../support/fixtures.js';
import { decodeAll } from '../support/pipeline.js';

const captured = decodeAll(amqpFixtureMessages()).events;
const lastTimestamp = Math.max(...captured.map((e) => e.timestamp));

function diagnose(events: CeleryEvent[], now = lastTimestamp + 0.05) {
  const lines: Record<string, unknown>[] = [];
  const diagnosis = new EventStreamDiagnosis(
    new Logger('info', (line) => lines.push(JSON.parse(line) as Record<string, unknown>)),
    () => now,
  );
  // Twice: a finding is logged once, however often it is seen.
  for (const event of [...events, ...events]) diagnosis.onEvent(event);
  const [findings, offsets] = diagnosis.metrics(hrTime()) as [GaugeMetricData, GaugeMetricData];
  return {
    findings: findings.dataPoints.map((p) => p.attributes),
    offsets: offsets.dataPoints,
    logged: lines.map((l) => [l['finding'], l['worker']]),
    lines,
  };
}

describe('event stream self-diagnosis', () => {
  it('finds only the lossy Celery version in a well-configured 5.2.6 stream', () => {
    const { findings, logged, lines, offsets } = diagnose(captured);
    expect(findings).toEqual([
      {
        'celery_otel_bridge.finding': 'lossy_version',
        'celery.worker.hostname': 'w1@vm',
        'celery.worker.version': '5.2.6',
      },
    ]);
    expect(logged).toEqual([['lossy_version', 'w1@vm']]);
    expect(lines[0]?.['msg']).toContain('celery/celery#10434');
    expect(lines[0]?.['level']).toBe('warn');
    // The worker's clock offset: at most the time since its last event, never ahead.
    const w1 = offsets.find((p) => p.attributes['celery.worker.hostname'] === 'w1@vm');
    expect(w1?.value).toBeLessThanOrEqual(0);
  });

  it('finds a worker that heartbeats and runs tasks without sending task events (no -E)', () => {
    const noE = captured.filter((e) => !(e.type.startsWith('task-') && e.type !== 'task-sent'));
    const { findings, logged } = diagnose(noE);
    expect(findings).toContainEqual({
      'celery_otel_bridge.finding': 'no_task_events',
      'celery.worker.hostname': 'w1@vm',
    });
    expect(logged.filter(([f]) => f === 'no_task_events')).toEqual([['no_task_events', 'w1@vm']]);
  });

  it('finds clients that never send task-sent', () => {
    const { findings, lines } = diagnose(captured.filter((e) => e.type !== 'task-sent'));
    expect(findings).toContainEqual({ 'celery_otel_bridge.finding': 'no_task_sent' });
    expect(lines.find((l) => l['finding'] === 'no_task_sent')?.['msg']).toContain(
      'task_send_sent_event',
    );
  });

  it("finds a host whose clock is ahead of the bridge's", () => {
    const ahead = captured.map((e) =>
      e.hostname === 'w1@vm' ? { ...e, timestamp: e.timestamp + 30 } : e,
    );
    const { findings, offsets } = diagnose(ahead);
    expect(findings).toContainEqual({
      'celery_otel_bridge.finding': 'clock_skew',
      'celery.worker.hostname': 'w1@vm',
    });
    const w1 = offsets.find((p) => p.attributes['celery.worker.hostname'] === 'w1@vm');
    expect(w1?.value).toBeGreaterThan(29);
  });

  it('knows which Celery versions drop events with the thread and gevent pools', () => {
    for (const v of ['5.2.6', '5.4.0', '5.5.3', '5.6.3', '4.4.7'])
      expect(isLossyVersion(v), v).toBe(true);
    for (const v of ['5.6.4', '5.7.0', '6.0.0', 'main', ''])
      expect(isLossyVersion(v), v).toBe(false);
  });
});
