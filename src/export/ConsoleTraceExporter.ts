import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { guarded, type InternalErrorSink } from '../shared/guarded.js';
import { escapeForTerminal } from './escapeForTerminal.js';
import {
  isAttempt,
  isTaskRoot,
  renderTraceTree,
  type TracePrintReason,
} from './renderTraceTree.js';

export interface ConsoleTraceExporterOptions {
  /** Where a rendered trace goes (stdout). */
  readonly write: (text: string) => void;
  readonly color: boolean;
  /** A trace whose root task is in is printed once no span for it arrived for this long. */
  readonly quietMs: number;
  /** Any trace is printed this long after its first span arrived, complete or not. */
  readonly maxWaitMs: number;
  /** Traces waiting at most; beyond, the oldest is printed early. */
  readonly maxTraces: number;
  /** Spans of one waiting trace at most; beyond, the trace is printed early. */
  readonly maxSpansPerTrace: number;
  /** Trace ids remembered after printing, so late spans print as a continuation. */
  readonly maxPrintedTraceIds: number;
  readonly checkIntervalMs: number;
  readonly now: () => number;
  /**
   * A trace that could not be rendered (a bug, or span data it cannot show) is reported here
   * (counted, logged once) and printed as one line saying so; printing goes on.
   */
  readonly onError?: InternalErrorSink;
}

export const CONSOLE_DEFAULTS: Omit<ConsoleTraceExporterOptions, 'write' | 'color'> = {
  quietMs: 2000,
  maxWaitMs: 60_000,
  maxTraces: 1000,
  maxSpansPerTrace: 10_000,
  maxPrintedTraceIds: 10_000,
  checkIntervalMs: 200,
  now: () => Date.now(),
};

interface PendingTrace {
  readonly spans: ReadableSpan[];
  readonly firstAt: number;
  lastAt: number;
  /** Part of this trace was printed already: no root will come. */
  readonly continued: boolean;
}

/**
 * A SpanExporter for a terminal: it gathers spans per trace and prints each finished trace as an
 * indented tree (renderTraceTree) instead of sending anything anywhere.
 *
 * Spans reach an exporter one task at a time, as tasks finish, so "the trace is finished" is a
 * guess. The rule:
 *   - a trace is printed once its root task's span is in (the task whose Celery root_id is
 *     itself), every task span's parent task is in, and no new span for the trace arrived for
 *     `quietMs` (2 s) — which lets the next steps of a chain, sent when the root finished, land;
 *   - any trace is printed `maxWaitMs` (60 s) after its first span arrived, whatever is missing
 *     (a root that finished before the bridge started, a parent whose events were lost), and
 *     says so;
 *   - at most `maxTraces` (1000) traces wait; a new one beyond that prints the oldest early;
 *   - spans that arrive for a trace already printed (a chain step that waited in the queue longer
 *     than `quietMs`) are printed as a continuation of it, under the same trace id;
 *   - on shutdown every waiting trace is printed.
 */
export class ConsoleTraceExporter implements SpanExporter {
  private readonly options: ConsoleTraceExporterOptions;
  private readonly pending = new Map<string, PendingTrace>();
  private readonly printed = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    options: Partial<ConsoleTraceExporterOptions> &
      Pick<ConsoleTraceExporterOptions, 'write' | 'color'>,
  ) {
    this.options = { ...CONSOLE_DEFAULTS, ...options };
  }

  /** Traces waiting to be printed. */
  get pendingTraces(): number {
    return this.pending.size;
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    if (this.stopped) {
      resultCallback({ code: ExportResultCode.FAILED, error: new Error('exporter shut down') });
      return;
    }
    const now = this.options.now();
    for (const span of spans) {
      const traceId = span.spanContext().traceId;
      let trace = this.pending.get(traceId);
      if (trace === undefined) {
        if (this.pending.size >= this.options.maxTraces) this.printOldest();
        trace = { spans: [], firstAt: now, lastAt: now, continued: this.printed.has(traceId) };
        this.pending.set(traceId, trace);
      }
      trace.spans.push(span);
      trace.lastAt = now;
      if (trace.spans.length >= this.options.maxSpansPerTrace) this.print(traceId, 'buffer_full');
    }
    this.timer ??= setInterval(
      guarded(
        'console',
        (where, error) => this.options.onError?.(where, error),
        () => this.check(),
      ),
      this.options.checkIntervalMs,
    ).unref();
    resultCallback({ code: ExportResultCode.SUCCESS });
  }

  /** Prints every trace that is due now (called by the timer; public for tests). */
  check(): void {
    const now = this.options.now();
    for (const [traceId, trace] of [...this.pending]) {
      if (now - trace.firstAt >= this.options.maxWaitMs) this.print(traceId, 'max_wait');
      else if (now - trace.lastAt >= this.options.quietMs && isComplete(trace)) {
        this.print(traceId, 'complete');
      }
    }
  }

  forceFlush(): Promise<void> {
    this.printAll();
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    this.printAll();
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    return Promise.resolve();
  }

  private printAll(): void {
    for (const [traceId, trace] of [...this.pending]) {
      this.print(traceId, isComplete(trace) ? 'complete' : 'shutdown');
    }
  }

  private printOldest(): void {
    const oldest = this.pending.keys().next();
    if (oldest.done !== true) this.print(oldest.value, 'buffer_full');
  }

  private print(traceId: string, reason: TracePrintReason): void {
    const trace = this.pending.get(traceId);
    if (trace === undefined) return;
    this.pending.delete(traceId);
    this.printed.delete(traceId);
    this.printed.add(traceId);
    if (this.printed.size > this.options.maxPrintedTraceIds) {
      const oldest = this.printed.values().next();
      if (oldest.done !== true) this.printed.delete(oldest.value);
    }
    let text: string;
    try {
      text = `${renderTraceTree(trace.spans, { color: this.options.color, reason, continued: trace.continued })}\n`;
    } catch (error) {
      this.options.onError?.('console', error);
      text = `trace ${escapeForTerminal(traceId)} · ${trace.spans.length} spans that could not be printed (see the log)\n\n`;
    }
    this.options.write(text);
    if (this.pending.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}

/** The root task is in (or was printed before) and every task's parent task is in. */
function isComplete(trace: PendingTrace): boolean {
  const ids = new Set(trace.spans.map((span) => span.spanContext().spanId));
  let root = trace.continued;
  for (const span of trace.spans) {
    if (isAttempt(span)) continue;
    if (isTaskRoot(span)) root = true;
    else if (!trace.continued) {
      const parent = span.parentSpanContext?.spanId;
      if (parent !== undefined && !ids.has(parent)) return false;
    }
  }
  return root;
}

/** Colours only for a terminal, and never with NO_COLOR set (https://no-color.org). */
export function useColor(
  stream: { isTTY?: boolean },
  env: Readonly<Record<string, string | undefined>>,
): boolean {
  return stream.isTTY === true && (env['NO_COLOR'] ?? '') === '';
}
