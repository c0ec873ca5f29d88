import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { SpanDropReason } from '../shared/attributeSpecs.js';
import type { QueueExporter } from './QueueExporter.js';

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
  /** Export requests in flight at once while the collector accepts them (default 1). */
  readonly maxConcurrentExports?: number;
}

export interface SpanExportCounters {
  exported(count: number): void;
  dropped(
    reason: Extract<SpanDropReason, 'queue_full' | 'export_rejected'>,
    count: number,
    detail: string,
  ): void;
  /** The collector started failing (once per outage): spans are kept and retried. */
  exportFailing(detail: string): void;
  /** The collector accepts spans again after failing for `outageMs`. */
  exportRecovered(outageMs: number): void;
}

const FIRST_RETRY_DELAY_MS = 1000;
const DEFAULT_MAX_RETRY_DELAY_MS = 30_000;
/**
 * Intake pauses once this share of `maxQueueSize` is held (queued or being sent) and resumes
 * below {@link LOW_WATER}: the half above the high-water mark is room for what the messages
 * already taken from the broker still finish, so the hard bound is a last resort.
 */
const HIGH_WATER = 0.5;
const LOW_WATER = 0.25;

/** A batch on its way: its spans (as the exporter holds them) and each one's checkpoint epoch. */
interface Batch<T> {
  readonly spans: T[];
  readonly epochs: number[];
}

/**
 * Refusals that the configuration causes, not the spans (authentication, authorization, a wrong
 * path): the same batch is accepted once the user fixes it, so it is kept and retried.
 */
const REFUSED_UNTIL_RECONFIGURED: ReadonlySet<number> = new Set([401, 403, 404]);

/**
 * A bounded batching queue in front of an OTLP span exporter: the contract of the SDK's
 * BatchSpanProcessor (and its OTEL_BSP_* settings), plus what a bridge needs on top.
 *
 * - Several requests in flight (`maxConcurrentExports`), as the collector's exporters send from
 *   several consumers of their sending queue: span ids are deterministic and the receiver does
 *   not care about order, so one slow round trip no longer caps the throughput.
 * - A collector outage loses nothing that fits: a batch that failed with a retryable error (the
 *   exporter already retried it a few times, otlp-exporter-base `RetryingTransport`) goes back to
 *   the head of the queue and is tried again with exponential backoff up to `maxRetryDelayMs`,
 *   one request at a time, while new spans keep queueing.
 * - Back-pressure: `onPressure(true)` once half the bound is held, `onPressure(false)` when it
 *   has drained to a quarter; the bridge then stops taking messages from the broker. Only when
 *   the queue is full anyway are spans dropped (the newest, so the backlog stays in order), each
 *   counted: the last resort.
 * - Checkpoints: `mark()` closes an epoch and `settled(epoch)` resolves once every span added up
 *   to it was accepted by the collector (or dropped and counted), which is when the broker
 *   messages that made them may be acknowledged.
 * - A batch the collector rejects for good (HTTP 4xx other than 408/429) is dropped and counted,
 *   except 401/403/404: those say the endpoint or its credentials are wrong, not the spans, so the
 *   batch is retried with backoff like an outage until the user fixes the configuration (the
 *   backlog waits in the broker meanwhile).
 * - Adding never blocks the event loop and memory stays within `maxQueueSize` spans, each kept as
 *   the exporter holds it (QueueExporter.hold: the OTLP/protobuf exporter keeps its encoding).
 * https://opentelemetry.io/docs/specs/otel/trace/sdk/#batching-processor
 * https://opentelemetry.io/docs/specs/otlp/#retryable-response-codes
 */
export class SpanExportQueue<T = unknown> {
  private queue: T[] = [];
  /** The epoch of each queued span, index for index. */
  private queueEpochs: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private inFlightSpans = 0;
  private shuttingDown = false;
  private flushing = 0;
  /** While the collector fails: when the next attempt may start, and since when it fails. */
  private retryDelayMs = 0;
  private retryAtMs = 0;
  private failingSinceMs: number | undefined;
  /** Spans not yet accepted or dropped, per epoch; epochs are added in increasing order. */
  private readonly unsettled = new Map<number, number>();
  private epoch = 0;
  private waiters: { epoch: number; resolve: () => void }[] = [];
  /** The newest epoch a checkpoint waits for. */
  private maxWaitedEpoch = -1;
  private pressure = false;
  private pressureListener: ((full: boolean) => void) | undefined;
  private readonly maxConcurrent: number;
  private readonly highWater: number;
  private readonly lowWater: number;

  constructor(
    /** `ready`, when the exporter has it: resolves once it can send (its thread started). */
    private readonly exporter: QueueExporter<T>,
    private readonly options: SpanExportQueueOptions,
    private readonly counters: SpanExportCounters,
    private readonly nowMs: () => number = () => Date.now(),
  ) {
    this.maxConcurrent = Math.max(1, options.maxConcurrentExports ?? 1);
    this.highWater = Math.max(1, Math.floor(options.maxQueueSize * HIGH_WATER));
    this.lowWater = Math.floor(options.maxQueueSize * LOW_WATER);
  }

  /**
   * Resolves once the exporter can send, or after `timeoutMs`: a bridge that consumes before its
   * exporter can send holds the first messages unacknowledged meanwhile, and on RabbitMQ a full
   * prefetch window stops the broker until then.
   */
  ready(timeoutMs: number): Promise<void> {
    const ready = this.exporter.ready?.();
    if (ready === undefined) return Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>(
      (resolve) => (timer = setTimeout(resolve, timeoutMs).unref()),
    );
    return Promise.race([ready, timeout]).finally(() => clearTimeout(timer));
  }

  /** Spans queued, not counting those being sent. */
  get length(): number {
    return this.queue.length;
  }

  /** Spans held: queued and being sent. */
  get held(): number {
    return this.queue.length + this.inFlightSpans;
  }

  /** True while the collector is failing and exports are being retried. */
  get isFailing(): boolean {
    return this.failingSinceMs !== undefined;
  }

  /** True between `onPressure(true)` and `onPressure(false)`. */
  get isUnderPressure(): boolean {
    return this.pressure;
  }

  /** Called with true when the queue passes its high-water mark, false when it drained. */
  onPressure(listener: (full: boolean) => void): void {
    this.pressureListener = listener;
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
    const room = limit - this.held;
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
    let held = 0;
    for (const span of spans) {
      // A span the exporter cannot hold was counted as dropped by it: nothing waits for it.
      const item = this.exporter.hold(span);
      if (item === undefined) continue;
      this.queue.push(item);
      this.queueEpochs.push(this.epoch);
      held++;
    }
    if (held === 0) return;
    this.unsettled.set(this.epoch, (this.unsettled.get(this.epoch) ?? 0) + held);
    this.checkPressure();
    this.schedule();
  }

  /** Closes the current epoch and returns it: spans added from now on belong to the next one. */
  mark(): number {
    return this.epoch++;
  }

  /**
   * Resolves once every span added up to `epoch` (see `mark`) was accepted or dropped. Queued
   * spans of that epoch go out at once rather than after the schedule delay: an acknowledgement
   * is waiting for them.
   */
  settled(epoch: number): Promise<void> {
    if (this.oldestUnsettled() > epoch) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.waiters.push({ epoch, resolve });
      this.maxWaitedEpoch = Math.max(this.maxWaitedEpoch, epoch);
      this.schedule();
    });
  }

  /**
   * Exports everything queued now. Resolves when the queue is empty, or when the collector fails
   * (what is left stays queued; a stop then reports it as dropped).
   */
  async flush(): Promise<void> {
    this.flushing++;
    try {
      let triedWhileFailing = false;
      for (;;) {
        if (this.queue.length === 0 && this.inFlight.size === 0) return;
        if (this.isFailing && this.inFlight.size === 0) {
          // One attempt now, whatever the backoff says; if it fails too, leave the rest queued.
          if (triedWhileFailing) return;
          triedWhileFailing = true;
          this.startExport();
        } else {
          this.schedule();
        }
        if (this.inFlight.size === 0) return;
        await Promise.race(this.inFlight);
      }
    } finally {
      this.flushing--;
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
      this.settleSpans(this.queueEpochs);
      this.queue = [];
      this.queueEpochs = [];
    }
    await this.exporter.shutdown();
  }

  private queueFullDetail(): string {
    return `the span export queue is full (${this.options.maxQueueSize} spans, OTEL_BSP_MAX_QUEUE_SIZE): the collector is slower than the intake and the broker could not be slowed down enough; newer spans are dropped`;
  }

  /** Starts exports while there is room in flight and a batch is due; else arms a timer. */
  private schedule(): void {
    if (this.shuttingDown && this.flushing === 0) return;
    for (;;) {
      if (this.queue.length === 0) return;
      // While the collector fails, one probe at a time: the backoff is per batch, not per slot.
      const slots = this.isFailing ? 1 : this.maxConcurrent;
      if (this.inFlight.size >= slots) return;
      const now = this.nowMs();
      if (now < this.retryAtMs) {
        this.arm(this.retryAtMs - now);
        return;
      }
      // A checkpoint hurries only the spans it waits for (the queue's head is its oldest span):
      // spans of the epoch still open fill batches as usual.
      const waitedFor =
        this.waiters.length > 0 && (this.queueEpochs[0] ?? Infinity) <= this.maxWaitedEpoch;
      const due =
        this.queue.length >= this.options.maxExportBatchSize || waitedFor || this.flushing > 0;
      if (!due) {
        this.arm(this.options.scheduleDelayMs);
        return;
      }
      this.startExport();
    }
  }

  private arm(delayMs: number): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, delayMs).unref();
  }

  /** The schedule-delay or backoff timer fired: send what is queued, partial batch or not. */
  private kick(): void {
    if (this.shuttingDown && this.flushing === 0) return;
    const slots = this.isFailing ? 1 : this.maxConcurrent;
    if (this.inFlight.size < slots && this.nowMs() >= this.retryAtMs) this.startExport();
    this.schedule();
  }

  private startExport(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const take = Math.min(this.options.maxExportBatchSize, this.queue.length);
    if (take === 0) return;
    const spans = this.queue.splice(0, take);
    const batch: Batch<T> = { spans, epochs: this.queueEpochs.splice(0, take) };
    this.inFlightSpans += take;
    // The promise exists before the exporter is called: an exporter may answer within `export`
    // itself (stopped, or an answer of its own), and `finish` must find it then.
    let resolveDone: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (resolveDone = resolve));
    this.inFlight.add(done);
    let settled = false;
    const finish = (result: ExportResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timeout);
      this.inFlightSpans -= take;
      this.inFlight.delete(done);
      this.settle(batch, result);
      resolveDone();
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
      this.exporter.export(batch.spans, finish);
    } catch (error) {
      finish({ code: ExportResultCode.FAILED, error: error as Error });
    }
    void done.then(() => this.schedule());
  }

  private settle(batch: Batch<T>, result: ExportResult): void {
    if (result.code === ExportResultCode.SUCCESS) {
      this.counters.exported(batch.spans.length);
      if (this.failingSinceMs !== undefined) {
        this.counters.exportRecovered(this.nowMs() - this.failingSinceMs);
      }
      this.failingSinceMs = undefined;
      this.retryDelayMs = 0;
      this.retryAtMs = 0;
      this.settleSpans(batch.epochs);
      return;
    }
    const status = (result.error as { code?: unknown } | undefined)?.code;
    let message = result.error?.message ?? 'unknown error';
    if (typeof status === 'number' && REFUSED_UNTIL_RECONFIGURED.has(status)) {
      message = `the collector refused spans (HTTP ${status}: ${message}); check the endpoint URL and its authentication headers (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS)`;
    } else if (
      typeof status === 'number' &&
      status >= 400 &&
      status < 500 &&
      status !== 408 &&
      status !== 429
    ) {
      this.counters.dropped(
        'export_rejected',
        batch.spans.length,
        `the collector rejected spans (HTTP ${status}: ${message}); check the endpoint and its authentication`,
      );
      this.settleSpans(batch.epochs);
      return;
    }
    // Retryable: the batch goes back to the head (it is the oldest), and back off. Spans queued
    // meanwhile past the bound are dropped from the tail, as `add` drops them: the newest go.
    this.queue = batch.spans.concat(this.queue);
    this.queueEpochs = batch.epochs.concat(this.queueEpochs);
    const excess = this.held - this.options.maxQueueSize;
    if (excess > 0) {
      const keep = this.queue.length - excess;
      this.settleSpans(this.queueEpochs.slice(keep));
      this.queue.length = keep;
      this.queueEpochs.length = keep;
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

  /** These spans were accepted or dropped: release the checkpoints waiting for them. */
  private settleSpans(epochs: readonly number[]): void {
    for (const epoch of epochs) {
      const left = (this.unsettled.get(epoch) ?? 1) - 1;
      if (left > 0) this.unsettled.set(epoch, left);
      else this.unsettled.delete(epoch);
    }
    this.checkPressure();
    if (this.waiters.length === 0) return;
    const oldest = this.oldestUnsettled();
    const still: typeof this.waiters = [];
    for (const waiter of this.waiters) {
      if (waiter.epoch < oldest) waiter.resolve();
      else still.push(waiter);
    }
    this.waiters = still;
  }

  /** The oldest epoch with a span not yet settled; Infinity when there is none. */
  private oldestUnsettled(): number {
    // Map iteration follows insertion order, and epochs are inserted in increasing order.
    for (const epoch of this.unsettled.keys()) return epoch;
    return Number.POSITIVE_INFINITY;
  }

  private checkPressure(): void {
    const held = this.held;
    if (!this.pressure && held >= this.highWater) {
      this.pressure = true;
      this.pressureListener?.(true);
    } else if (this.pressure && held <= this.lowWater) {
      this.pressure = false;
      this.pressureListener?.(false);
    }
  }
}
