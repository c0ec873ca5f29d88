// Seeded fuzzing of the whole pipeline with random field sizes and types: decode -> assemble ->
// spans -> protobuf. Nothing may throw, every bound must hold, and every span built must be
// encodable (the serializer's safety net must not be what keeps the bridge up).
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { MAX_ATTEMPTS } from '../../src/assemble/appendAttempt.js';
import { TaskAssembler } from '../../src/assemble/TaskAssembler.js';
import {
  type CeleryEvent,
  isTaskContextEvent,
  isTaskEvent,
  isWorkerEvent,
} from '../../src/decode/CeleryEvent.js';
import { decodeEventBody } from '../../src/decode/decodeEventBody.js';
import { MAX_NAME_LENGTH } from '../../src/decode/fieldBounds.js';
import { ProtobufSpanSerializer } from '../../src/export/ProtobufSpanSerializer.js';
import { taskSpans } from '../../src/export/taskSpans.js';
import { Logger } from '../../src/log/Logger.js';
import { MetricLabels } from '../../src/metrics/MetricLabels.js';
import { WorkerLiveness } from '../../src/assemble/WorkerLiveness.js';
import { ASSEMBLER_OPTIONS, SPAN_OPTIONS } from '../support/pipeline.js';
import { seededRandom } from '../support/seededRandom.js';
import { BridgeStats } from '../../src/telemetry/BridgeStats.js';

const NOW = 1_764_000_000;
const SEEDS = 120;
const TYPES = [
  'task-sent',
  'task-received',
  'task-started',
  'task-succeeded',
  'task-failed',
  'task-retried',
  'task-revoked',
  'task-rejected',
  'task-otel-context',
  'worker-heartbeat',
  'worker-online',
  'worker-offline',
  'task-exploded',
];
const FIELDS = [
  'hostname',
  'name',
  'root_id',
  'parent_id',
  'retries',
  'eta',
  'expires',
  'queue',
  'exchange',
  'routing_key',
  'args',
  'kwargs',
  'result',
  'runtime',
  'exception',
  'traceback',
  'terminated',
  'signum',
  'expired',
  'requeue',
  'freq',
  'active',
  'processed',
  'traceparent',
  'tracestate',
  'group',
  'group_index',
  'group_size',
  'chord',
];

/** A value of a random type and size: strings from empty to a megabyte, numbers of any range. */
function randomValue(next: () => number, depth = 0): unknown {
  const roll = next();
  const sizes = [0, 1, 36, 255, 256, 257, 4000, 20_000];
  if (roll < 0.4) {
    const size = next() < 0.002 ? 1 << 20 : (sizes[Math.floor(next() * sizes.length)] ?? 1);
    const chars = ['x', 'é', '😀', '\u0000', '\u001b[2J', '\ud800', '-'];
    return (chars[Math.floor(next() * chars.length)] ?? 'x').repeat(size).slice(0, size || 1);
  }
  if (roll < 0.65) {
    const numbers = [0, -1, 1.5, 7, 255, 1e13, -1e300, 1e308, NOW, NOW + 1e6, 2 ** 53, 0.001];
    return numbers[Math.floor(next() * numbers.length)];
  }
  if (roll < 0.72) return next() < 0.5;
  if (roll < 0.78) return null;
  if (roll < 0.85 && depth < 2) return [randomValue(next, depth + 1), randomValue(next, depth + 1)];
  if (roll < 0.92 && depth < 2) return { nested: randomValue(next, depth + 1) };
  return `00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01`;
}

function randomEvent(next: () => number): Record<string, unknown> {
  const event: Record<string, unknown> = {
    type: TYPES[Math.floor(next() * TYPES.length)],
    uuid: `task-${Math.floor(next() * 8)}`,
    // Mostly plausible times, so that events get through to the assembler.
    timestamp: next() < 0.85 ? NOW + next() * 100 : randomValue(next),
    hostname: `w${Math.floor(next() * 3)}@h`,
  };
  const extra = Math.floor(next() * 8);
  for (let i = 0; i < extra; i++) {
    const field = FIELDS[Math.floor(next() * FIELDS.length)] ?? 'name';
    event[field] = randomValue(next);
  }
  if (next() < 0.1) event['uuid'] = randomValue(next);
  return event;
}

describe('pipeline fuzzing (seeded): decode -> assemble -> spans -> protobuf', () => {
  it('never throws, keeps every bound, and builds only encodable spans', () => {
    let events = 0;
    let spans = 0;
    const dropped: string[] = [];
    for (let seed = 1; seed <= SEEDS; seed++) {
      const next = seededRandom(seed);
      const stats = new BridgeStats(new Logger('error'));
      const budget = 4 * 1024 * 1024;
      const finished: ReadableSpan[] = [];
      const assembler = new TaskAssembler(
        { ...ASSEMBLER_OPTIONS, maxInFlightTasks: 6, maxInFlightBytes: budget, captureArgs: true },
        (task) => finished.push(...taskSpans(task, { ...SPAN_OPTIONS, maxAttributeLength: 4096 })),
        stats,
        () => 0,
      );
      const labels = new MetricLabels(5, { mode: 'hostname' });
      const liveness = new WorkerLiveness(60_000, 3, () => 0);
      const messages = 1 + Math.floor(next() * 4);
      for (let m = 0; m < messages; m++) {
        const body = Array.from({ length: 1 + Math.floor(next() * 30) }, () => randomEvent(next));
        const decoded: CeleryEvent[] = [];
        expect(() =>
          decodeEventBody(
            {
              routingKey: 'task.multi',
              contentType: 'application/json',
              body: Buffer.from(JSON.stringify(body)),
            },
            { maxMessageBytes: 64 << 20, maxFieldLength: 4096, nowEpochSeconds: () => NOW },
            {
              event: (e) => decoded.push(e),
              reject: (r, n) => stats.rejected(r, n),
              truncated: (f, n) => stats.truncated(f, n),
            },
          ),
        ).not.toThrow();
        events += decoded.length;
        for (const event of decoded) {
          expect(event.timestamp).toBeGreaterThan(NOW - 7 * 86400);
          expect(event.timestamp).toBeLessThanOrEqual(NOW + 3600);
          expect(() => {
            if (isTaskEvent(event)) {
              for (const value of [event.name, event.hostname, event.queue, event.routingKey]) {
                if (value !== undefined) expect(value.length).toBeLessThanOrEqual(MAX_NAME_LENGTH);
              }
              labels.taskName(event.name);
              assembler.handle(event);
            } else if (isTaskContextEvent(event)) {
              assembler.handleContext(event);
            } else if (isWorkerEvent(event)) {
              liveness.onEvent(event);
              if (event.type === 'worker-offline') assembler.workerLost(event.hostname, NOW);
            }
          }).not.toThrow();
          expect(assembler.inFlightBytes).toBeLessThanOrEqual(budget);
          expect(assembler.inFlightCount).toBeLessThanOrEqual(6);
          for (const id of ['task-0', 'task-1']) {
            expect(assembler.peek(id)?.attempts.length ?? 0).toBeLessThanOrEqual(MAX_ATTEMPTS);
          }
        }
      }
      expect(() => {
        assembler.flushHeld();
        assembler.expireOlderThan(0, Number.MAX_SAFE_INTEGER);
      }).not.toThrow();
      expect(assembler.inFlightBytes).toBe(0);
      const serializer = new ProtobufSpanSerializer({ dropped: (reason) => dropped.push(reason) });
      for (let i = 0; i < finished.length; i += 50) {
        expect(() => serializer.serializeRequest(finished.slice(i, i + 50))).not.toThrow();
      }
      for (const span of finished) expect(span.name.length).toBeLessThanOrEqual(4 + 255);
      spans += finished.length;
    }
    // Every span the pipeline built could be encoded: the serializer had nothing to leave out.
    expect(dropped).toEqual([]);
    // The fuzzer must reach the assembler and the exporter to mean anything.
    expect(events).toBeGreaterThan(2000);
    expect(spans).toBeGreaterThan(1000);
  });
});
