// One bad span never fails its batch: the serializer leaves it out alone (counted), the export
// queue sends the rest once and counts only what was sent.
import { ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { describe, expect, it } from 'vitest';
import {
  type EncodedSpan,
  ProtobufSpanSerializer,
  type SerializerDropReason,
} from '../../src/export/ProtobufSpanSerializer.js';
import type { QueueExporter } from '../../src/export/QueueExporter.js';
import { SpanExportQueue } from '../../src/export/SpanExportQueue.js';
import { taskSpans } from '../../src/export/taskSpans.js';
import { ThreadedOtlpExporter } from '../../src/export/ThreadedOtlpExporter.js';
import { amqpFixtureMessages } from '../support/fixtures.js';
import { OtlpReceiver } from '../support/OtlpReceiver.js';
import { SPAN_OPTIONS, assemble, assemblerEventsOf, decodeAll } from '../support/pipeline.js';

function goodSpans(): ReadableSpan[] {
  return assemble(assemblerEventsOf(decodeAll(amqpFixtureMessages()).events)).spans;
}

/** A span whose name is not a string (as a planted state file could make one): encoding throws. */
function unencodable(template: ReadableSpan): ReadableSpan {
  return { ...template, name: 12345 as unknown as string };
}

/** A span with a 2 MB attribute: larger than the serializer sends. */
function oversized(template: ReadableSpan): ReadableSpan {
  return { ...template, attributes: { ...template.attributes, big: 'x'.repeat(2 << 20) } };
}

describe('spans the serializer cannot send', () => {
  it('are left out alone, counted, and taken out of the batch; the rest are the SDK bytes', () => {
    const good = goodSpans();
    const drops: SerializerDropReason[] = [];
    const serializer = new ProtobufSpanSerializer({ dropped: (reason) => drops.push(reason) });
    const batch = [unencodable(good[0]!), ...good.slice(0, 5), oversized(good[1]!), good[5]!];
    const bytes = serializer.serializeRequest(batch);
    expect(drops).toEqual(['unserializable', 'too_large']);
    expect(batch).toEqual(good.slice(0, 6));
    expect(Buffer.from(bytes)).toEqual(
      Buffer.from(ProtobufTraceSerializer.serializeRequest(good.slice(0, 6)) ?? []),
    );
  });

  it('leave the large buffer they grew to themselves: the next span is encoded in a usual one', () => {
    const good = goodSpans();
    const serializer = new ProtobufSpanSerializer({ dropped: () => undefined });
    const before = serializer.encode(good[0]!);
    expect(serializer.encode(oversized(good[1]!))).toBeUndefined();
    const after = serializer.encode(good[2]!);
    expect(before?.buf.length).toBe(1024 * 1024);
    expect(after?.buf.length).toBe(1024 * 1024);
    expect(after?.buf).not.toBe(before?.buf);
    expect(Buffer.from(serializer.serializeEncoded([before!, after!]))).toEqual(
      Buffer.from(ProtobufTraceSerializer.serializeRequest([good[0]!, good[2]!]) ?? []),
    );
  });

  it('an oversized task name makes a span name of 255 characters, not a rejected request', () => {
    const run = assemble([
      { type: 'task-received', uuid: 'n1', timestamp: 10, name: 'n'.repeat(1 << 20) },
      { type: 'task-started', uuid: 'n1', timestamp: 11, hostname: 'w' },
      { type: 'task-succeeded', uuid: 'n1', timestamp: 12, hostname: 'w' },
    ]);
    const spans = run.finished.flatMap((task) => taskSpans(task, SPAN_OPTIONS));
    expect(spans.map((s) => s.name.length)).toEqual([255, 259]);
  });

  it('cost no retry: the queue sends the batch once and counts only the spans sent', async () => {
    const receiver = await OtlpReceiver.start();
    const counts = { exported: 0, failing: 0, dropped: new Map<string, number>() };
    const count = (reason: string, n: number): void => {
      counts.dropped.set(reason, (counts.dropped.get(reason) ?? 0) + n);
    };
    const exporter = new ThreadedOtlpExporter(
      { url: receiver.tracesUrl, timeoutMillis: 5000 },
      new ProtobufSpanSerializer({ dropped: count }),
    );
    const queue = new SpanExportQueue(
      exporter,
      { maxQueueSize: 1000, maxExportBatchSize: 512, scheduleDelayMs: 10, exportTimeoutMs: 10_000 },
      {
        exported: (n) => (counts.exported += n),
        dropped: count,
        exportFailing: () => counts.failing++,
        exportRecovered: () => undefined,
      },
    );
    try {
      const good = goodSpans();
      queue.add([unencodable(good[0]!), ...good, oversized(good[0]!)]);
      await queue.flush();
      expect(counts.failing).toBe(0);
      expect(counts.exported).toBe(good.length);
      expect(Object.fromEntries(counts.dropped)).toEqual({ unserializable: 1, too_large: 1 });
      expect(receiver.requests).toHaveLength(1);
      expect(receiver.spans).toHaveLength(good.length);
      // A batch of nothing but bad spans sends nothing and is not retried either.
      queue.add([unencodable(good[0]!)]);
      await queue.flush();
      expect(receiver.requests).toHaveLength(1);
      expect(counts.failing).toBe(0);
      expect(queue.length).toBe(0);
    } finally {
      await queue.shutdown();
      await receiver.close();
    }
  });

  it('a batch retried after a collector failure goes without the spans left out, and settles', async () => {
    const good = goodSpans().slice(0, 10);
    const dropped: string[] = [];
    const serializer = new ProtobufSpanSerializer({ dropped: (reason) => dropped.push(reason) });
    const sent: number[] = [];
    let calls = 0;
    const exporter: QueueExporter<EncodedSpan> = {
      hold: (span) => serializer.encode(span),
      export(spans, callback) {
        serializer.serializeEncoded(spans);
        sent.push(spans.length);
        const fail = calls++ === 0;
        setTimeout(() =>
          callback(
            fail
              ? { code: ExportResultCode.FAILED, error: new Error('collector down') }
              : { code: ExportResultCode.SUCCESS },
          ),
        );
      },
      shutdown: () => Promise.resolve(),
    };
    const counts = { exported: 0, failing: 0 };
    const queue = new SpanExportQueue(
      exporter,
      {
        maxQueueSize: 100,
        maxExportBatchSize: 512,
        scheduleDelayMs: 1,
        exportTimeoutMs: 10_000,
        maxRetryDelayMs: 10,
      },
      {
        exported: (n) => (counts.exported += n),
        dropped: () => undefined,
        exportFailing: () => counts.failing++,
        exportRecovered: () => undefined,
      },
    );
    queue.add([unencodable(good[0]!), ...good]);
    const epoch = queue.mark();
    await queue.settled(epoch);
    expect(counts.failing).toBe(1);
    expect(sent).toEqual([10, 10]);
    expect(dropped).toEqual(['unserializable']);
    expect(counts.exported).toBe(10);
    expect(queue.held).toBe(0);
    await queue.shutdown();
  });
});
