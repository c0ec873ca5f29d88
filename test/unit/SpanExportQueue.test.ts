import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { SpanExportQueue } from '../../src/export/SpanExportQueue.js';

/** A fake exporter: unit tests only; the integration tests export to a real OTLP receiver. */
class FakeExporter implements SpanExporter {
  batches: number[] = [];
  result: ExportResult = { code: ExportResultCode.SUCCESS };
  hang = false;
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.batches.push(spans.length);
    if (!this.hang) setTimeout(() => done(this.result), 1);
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const spans = (n: number): ReadableSpan[] => Array.from({ length: n }, () => ({}) as ReadableSpan);

function counters() {
  const state = { exported: 0, dropped: {} as Record<string, number> };
  return {
    state,
    exported: (n: number) => (state.exported += n),
    dropped: (reason: string, n: number) =>
      (state.dropped[reason] = (state.dropped[reason] ?? 0) + n),
  };
}

describe('SpanExportQueue', () => {
  it('exports in batches of at most maxExportBatchSize and flushes the rest', async () => {
    const exporter = new FakeExporter();
    const c = counters();
    const queue = new SpanExportQueue(
      exporter,
      {
        maxQueueSize: 1000,
        maxExportBatchSize: 10,
        scheduleDelayMs: 60_000,
        exportTimeoutMs: 1000,
      },
      c,
    );
    queue.add(spans(25));
    await queue.flush();
    expect(exporter.batches).toEqual([10, 10, 5]);
    expect(c.state.exported).toBe(25);
  });

  it('sends a partial batch after the schedule delay', async () => {
    const exporter = new FakeExporter();
    const c = counters();
    const queue = new SpanExportQueue(
      exporter,
      { maxQueueSize: 1000, maxExportBatchSize: 100, scheduleDelayMs: 20, exportTimeoutMs: 1000 },
      c,
    );
    queue.add(spans(3));
    expect(exporter.batches).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(exporter.batches).toEqual([3]);
  });

  it('drops and counts what does not fit, and counts failed and timed-out exports', async () => {
    const exporter = new FakeExporter();
    const c = counters();
    const queue = new SpanExportQueue(
      exporter,
      { maxQueueSize: 10, maxExportBatchSize: 100, scheduleDelayMs: 60_000, exportTimeoutMs: 50 },
      c,
    );
    queue.add(spans(8));
    queue.add(spans(5));
    expect(c.state.dropped['queue_full']).toBe(3);
    expect(queue.length).toBe(10);
    exporter.result = { code: ExportResultCode.FAILED, error: new Error('503') };
    await queue.flush();
    expect(c.state.dropped['export_failed']).toBe(10);
    exporter.hang = true;
    queue.add(spans(4));
    await queue.flush();
    expect(c.state.dropped['export_failed']).toBe(14);
    expect(c.state.exported).toBe(0);
  });
});
