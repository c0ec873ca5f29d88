import { OTLPMetricExporterBase } from '@opentelemetry/exporter-metrics-otlp-http';
import type { OTLPMetricExporterOptions } from '@opentelemetry/exporter-metrics-otlp-http';
import {
  convertLegacyHttpOptions,
  createOtlpHttpExportDelegate,
} from '@opentelemetry/otlp-exporter-base/node-http';
import {
  type IExportMetricsServiceResponse,
  type ISerializer,
  JsonMetricsSerializer,
  MetricsExporterMetricsHelper,
  ProtobufMetricsSerializer,
} from '@opentelemetry/otlp-transformer';
import { DataPointType, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { ExemplarHistogramDataPoint, HistogramExemplar } from './SeriesHistogram.js';

/**
 * The OTLP/HTTP metric exporter of the SDK (same delegate: headers, compression, timeouts,
 * retries), with the histograms' exemplars added to the request.
 *
 * The SDK's serializers (@opentelemetry/otlp-transformer, protobuf and JSON) write no
 * exemplars: sdk-metrics data points have none. So each request is first serialised by the SDK,
 * unchanged, and the exemplars of the bridge's own histograms (SeriesHistogram) are then added to
 * their HistogramDataPoint (field 8, `repeated Exemplar exemplars`), which the SDK leaves empty.
 * https://github.com/open-telemetry/opentelemetry-proto/blob/main/opentelemetry/proto/metrics/v1/metrics.proto
 */
export function createExemplarMetricExporter(
  protocol: 'http/protobuf' | 'http/json',
  config: OTLPMetricExporterOptions,
): OTLPMetricExporterBase {
  const json = protocol === 'http/json';
  const delegate = createOtlpHttpExportDelegate(
    convertLegacyHttpOptions(config, 'METRICS', 'v1/metrics', {
      'Content-Type': json ? 'application/json' : 'application/x-protobuf',
    }),
    json ? jsonWithExemplars : protobufWithExemplars,
    // As the SDK's own OTLPMetricExporter (exporter-metrics-otlp-proto semconv.ts).
    'otlp_http_metric_exporter',
    MetricsExporterMetricsHelper,
    undefined,
  );
  return new OTLPMetricExporterBase(delegate, config);
}

type Serializer = ISerializer<ResourceMetrics, IExportMetricsServiceResponse>;

/** The exemplars of every histogram data point of the request, in the SDK's serialising order. */
function exemplarsInOrder(request: ResourceMetrics): (readonly HistogramExemplar[])[] {
  const out: (readonly HistogramExemplar[])[] = [];
  for (const scope of request.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (metric.dataPointType !== DataPointType.HISTOGRAM) continue;
      for (const point of metric.dataPoints as ExemplarHistogramDataPoint[])
        out.push(point.exemplars ?? []);
    }
  }
  return out;
}

export const jsonWithExemplars: Serializer = {
  serializeRequest(request) {
    const bytes = JsonMetricsSerializer.serializeRequest(request);
    const exemplars = exemplarsInOrder(request);
    if (bytes === undefined || !exemplars.some((list) => list.length > 0)) return bytes;
    const message = JSON.parse(new TextDecoder().decode(bytes)) as JsonRequest;
    const points = (message.resourceMetrics ?? []).flatMap((resource) =>
      (resource.scopeMetrics ?? []).flatMap((scope) =>
        (scope.metrics ?? []).flatMap((metric) => metric.histogram?.dataPoints ?? []),
      ),
    );
    // Never a mismatched exemplar: if the SDK's order ever differs, send none.
    if (points.length !== exemplars.length) return bytes;
    points.forEach((point, i) => {
      const list = exemplars[i] ?? [];
      // OTLP/JSON: ids in hex, 64-bit integers as decimal strings.
      // https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding
      if (list.length > 0)
        point.exemplars = list.map((e) => ({
          timeUnixNano: (BigInt(Math.round(e.timeMs)) * 1_000_000n).toString(),
          asDouble: e.value,
          traceId: e.traceId,
          spanId: e.spanId,
        }));
    });
    return new TextEncoder().encode(JSON.stringify(message));
  },
  deserializeResponse: (data) => JsonMetricsSerializer.deserializeResponse(data),
};

interface JsonRequest {
  resourceMetrics?: Array<{
    scopeMetrics?: Array<{
      metrics?: Array<{ histogram?: { dataPoints?: Array<Record<string, unknown>> } }>;
    }>;
  }>;
}

export const protobufWithExemplars: Serializer = {
  serializeRequest(request) {
    const bytes = ProtobufMetricsSerializer.serializeRequest(request);
    const exemplars = exemplarsInOrder(request);
    if (bytes === undefined || !exemplars.some((list) => list.length > 0)) return bytes;
    let index = 0;
    const out = rewriteMessage(bytes, PATH_TO_HISTOGRAM_POINT, () => {
      const list = exemplars[index++] ?? [];
      return list.map(encodeExemplar);
    });
    return index === exemplars.length ? out : bytes;
  },
  deserializeResponse: (data) => ProtobufMetricsSerializer.deserializeResponse(data),
};

/**
 * Field numbers from ExportMetricsServiceRequest down to HistogramDataPoint: resource_metrics (1)
 * -> scope_metrics (2) -> metrics (2) -> histogram (9) -> data_points (1).
 */
const PATH_TO_HISTOGRAM_POINT = [1, 2, 2, 9, 1];
const EXEMPLARS_FIELD = 8;

/**
 * Copies a protobuf message, descending into the length-delimited fields on `path`; at the end of
 * the path, the submessages `append` returns are added to the message as field 8. Every other
 * byte is copied as the SDK wrote it; lengths on the path are rewritten.
 */
function rewriteMessage(
  bytes: Uint8Array,
  path: readonly number[],
  append: () => Uint8Array[],
): Uint8Array {
  if (path.length === 0) {
    const extra = append();
    if (extra.length === 0) return bytes;
    return concat([bytes, ...extra.map((m) => lengthDelimited(EXEMPLARS_FIELD, m))]);
  }
  const [field, ...rest] = path;
  const parts: Uint8Array[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const start = pos;
    const [tag, afterTag] = readVarint(bytes, pos);
    pos = afterTag;
    const wireType = tag & 7;
    if (wireType === 2) {
      const [length, afterLength] = readVarint(bytes, pos);
      const end = afterLength + length;
      if (tag >>> 3 === field) {
        const inner = rewriteMessage(bytes.subarray(afterLength, end), rest, append);
        parts.push(lengthDelimited(field, inner));
      } else {
        parts.push(bytes.subarray(start, end));
      }
      pos = end;
    } else {
      pos = skipScalar(bytes, pos, wireType);
      parts.push(bytes.subarray(start, pos));
    }
  }
  return concat(parts);
}

function skipScalar(bytes: Uint8Array, pos: number, wireType: number): number {
  switch (wireType) {
    case 0:
      return readVarint(bytes, pos)[1];
    case 1:
      return pos + 8;
    case 5:
      return pos + 4;
    default:
      throw new Error(`unexpected protobuf wire type ${wireType}`);
  }
}

/** Exemplar: time_unix_nano (2, fixed64), as_double (3), span_id (4), trace_id (5). */
function encodeExemplar(exemplar: HistogramExemplar): Uint8Array {
  const fixed = new Uint8Array(18);
  const view = new DataView(fixed.buffer);
  fixed[0] = (2 << 3) | 1;
  view.setBigUint64(1, BigInt(Math.round(exemplar.timeMs)) * 1_000_000n, true);
  fixed[9] = (3 << 3) | 1;
  view.setFloat64(10, exemplar.value, true);
  return concat([
    fixed,
    lengthDelimited(4, Buffer.from(exemplar.spanId, 'hex')),
    lengthDelimited(5, Buffer.from(exemplar.traceId, 'hex')),
  ]);
}

function lengthDelimited(field: number, body: Uint8Array): Uint8Array {
  return concat([varint((field << 3) | 2), varint(body.length), body]);
}

function varint(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Uint8Array.from(out);
}

function readVarint(bytes: Uint8Array, start: number): [number, number] {
  let value = 0;
  let factor = 1;
  let pos = start;
  for (;;) {
    const byte = bytes[pos++];
    if (byte === undefined) throw new Error('truncated protobuf varint');
    value += (byte & 0x7f) * factor;
    if (byte < 0x80) return [value, pos];
    factor *= 128;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}
