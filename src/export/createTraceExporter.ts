import { OTLPTraceExporter as OtlpJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import {
  CompressionAlgorithm,
  type OTLPExporterNodeConfigBase,
} from '@opentelemetry/otlp-exporter-base';
import type { OtlpTraceOptions, TraceExporterOptions } from './ExportOptions.js';
import type { InternalErrorSink } from '../shared/guarded.js';
import { ConsoleTraceExporter, useColor } from './ConsoleTraceExporter.js';
import { ProtobufSpanSerializer, type SpanSerializerOptions } from './ProtobufSpanSerializer.js';
import { ThreadedOtlpExporter } from './ThreadedOtlpExporter.js';
import { keepingSpans, type QueueExporter } from './QueueExporter.js';

/**
 * The OTLP/HTTP trace exporter for the configured protocol. Every setting is passed explicitly
 * (parseConfig already read the OTEL_EXPORTER_OTLP_* variables with their standard precedence),
 * so what the bridge validated is what the exporter uses. The exporter retries 429/502/503/504
 * with backoff itself (otlp-exporter-base `RetryingTransport`).
 *
 * `http/protobuf` is the SDK's OTLPTraceExporter transport with the bridge's own serializer (the
 * same bytes for less than half the CPU, see ProtobufSpanSerializer), sending from a worker thread
 * (ThreadedOtlpExporter), which the export queue hands spans encoded as it takes them.
 */
export function createTraceExporter(
  options: OtlpTraceOptions,
  exporter: TraceExporterOptions = { kind: 'otlp', consoleQuietMs: 2000 },
  /** Console rendering that throws (a bug, or span data it cannot show) is reported here. */
  onInternalError?: InternalErrorSink,
  /** `http/protobuf`: spans too large or impossible to encode are left out alone, told here. */
  serializer: SpanSerializerOptions = {},
): QueueExporter<unknown> {
  if (exporter.kind === 'console') {
    // `--exporter console`: finished traces as trees on stdout (logs stay on stderr).
    return keepingSpans(
      new ConsoleTraceExporter({
        write: (text) => process.stdout.write(text),
        color: useColor(process.stdout, process.env),
        quietMs: exporter.consoleQuietMs,
        onError: onInternalError,
      }),
    );
  }
  const config: OTLPExporterNodeConfigBase = {
    url: options.url,
    headers: options.headers,
    compression:
      options.compression === 'gzip' ? CompressionAlgorithm.GZIP : CompressionAlgorithm.NONE,
    timeoutMillis: options.timeoutMs,
  };
  return options.protocol === 'http/json'
    ? keepingSpans(new OtlpJsonTraceExporter(config))
    : new ThreadedOtlpExporter(config, new ProtobufSpanSerializer(serializer));
}
