import { ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';

export interface SpanExportQueueOptions {
  /** Spans waiting for export at most; more are dropped and counted (OTEL_BSP_MAX_QUEUE_SIZE). */
  readonly maxQueueSize: number;
  /** Spans per export request at most (OTEL_BSP_MAX_EXPORT_BATCH_SIZE). */
  readonly maxExportBatchSize: number;
  /** Longest wait before a partial batch goes out (OTEL_BSP_SCHEDULE_DELAY). */
  readonly scheduleDelayMs: number;
  /** An export that has not answered by then counts as failed (OTEL_BSP_EXPORT_TIMEOUT). */
  readonly exportTimeoutMs: number;
}

export interface SpanExportCounters {
  exported(count: number): void;
  dropped(reason: 'queue_full' | 'export_failed', count: number, detail: string): void;
}

/**
 * A bounded batching queue in front of an OTLP span exporter: the same contract as the SDK's
 * BatchSpanProcessor (and the same OTEL_BSP_* settings), plus what a bridge needs on top: every
 * dropped span is counted with its reason, and adding never blocks the event loop.
 * https://opentelemetry.io/docs/specs/otel/trace/sdk/#batching-processor
 */
export class SpanExportQueue {
  private queue: ReadableSpan[] = [];
  private timer: NodeJS.Timeout | undefined;
  private exporting: Promise<void> | undefined;
  private shuttingDown = false;

  constructor(
    private readonly exporter: SpanExporter,
    private readonly options: SpanExportQueueOptions,
    private readonly counters: SpanExportCounters,
  ) {}

  get length(): number {
    return this.queue.length;
  }

  add(spans: ReadableSpan[]): void {
    const room = this.options.maxQueueSize - this.queue.length;
    if (room < spans.length) {
      this.counters.dropped(
        'queue_full',
        spans.length - Math.max(0, room),
        `the span export queue is full (${this.options.maxQueueSize} spans, OTEL_BSP_MAX_QUEUE_SIZE): the collector is slow or unreachable`,
      );
      if (room <= 0) return;
      spans = spans.slice(0, room);
    }
    for (const span of spans) this.queue.push(span);
    if (this.queue.length >= this.options.maxExportBatchSize) this.kick();
    else this.timer ??= setTimeout(() => this.kick(), this.options.scheduleDelayMs).unref();
  }

  /** Exports everything queued now; resolves when the queue is empty or the exports failed. */
  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.exporting !== undefined) {
      if (this.exporting !== undefined) await this.exporting;
      else await this.exportOneBatch();
    }
  }

  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    await this.exporter.shutdown();
  }

  private kick(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.exporting !== undefined) return;
    this.exportOneBatch().then(
      () => {
        if (this.shuttingDown) return;
        if (this.queue.length >= this.options.maxExportBatchSize) this.kick();
        else if (this.queue.length > 0) {
          this.timer ??= setTimeout(() => this.kick(), this.options.scheduleDelayMs).unref();
        }
      },
      () => undefined,
    );
  }

  private exportOneBatch(): Promise<void> {
    const batch = this.queue.splice(0, this.options.maxExportBatchSize);
    if (batch.length === 0) return Promise.resolve();
    const done = new Promise<void>((resolve) => {
      let settled = false;
      const timeout = setTimeout(() => {
        settled = true;
        this.counters.dropped(
          'export_failed',
          batch.length,
          `an OTLP export took longer than ${this.options.exportTimeoutMs} ms (OTEL_BSP_EXPORT_TIMEOUT)`,
        );
        resolve();
      }, this.options.exportTimeoutMs);
      this.exporter.export(batch, (result) => {
        clearTimeout(timeout);
        if (settled) return;
        settled = true;
        if (result.code === ExportResultCode.SUCCESS) this.counters.exported(batch.length);
        else {
          this.counters.dropped(
            'export_failed',
            batch.length,
            `OTLP export failed: ${result.error?.message ?? 'unknown error'}`,
          );
        }
        resolve();
      });
    }).finally(() => {
      this.exporting = undefined;
    });
    this.exporting = done;
    return done;
  }
}
