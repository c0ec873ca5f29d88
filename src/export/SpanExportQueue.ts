import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
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
  /** Longest pause between export attempts while the collector fails (default 30 s). */
  readonly maxRetryDelayMs?: number;
}

export interface SpanExportCounters {
  exported(count: number): void;
  dropped(reason: 'queue_full' | 'export_rejected', count: number, detail: string): void;
  /** The collector started failing (once per outage): spans are kept and retried. */
  exportFailing(detail: string): void;
  /** The collector accepts spans again after failing for `outageMs`. */
  exportRecovered(outageMs: number): void;
}

const FIRST_RETRY_DELAY_MS = 1000;
const DEFAULT_MAX_RETRY_DELAY_MS = 30_000;

/**
 * A bounded batching queue in front of an OTLP span exporter: the contract of the SDK's
 * BatchSpanProcessor (and its OTEL_BSP_* settings), plus what a bridge needs on top.
 *
 * - A collector outage loses nothing that fits: a batch that failed with a retryable error (the
 *   exporter already retried it a few times, otlp-exporter-base `RetryingTransport`) goes back to
 *   the head of the queue and is tried again with exponential backoff up to `maxRetryDelayMs`,
 *   while new spans keep queueing. Only when the queue is full are spans dropped (the newest, so
 *   the backlog stays in order), each counted.
 * - A batch the collector rejects for good (HTTP 4xx other than 408/429) is dropped and counted.
 * - Adding never blocks the event loop and memory stays within `maxQueueSize` spans.
 * https://opentelemetry.io/docs/specs/otel/trace/sdk/#batching-processor
 * https://opentelemetry.io/docs/specs/otlp/#retryable-response-codes
 */
export class SpanExportQueue {
  private queue: ReadableSpan[] = [];
  private timer: NodeJS.Timeout | undefined;
  private exporting: Promise<void> | undefined;
  private shuttingDown = false;
  /** While the collector fails: when the next attempt may start, and since when it fails. */
  private retryDelayMs = 0;
  private retryAtMs = 0;
  private failingSinceMs: number | undefined;

  constructor(
    private readonly exporter: SpanExporter,
    private readonly options: SpanExportQueueOptions,
    private readonly counters: SpanExportCounters,
    private readonly nowMs: () => number = () => Date.now(),
  ) {}

  get length(): number {
    return this.queue.length;
  }

  /** True while the collector is failing and exports are being retried. */
  get isFailing(): boolean {
    return this.failingSinceMs !== undefined;
  }

  /**
   * Queues spans for export. `lowPriority` spans (tasks given up on: evicted, expired) only use
   * the first half of the queue, so a flood of them can never crowd out the spans of tasks that
   * really finished.
   */
  add(spans: ReadableSpan[], lowPriority = false): void {
    const limit = lowPriority
      ? Math.floor(this.options.maxQueueSize / 2)
      : this.options.maxQueueSize;
    const room = limit - this.queue.length;
    if (room < spans.length) {
      this.counters.dropped(
        'queue_full',
        spans.length - Math.max(0, room),
        lowPriority
          ? `more unfinished tasks are given up on than the exporter can send (half of OTEL_BSP_MAX_QUEUE_SIZE, ${limit} spans, is theirs at most): their incomplete spans are dropped`
          : this.queueFullDetail(),
      );
      if (room <= 0) return;
      spans = spans.slice(0, room);
    }
    for (const span of spans) this.queue.push(span);
    this.schedule();
  }

  /**
   * Exports everything queued now. Resolves when the queue is empty, or when the collector fails
   * (what is left stays queued; a stop then reports it as dropped).
   */
  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.exporting !== undefined) {
      if (this.exporting !== undefined) {
        await this.exporting;
        continue;
      }
      const before = this.queue.length;
      await this.exportOneBatch();
      if (this.isFailing || this.queue.length >= before) return;
    }
  }

  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    if (this.queue.length > 0) {
      this.counters.dropped(
        'export_rejected',
        this.queue.length,
        'spans still queued at shutdown could not be exported: the collector was failing',
      );
      this.queue = [];
    }
    await this.exporter.shutdown();
  }

  private queueFullDetail(): string {
    return `the span export queue is full (${this.options.maxQueueSize} spans, OTEL_BSP_MAX_QUEUE_SIZE): the collector is slow or unreachable; newer spans are dropped`;
  }

  /** Starts an export now if a full batch is waiting, else arms the schedule-delay timer. */
  private schedule(): void {
    if (this.shuttingDown || this.exporting !== undefined || this.queue.length === 0) return;
    const now = this.nowMs();
    if (now < this.retryAtMs) {
      this.arm(this.retryAtMs - now);
    } else if (this.queue.length >= this.options.maxExportBatchSize) {
      this.kick();
    } else {
      this.arm(this.options.scheduleDelayMs);
    }
  }

  private arm(delayMs: number): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, delayMs).unref();
  }

  private kick(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.exporting !== undefined || this.shuttingDown) return;
    if (this.nowMs() < this.retryAtMs) {
      this.arm(this.retryAtMs - this.nowMs());
      return;
    }
    void this.exportOneBatch().then(() => this.schedule());
  }

  private exportOneBatch(): Promise<void> {
    const batch = this.queue.splice(0, this.options.maxExportBatchSize);
    if (batch.length === 0) return Promise.resolve();
    const done = new Promise<void>((resolve) => {
      let settled = false;
      const finish = (result: ExportResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timeout);
        this.settle(batch, result);
        resolve();
      };
      const timeout = setTimeout(
        () =>
          finish({
            code: ExportResultCode.FAILED,
            error: new Error(
              `the export took longer than ${this.options.exportTimeoutMs} ms (OTEL_BSP_EXPORT_TIMEOUT)`,
            ),
          }),
        this.options.exportTimeoutMs,
      );
      try {
        this.exporter.export(batch, finish);
      } catch (error) {
        finish({ code: ExportResultCode.FAILED, error: error as Error });
      }
    }).finally(() => {
      this.exporting = undefined;
    });
    this.exporting = done;
    return done;
  }

  private settle(batch: ReadableSpan[], result: ExportResult): void {
    if (result.code === ExportResultCode.SUCCESS) {
      this.counters.exported(batch.length);
      if (this.failingSinceMs !== undefined) {
        this.counters.exportRecovered(this.nowMs() - this.failingSinceMs);
      }
      this.failingSinceMs = undefined;
      this.retryDelayMs = 0;
      this.retryAtMs = 0;
      return;
    }
    const status = (result.error as { code?: unknown } | undefined)?.code;
    const message = result.error?.message ?? 'unknown error';
    if (
      typeof status === 'number' &&
      status >= 400 &&
      status < 500 &&
      status !== 408 &&
      status !== 429
    ) {
      this.counters.dropped(
        'export_rejected',
        batch.length,
        `the collector rejected spans (HTTP ${status}: ${message}); check the endpoint and its authentication`,
      );
      return;
    }
    // Retryable: the batch goes back to the head (it is the oldest), and back off. Spans queued
    // meanwhile past the bound are dropped from the tail, as `add` drops them: the newest go.
    this.queue = batch.concat(this.queue);
    const excess = this.queue.length - this.options.maxQueueSize;
    if (excess > 0) {
      this.queue.length = this.options.maxQueueSize;
      this.counters.dropped('queue_full', excess, this.queueFullDetail());
    }
    const now = this.nowMs();
    if (this.failingSinceMs === undefined) {
      this.failingSinceMs = now;
      this.counters.exportFailing(message);
    }
    const maxDelay = this.options.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS;
    this.retryDelayMs = Math.min(
      maxDelay,
      this.retryDelayMs === 0 ? FIRST_RETRY_DELAY_MS : this.retryDelayMs * 2,
    );
    this.retryAtMs = now + this.retryDelayMs;
  }
}
