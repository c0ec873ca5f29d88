import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { OTLPExporterError } from '@opentelemetry/otlp-exporter-base';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it, vi } from 'vitest';
import { keepingSpans, type QueueExporter } from '../../src/export/QueueExporter.js';
import { SpanExportQueue } from '../../src/export/SpanExportQueue.js';

/** A fake exporter: unit tests only; the integration tests export to a real OTLP receiver. */
class FakeExporter implements QueueExporter<ReadableSpan> {
  batches: number[] = [];
  hold(span: ReadableSpan): ReadableSpan {
    return span;
  }
  accepted = 0;
  result: ExportResult = { code: ExportResultCode.SUCCESS };
  hang = false;
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.batches.push(spans.length);
    if (this.hang) return;
    setTimeout(() => {
      if (this.result.code === ExportResultCode.SUCCESS) this.accepted += spans.length;
      done(this.result);
    }, 1);
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const spans = (n: number): ReadableSpan[] => Array.from({ length: n }, () => ({}) as ReadableSpan);

function counters() {
  const state = { exported: 0, dropped: {} as Record<string, number>, failing: 0, recovered: 0 };
  return {
    state,
    exported: (n: number) => (state.exported += n),
    dropped: (reason: string, n: number) =>
      (state.dropped[reason] = (state.dropped[reason] ?? 0) + n),
    exportFailing: () => state.failing++,
    exportRecovered: () => state.recovered++,
  };
}

const options = {
  maxQueueSize: 1000,
  maxExportBatchSize: 10,
  scheduleDelayMs: 60_000,
  exportTimeoutMs: 1000,
};

describe('SpanExportQueue', () => {
  it('exports in batches of at most maxExportBatchSize and flushes the rest', async () => {
    const exporter = new FakeExporter();
    const c = counters();
    const queue = new SpanExportQueue(exporter, options, c);
    queue.add(spans(25));
    await queue.flush();
    expect(exporter.batches).toEqual([10, 10, 5]);
    expect(c.state.exported).toBe(25);
  });

  it('sends a partial batch after the schedule delay', async () => {
    const exporter = new FakeExporter();
    const queue = new SpanExportQueue(
      exporter,
      { ...options, maxExportBatchSize: 100, scheduleDelayMs: 20 },
      counters(),
    );
    queue.add(spans(3));
    expect(exporter.batches).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(exporter.batches).toEqual([3]);
  });

  it('drops and counts what does not fit', () => {
    const c = counters();
    const queue = new SpanExportQueue(
      new FakeExporter(),
      { ...options, maxQueueSize: 10, maxExportBatchSize: 100 },
      c,
    );
    queue.add(spans(8));
    queue.add(spans(5));
    expect(c.state.dropped['queue_full']).toBe(3);
    expect(queue.length).toBe(10);
  });

  it('keeps spans through a collector outage and exports them when it is back', async () => {
    const exporter = new FakeExporter();
    const c = counters();
    let now = 0;
    const queue = new SpanExportQueue(exporter, { ...options, maxQueueSize: 50 }, c, () => now);
    exporter.result = {
      code: ExportResultCode.FAILED,
      error: new OTLPExporterError('Export failed with retryable status'),
    };
    queue.add(spans(30));
    await queue.flush();
    expect(queue.isFailing).toBe(true);
    expect(c.state.failing).toBe(1);
    expect(queue.length).toBe(30);
    // New spans keep queueing up to the bound; beyond it they are dropped and counted.
    queue.add(spans(30));
    expect(queue.length).toBe(50);
    expect(c.state.dropped['queue_full']).toBe(10);
    exporter.result = { code: ExportResultCode.SUCCESS };
    now += 60_000;
    await queue.flush();
    expect(exporter.accepted).toBe(50);
    expect(c.state.recovered).toBe(1);
    expect(queue.isFailing).toBe(false);
  });

  it('puts a failed batch back whole, dropping the newest spans queued meanwhile', async () => {
    const exporter = new FakeExporter();
    const c = counters();
    const queue = new SpanExportQueue(exporter, { ...options, maxQueueSize: 20 }, c, () => 0);
    exporter.result = {
      code: ExportResultCode.FAILED,
      error: new OTLPExporterError('Export failed with retryable status', 503),
    };
    const named = (prefix: string, n: number): ReadableSpan[] =>
      Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}` }) as ReadableSpan);
    queue.add(named('old', 10));
    const flushed = queue.flush();
    // While the batch is out, 15 new spans fill the queue to 15 of its 20.
    queue.add(named('new', 15));
    await flushed;
    expect(queue.isFailing).toBe(true);
    expect(queue.length).toBe(20);
    expect(c.state.dropped['queue_full']).toBe(5);
    // The collector is back: what goes out is the whole old batch, then the oldest new spans.
    const sent: string[] = [];
    exporter.result = { code: ExportResultCode.SUCCESS };
    const original = exporter.export.bind(exporter);
    exporter.export = (batch, done) => {
      sent.push(...batch.map((span) => span.name));
      original(batch, done);
    };
    await queue.shutdown();
    expect(sent).toEqual([
      ...Array.from({ length: 10 }, (_, i) => `old${i}`),
      ...Array.from({ length: 10 }, (_, i) => `new${i}`),
    ]);
  });

  it('drops a batch the collector rejects for good, and counts a hung export as failing', async () => {
    const exporter = new FakeExporter();
    const c = counters();
    const queue = new SpanExportQueue(exporter, { ...options, exportTimeoutMs: 50 }, c);
    exporter.result = {
      code: ExportResultCode.FAILED,
      error: new OTLPExporterError('Bad Request', 400),
    };
    queue.add(spans(10));
    await queue.flush();
    expect(c.state.dropped['export_rejected']).toBe(10);
    expect(queue.length).toBe(0);
    exporter.hang = true;
    queue.add(spans(4));
    await queue.flush();
    expect(queue.isFailing).toBe(true);
    expect(queue.length).toBe(4);
    await queue.shutdown();
    expect(c.state.dropped['export_rejected']).toBe(14);
  });
});

describe('SpanExportQueue refused by configuration', () => {
  it.each([401, 403, 404])(
    'keeps and retries a batch refused with %i, then exports it',
    async (status) => {
      const exporter = new FakeExporter();
      const c = counters();
      const queue = new SpanExportQueue(exporter, { ...options, maxRetryDelayMs: 20 }, c);
      exporter.result = {
        code: ExportResultCode.FAILED,
        error: new OTLPExporterError('Nope', status),
      };
      queue.add(spans(10));
      await queue.flush();
      expect(c.state.dropped['export_rejected']).toBeUndefined();
      expect(queue.isFailing).toBe(true);
      expect(queue.length).toBe(10);
      exporter.result = { code: ExportResultCode.SUCCESS };
      await vi.waitFor(() => expect(queue.length).toBe(0), { timeout: 5_000 });
      expect(c.state.exported).toBe(10);
      await queue.shutdown();
    },
  );
});

describe('SpanExportQueue priorities', () => {
  it('keeps half the queue for spans of tasks that really finished', () => {
    const c = counters();
    const queue = new SpanExportQueue(
      new FakeExporter(),
      { ...options, maxQueueSize: 100, maxExportBatchSize: 1000 },
      c,
    );
    queue.add(spans(80), true);
    expect(queue.length).toBe(50);
    expect(c.state.dropped['queue_full']).toBe(30);
    queue.add(spans(60));
    expect(queue.length).toBe(100);
    expect(c.state.dropped['queue_full']).toBe(40);
  });
});

/** An exporter whose requests finish when the test says so, to see how many are in flight. */
class HeldExporter implements QueueExporter<ReadableSpan> {
  open: { size: number; done: (result: ExportResult) => void }[] = [];
  hold(span: ReadableSpan): ReadableSpan {
    return span;
  }
  export(batch: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.open.push({ size: batch.length, done });
  }
  finish(index: number, result: ExportResult = { code: ExportResultCode.SUCCESS }): void {
    const [request] = this.open.splice(index, 1);
    request?.done(result);
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('SpanExportQueue concurrency, checkpoints and back-pressure', () => {
  it('keeps maxConcurrentExports requests in flight, and one while the collector fails', async () => {
    const exporter = new HeldExporter();
    const queue = new SpanExportQueue(
      exporter,
      { ...options, maxConcurrentExports: 3 },
      counters(),
      () => 0,
    );
    queue.add(spans(100));
    expect(exporter.open.map((r) => r.size)).toEqual([10, 10, 10]);
    exporter.finish(1); // answers out of order are fine: the next batch takes the free slot
    await tick();
    expect(exporter.open).toHaveLength(3);
    exporter.finish(0, {
      code: ExportResultCode.FAILED,
      error: new OTLPExporterError('unavailable', 503),
    });
    await tick();
    // Failing: no new request until the others answer and the backoff allows one probe.
    expect(queue.isFailing).toBe(true);
    expect(exporter.open).toHaveLength(2);
    expect(queue.held).toBe(90);
  });

  it('settles an epoch once each of its spans was accepted, whatever the order', async () => {
    const exporter = new HeldExporter();
    const queue = new SpanExportQueue(
      exporter,
      { ...options, maxConcurrentExports: 2 },
      counters(),
    );
    queue.add(spans(10));
    const first = queue.mark();
    queue.add(spans(10));
    const second = queue.mark();
    let firstDone = false;
    let secondDone = false;
    void queue.settled(first).then(() => (firstDone = true));
    void queue.settled(second).then(() => (secondDone = true));
    expect(exporter.open).toHaveLength(2);
    exporter.finish(1); // the second epoch's batch first
    await tick();
    expect([firstDone, secondDone]).toEqual([false, false]); // the first still waits
    exporter.finish(0);
    await tick();
    expect([firstDone, secondDone]).toEqual([true, true]);
    // An epoch with nothing left is settled at once.
    await queue.settled(queue.mark());
  });

  it('sends a partial batch at once when a checkpoint waits for it', async () => {
    const exporter = new HeldExporter();
    const queue = new SpanExportQueue(
      exporter,
      { ...options, scheduleDelayMs: 60_000 },
      counters(),
    );
    queue.add(spans(3));
    expect(exporter.open).toHaveLength(0); // the schedule delay would hold it a minute
    const settled = queue.settled(queue.mark());
    expect(exporter.open.map((r) => r.size)).toEqual([3]);
    exporter.finish(0);
    await settled;
  });

  it('signals pressure at half the bound and relief at a quarter', async () => {
    const exporter = new HeldExporter();
    const signals: boolean[] = [];
    const queue = new SpanExportQueue(
      exporter,
      { ...options, maxQueueSize: 100, maxExportBatchSize: 25, maxConcurrentExports: 4 },
      counters(),
    );
    queue.onPressure((full) => signals.push(full));
    queue.add(spans(49));
    expect(signals).toEqual([]);
    queue.add(spans(1));
    expect(signals).toEqual([true]);
    expect(queue.isUnderPressure).toBe(true);
    exporter.finish(0); // 25 held: a quarter
    await tick();
    expect(signals).toEqual([true, false]);
  });

  it('counts spans dropped for a full queue as settled, so a checkpoint never waits for them', async () => {
    const exporter = new HeldExporter();
    const c = counters();
    const queue = new SpanExportQueue(
      exporter,
      { ...options, maxQueueSize: 10, maxExportBatchSize: 100 },
      c,
    );
    queue.add(spans(15));
    expect(c.state.dropped['queue_full']).toBe(5);
    const settled = queue.settled(queue.mark());
    exporter.finish(0);
    await settled;
  });
});

describe('SpanExportQueue with an exporter that takes spans out', () => {
  it('does not wait for a span the exporter cannot hold (it counted it)', async () => {
    const exporter = new HeldExporter();
    const cannot = new Set<ReadableSpan>();
    const holding: QueueExporter<ReadableSpan> = {
      // e.g. spans the serializer could not encode, counted by it
      hold: (span) => (cannot.has(span) ? undefined : span),
      export: (batch, done) => exporter.export(batch, done),
      shutdown: () => Promise.resolve(),
    };
    const c = counters();
    const queue = new SpanExportQueue(holding, options, c, () => 0);
    const five = spans(5);
    cannot.add(five[0] as ReadableSpan).add(five[3] as ReadableSpan);
    queue.add(five);
    expect(queue.length).toBe(3);
    const settled = queue.settled(queue.mark());
    expect(exporter.open.map((r) => r.size)).toEqual([3]);
    exporter.finish(0);
    await settled;
    expect(c.state.exported).toBe(3);
    expect(queue.held).toBe(0);
  });
});

describe('SpanExportQueue with an exporter that answers at once', () => {
  it('settles a batch answered within export itself', async () => {
    const c = counters();
    const now = keepingSpans({
      export: (_batch, done) => done({ code: ExportResultCode.SUCCESS }),
      shutdown: () => Promise.resolve(),
    });
    const queue = new SpanExportQueue(now, { ...options, maxConcurrentExports: 2 }, c);
    queue.add(spans(25));
    await queue.settled(queue.mark());
    await queue.flush();
    expect(c.state.exported).toBe(25);
    expect(queue.held).toBe(0);
  });
});

describe('SpanExportQueue batching under checkpoints', () => {
  it('hurries only the spans a checkpoint waits for; newer ones still fill a batch', async () => {
    const exporter = new HeldExporter();
    const queue = new SpanExportQueue(
      exporter,
      { ...options, scheduleDelayMs: 60_000, maxConcurrentExports: 2 },
      counters(),
    );
    queue.add(spans(3));
    const settled = queue.settled(queue.mark());
    expect(exporter.open.map((r) => r.size)).toEqual([3]);
    queue.add(spans(2)); // the next epoch: no checkpoint waits for it yet
    expect(exporter.open.map((r) => r.size)).toEqual([3]);
    exporter.finish(0);
    await settled;
    const next = queue.settled(queue.mark());
    expect(exporter.open.map((r) => r.size)).toEqual([2]);
    exporter.finish(0);
    await next;
  });
});
