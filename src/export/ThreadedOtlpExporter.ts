import { Worker } from 'node:worker_threads';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import {
  OTLPExporterError,
  type OTLPExporterNodeConfigBase,
} from '@opentelemetry/otlp-exporter-base';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { type EncodedSpan, ProtobufSpanSerializer } from './ProtobufSpanSerializer.js';
import type { QueueExporter } from './QueueExporter.js';
import { workerScriptUrl } from '../shared/workerScriptUrl.js';
import type { SendReady, SendReply, SendRequest, SendThreadData } from './sendThreadMessages.js';

/** The component type the SDK's exporter reports in its `otel.sdk.exporter.*` self-metrics. */
const COMPONENT_TYPE = 'otlp_http_span_exporter';

/**
 * The OTLP/HTTP protobuf span exporter, with the network on a worker thread.
 *
 * Spans are encoded here when the export queue takes them (`hold`; ProtobufSpanSerializer: the
 * SDK's bytes, faster), so they wait for their export as bytes, not as objects. A request is
 * assembled from them, and its body moves to a worker thread without a copy, where the SDK's own
 * OTLP/HTTP delegate sends it (otlpSendThread.ts): the same headers, gzip, timeouts, retries and partial-success handling as
 * `@opentelemetry/exporter-trace-otlp-proto`. Writing a batch to the socket, compressing it and
 * handling the response were a visible share of the profile under load (bench/README.md),
 * all on the thread that must keep reading the broker; now they run beside it.
 *
 * If the thread dies, the exports it held fail (SpanExportQueue retries them) and the next export
 * starts a new thread.
 */
export class ThreadedOtlpExporter implements QueueExporter<EncodedSpan> {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly pending = new Map<number, (result: ExportResult) => void>();
  private idle: (() => void)[] = [];
  private stopped = false;
  /** Resolves once the current thread said it is ready (or failed: exports then fail and retry). */
  private threadReady: Promise<void> = Promise.resolve();

  constructor(
    private readonly config: OTLPExporterNodeConfigBase,
    /** Encodes spans and assembles the request body; anything but the default is for tests. */
    private readonly serializer: Pick<
      ProtobufSpanSerializer,
      'encode' | 'serializeEncoded'
    > = new ProtobufSpanSerializer(),
    /** The compiled send thread (dist/export/otlpSendThread.js). */
    private readonly threadUrl: URL = workerScriptUrl('otlpSendThread.js', import.meta.url),
  ) {
    // Started now: loading the SDK's exporter in a new thread takes a few hundred milliseconds,
    // which would otherwise delay the first spans.
    this.thread();
  }

  /** Encoded now; undefined when the serializer leaves the span out (it counted it). */
  hold(span: ReadableSpan): EncodedSpan | undefined {
    return this.serializer.encode(span);
  }

  /** Resolves once the send thread takes exports, so the bridge starts consuming only then. */
  ready(): Promise<void> {
    return this.threadReady;
  }

  export(spans: EncodedSpan[], resultCallback: (result: ExportResult) => void): void {
    if (this.stopped) {
      resultCallback({ code: ExportResultCode.FAILED, error: new Error('exporter is shut down') });
      return;
    }
    let bytes: Uint8Array;
    try {
      bytes = this.serializer.serializeEncoded(spans);
    } catch (error) {
      resultCallback({ code: ExportResultCode.FAILED, error: error as Error });
      return;
    }
    // Nothing to send. Answered after this call returns, as an export that was sent is:
    // SpanExportQueue registers the export only once `export` returned.
    if (spans.length === 0) {
      queueMicrotask(() => resultCallback({ code: ExportResultCode.SUCCESS }));
      return;
    }
    // The body's buffer is moved to the thread, not copied. Node's shared pool of small Buffers
    // is marked untransferable, and a transfer-list entry so marked is copied instead of moved,
    // so a pooled body never detaches its neighbours (worker_threads `markAsUntransferable`,
    // https://nodejs.org/api/worker_threads.html#worker_threadsmarkasuntransferableobject).
    const id = this.nextId++;
    this.pending.set(id, resultCallback);
    const request: SendRequest = { type: 'export', id, bytes, spans: spans.length };
    const thread = this.thread();
    // While an export is out, the thread keeps the process alive (a stop waits for it).
    if (this.pending.size === 1) thread.ref();
    thread.postMessage(request, [bytes.buffer as ArrayBuffer]);
  }

  /** Resolves once every export handed to the thread has its outcome. */
  forceFlush(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  async shutdown(): Promise<void> {
    await this.forceFlush();
    this.stopped = true;
    const worker = this.worker;
    this.worker = undefined;
    if (worker === undefined) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ type: 'shutdown' } satisfies SendRequest);
    // The thread closes its port when the SDK exporter has shut down; don't wait for ever.
    const timer = setTimeout(() => void worker.terminate(), 2000);
    await exited;
    clearTimeout(timer);
  }

  private thread(): Worker {
    if (this.worker !== undefined) return this.worker;
    const data: SendThreadData = {
      config: { ...this.config },
      componentType: COMPONENT_TYPE,
    };
    const worker = new Worker(this.threadUrl, { workerData: data });
    // The bridge decides when to stop; an idle send thread must not keep it alive.
    worker.unref();
    let ready: () => void = () => undefined;
    this.threadReady = new Promise<void>((resolve) => (ready = resolve));
    worker.on('message', (reply: SendReply | SendReady) => {
      if ('type' in reply) ready();
      else this.settle(reply);
    });
    worker.on('error', (error) => {
      ready();
      this.failAll(worker, error);
    });
    worker.on('exit', (code) => {
      ready();
      this.failAll(worker, new Error(`the OTLP send thread exited (code ${code})`));
    });
    this.worker = worker;
    return worker;
  }

  private settle(reply: SendReply): void {
    const callback = this.pending.get(reply.id);
    if (callback === undefined) return;
    this.pending.delete(reply.id);
    const error =
      reply.error === undefined
        ? undefined
        : Object.assign(
            new OTLPExporterError(reply.error.message, reply.error.status, reply.error.data),
            {
              name: reply.error.name,
            },
          );
    callback({ code: reply.code, error });
    this.checkIdle();
  }

  private failAll(worker: Worker, error: Error): void {
    if (this.worker === worker) this.worker = undefined;
    const callbacks = [...this.pending.values()];
    this.pending.clear();
    for (const callback of callbacks) {
      callback({
        code: ExportResultCode.FAILED,
        error: new Error(`the OTLP send thread failed: ${error.message}`),
      });
    }
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.pending.size > 0) return;
    this.worker?.unref();
    const waiting = this.idle;
    this.idle = [];
    for (const resolve of waiting) resolve();
  }
}
