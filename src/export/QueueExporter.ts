import type { ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';

/**
 * The exporter behind SpanExportQueue, which decides what the queue keeps of a span while it
 * waits for its export: the span itself, or (the OTLP/protobuf exporter) its encoding.
 *
 * Why: spans wait in the queue until the collector accepts them, typically longer than V8 keeps
 * objects in its young generation, so each waiting span object (with its attributes, events and
 * ids) was copied by scavenges and promoted to the old generation, which the bench measured as
 * a large share of the bridge's GC (bench/README.md). An encoded span is one small object and a
 * range of an off-heap buffer.
 */
export interface QueueExporter<T> {
  /**
   * What the queue keeps of `span`; undefined when it cannot be sent at all (the exporter
   * counted it as dropped, and the queue does not wait for it).
   */
  hold(span: ReadableSpan): T | undefined;
  /** Sends `items`; the callback is called once, with the outcome for all of them. */
  export(items: T[], resultCallback: (result: ExportResult) => void): void;
  shutdown(): Promise<void>;
  /** Resolves once the exporter can send (its thread started), when it has such a start. */
  ready?(): Promise<void>;
}

/** An SDK SpanExporter (OTLP/JSON, the console) behind the queue: it keeps the spans as they are. */
export function keepingSpans(exporter: SpanExporter): QueueExporter<ReadableSpan> {
  return {
    hold: (span) => span,
    export: (spans, resultCallback) => exporter.export(spans, resultCallback),
    shutdown: () => exporter.shutdown(),
  };
}
