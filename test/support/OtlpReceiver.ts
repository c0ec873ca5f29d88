// A real OTLP/HTTP receiver for tests: it decodes what an exporter actually put on the wire
// (protobuf or JSON, optionally gzipped) instead of trusting an in-memory exporter.
// Protocol: https://opentelemetry.io/docs/specs/otlp/#otlphttp
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs';

export interface ReceivedAttributes {
  [key: string]: unknown;
}

/**
 * OTLP's enum values, as a ReceivedSpan carries them. Not `SpanKind` from @opentelemetry/api: it
 * numbers the kinds from INTERNAL = 0 (OTLP has UNSPECIFIED = 0), so its CONSUMER is 4.
 */
export const SPAN_KIND_INTERNAL = 1;
export const SPAN_KIND_CONSUMER = 5;
export const STATUS_CODE_ERROR = 2;

export interface ReceivedSpan {
  /** 32 lowercase hex characters. */
  traceId: string;
  /** 16 lowercase hex characters. */
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  /** W3C `tracestate` of the span ('' when none). */
  traceState: string;
  /** Span.flags: W3C trace flags in the low 8 bits (0x01 sampled, 0x02 random trace id). */
  flags: number;
  name: string;
  /** OTLP SpanKind: 0 UNSPECIFIED, 1 INTERNAL, 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER. */
  kind: number;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: ReceivedAttributes;
  events: { name: string; timeUnixNano: bigint; attributes: ReceivedAttributes }[];
  links: { traceId: string; spanId: string; attributes: ReceivedAttributes }[];
  /** OTLP StatusCode: 0 UNSET, 1 OK, 2 ERROR. */
  status: { code: number; message: string };
  resource: ReceivedAttributes;
  scope: { name: string; version: string };
}

/** The task spans (kind CONSUMER) of one Celery task: exactly one when all went well. */
export function taskSpansOf(spans: readonly ReceivedSpan[], taskId: string): ReceivedSpan[] {
  return spans.filter(
    (s) => s.kind === SPAN_KIND_CONSUMER && s.attributes['celery.task.id'] === taskId,
  );
}

/** The ids of the Celery tasks that have a task span among `spans`. */
export function taskIdsWithSpans(spans: readonly ReceivedSpan[]): Set<unknown> {
  return new Set(
    spans.filter((s) => s.kind === SPAN_KIND_CONSUMER).map((s) => s.attributes['celery.task.id']),
  );
}

export interface ReceivedRequest {
  path: string;
  /** The HTTP status this receiver answered with. */
  status: number;
  /** Media type without parameters, lower-cased. */
  contentType: string;
  /** 'identity' when the header was absent. */
  contentEncoding: string;
  headers: IncomingHttpHeaders;
  spanCount: number;
}

const MAX_BODY_BYTES = 64 * 1024 * 1024;
const PROTOBUF = 'application/x-protobuf';
const JSON_TYPE = 'application/json';
const TRACES = '/v1/traces';
const COUNTED_ONLY = new Set(['/v1/metrics', '/v1/logs']);

const root = protobuf.loadSync(fileURLToPath(new URL('./otlp/trace.proto', import.meta.url)));
const ExportTraceServiceRequest = root.lookupType('otlp.ExportTraceServiceRequest');
const metricsRoot = protobuf.loadSync(
  fileURLToPath(new URL('./otlp/metrics.proto', import.meta.url)),
);
const ExportMetricsServiceRequest = metricsRoot.lookupType(
  'otlpmetrics.ExportMetricsServiceRequest',
);

/** A metric as it arrived over OTLP: its name, unit and kind (gauge, sum or histogram). */
export interface ReceivedMetric {
  name: string;
  unit: string;
  kind: 'gauge' | 'sum' | 'histogram' | 'other';
  /** A histogram's exemplars, all data points together (histograms only). */
  exemplars?: ReceivedExemplar[];
}

export interface ReceivedExemplar {
  traceId: string;
  spanId: string;
  value: number;
  timeUnixNano: bigint;
}

interface MetricsMessage {
  resourceMetrics?: Array<{
    resource?: { attributes?: unknown };
    scopeMetrics?: Array<{
      metrics?: Array<{
        name?: string;
        unit?: string;
        gauge?: unknown;
        sum?: unknown;
        histogram?: { dataPoints?: Array<{ exemplars?: unknown[] }> };
      }>;
    }>;
  }>;
}

function metricsMessage(body: Buffer, contentType: string): MetricsMessage {
  return contentType === JSON_TYPE
    ? (JSON.parse(body.toString('utf8')) as MetricsMessage)
    : ExportMetricsServiceRequest.toObject(ExportMetricsServiceRequest.decode(body), {
        defaults: false,
        longs: String,
      });
}

function serviceNameOf(resource: ReceivedAttributes): string {
  const name = resource['service.name'];
  return typeof name === 'string' ? name : '';
}

/** The resource attributes of each `service.name` in an OTLP metrics request. */
function metricResourcesOf(body: Buffer, contentType: string): Map<string, ReceivedAttributes> {
  const out = new Map<string, ReceivedAttributes>();
  for (const resource of metricsMessage(body, contentType).resourceMetrics ?? []) {
    const attrs = attributes(resource.resource?.attributes);
    out.set(serviceNameOf(attrs), attrs);
  }
  return out;
}

/**
 * Names, units and kinds of the metrics in an OTLP metrics request, protobuf or JSON, by the
 * `service.name` of their resource.
 */
function decodeMetrics(body: Buffer, contentType: string): Map<string, ReceivedMetric[]> {
  const message = metricsMessage(body, contentType);
  const byService = new Map<string, ReceivedMetric[]>();
  for (const resource of message.resourceMetrics ?? []) {
    const service = serviceNameOf(attributes(resource.resource?.attributes));
    const out = byService.get(service) ?? [];
    byService.set(service, out);
    for (const scope of resource.scopeMetrics ?? []) {
      for (const metric of scope.metrics ?? []) {
        const kind =
          metric.gauge !== undefined
            ? 'gauge'
            : metric.sum !== undefined
              ? 'sum'
              : metric.histogram !== undefined
                ? 'histogram'
                : 'other';
        const exemplars = (metric.histogram?.dataPoints ?? []).flatMap((point) =>
          list(point.exemplars).map((e) => ({
            traceId: hexId(obj(e)['traceId']),
            spanId: hexId(obj(e)['spanId']),
            value: Number(obj(e)['asDouble'] ?? 0),
            timeUnixNano: int64(obj(e)['timeUnixNano']),
          })),
        );
        const received: ReceivedMetric = { name: metric.name ?? '', unit: metric.unit ?? '', kind };
        if (kind === 'histogram') received.exemplars = exemplars;
        out.push(received);
      }
    }
  }
  return byService;
}
const SpanKind = root.lookupEnum('otlp.Span.SpanKind');
const StatusCode = root.lookupEnum('otlp.Status.StatusCode');

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

// Both decoders produce the same camelCase object tree (protobufjs `toObject` and OTLP/JSON use
// the same lowerCamelCase names), differing only in leaf encodings, which the helpers absorb.
type Loose = Record<string, unknown>;
const obj = (v: unknown): Loose =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Loose) : {};
const list = (v: unknown): unknown[] => (Array.isArray(v) ? (v as unknown[]) : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
// OTLP/JSON deviates from proto3 JSON here: trace/span ids are hex, not base64.
// https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding
const hexId = (v: unknown): string =>
  v instanceof Uint8Array ? Buffer.from(v).toString('hex') : str(v).toLowerCase();
// int64/fixed64: decimal strings from protobufjs (`longs: String`); OTLP/JSON may use either a
// string or a plain number.
const int64 = (v: unknown): bigint =>
  typeof v === 'string' || typeof v === 'number' ? BigInt(v) : 0n;
// OTLP/JSON requires integer enums; accept names too, as generic proto3 JSON would.
const enumValue = (v: unknown, e: protobuf.Enum): number =>
  typeof v === 'number' ? v : typeof v === 'string' ? (e.values[v] ?? Number(v)) : 0;

function anyValue(v: unknown): unknown {
  const a = obj(v);
  if ('stringValue' in a) return str(a.stringValue);
  if ('boolValue' in a) return a.boolValue === true;
  if ('intValue' in a) {
    const n = int64(a.intValue);
    const safe = n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER);
    return safe ? Number(n) : n;
  }
  // Number() also covers proto3 JSON's "NaN" / "Infinity" / "-Infinity" spellings.
  if ('doubleValue' in a) return Number(a.doubleValue);
  if ('arrayValue' in a) return list(obj(a.arrayValue).values).map(anyValue);
  if ('kvlistValue' in a) return attributes(obj(a.kvlistValue).values);
  if ('bytesValue' in a) {
    const b = a.bytesValue;
    return new Uint8Array(b instanceof Uint8Array ? b : Buffer.from(str(b), 'base64'));
  }
  return undefined; // an empty AnyValue
}

function attributes(kvs: unknown): ReceivedAttributes {
  const out: ReceivedAttributes = {};
  for (const kv of list(kvs)) out[str(obj(kv).key)] = anyValue(obj(kv).value);
  return out;
}

function normalise(request: unknown): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const rs of list(obj(request).resourceSpans)) {
    const resource = attributes(obj(obj(rs).resource).attributes);
    for (const ss of list(obj(rs).scopeSpans)) {
      const scope = obj(obj(ss).scope);
      for (const raw of list(obj(ss).spans)) {
        const s = obj(raw);
        const status = obj(s.status);
        spans.push({
          traceId: hexId(s.traceId),
          spanId: hexId(s.spanId),
          parentSpanId: hexId(s.parentSpanId),
          traceState: s.traceState === undefined ? '' : str(s.traceState),
          flags: s.flags === undefined ? 0 : Number(s.flags),
          name: str(s.name),
          kind: enumValue(s.kind, SpanKind),
          startTimeUnixNano: int64(s.startTimeUnixNano),
          endTimeUnixNano: int64(s.endTimeUnixNano),
          attributes: attributes(s.attributes),
          events: list(s.events).map((e) => ({
            name: str(obj(e).name),
            timeUnixNano: int64(obj(e).timeUnixNano),
            attributes: attributes(obj(e).attributes),
          })),
          links: list(s.links).map((l) => ({
            traceId: hexId(obj(l).traceId),
            spanId: hexId(obj(l).spanId),
            attributes: attributes(obj(l).attributes),
          })),
          status: { code: enumValue(status.code, StatusCode), message: str(status.message) },
          resource,
          scope: { name: str(scope.name), version: str(scope.version) },
        });
      }
    }
  }
  return spans;
}

/** An OTLP/protobuf trace request's spans, and how many ResourceSpans groups it has. */
export function decodeTraceRequest(body: Uint8Array): { groups: number; spans: ReceivedSpan[] } {
  const message = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), {
    longs: String,
    enums: Number,
  });
  return { groups: list(obj(message).resourceSpans).length, spans: normalise(message) };
}

function decode(body: Buffer, contentType: string): ReceivedSpan[] {
  if (contentType === JSON_TYPE) return normalise(JSON.parse(body.toString('utf8')));
  const message = ExportTraceServiceRequest.decode(body);
  return normalise(ExportTraceServiceRequest.toObject(message, { longs: String, enums: Number }));
}

async function readBody(req: IncomingMessage, contentEncoding: string): Promise<Buffer> {
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) {
    throw new HttpError(413, `content-length ${req.headers['content-length']} exceeds limit`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    // Keep draining so the client sees the 413 rather than a reset connection.
    if (size <= MAX_BODY_BYTES) chunks.push(chunk);
  }
  if (size > MAX_BODY_BYTES) throw new HttpError(413, `body of ${size} bytes exceeds limit`);
  const body = Buffer.concat(chunks);
  if (contentEncoding !== 'gzip') return body;
  try {
    return gunzipSync(body, { maxOutputLength: MAX_BODY_BYTES });
  } catch (err) {
    const tooLarge = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
    throw new HttpError(tooLarge ? 413 : 400, `gunzip failed: ${String(err)}`);
  }
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly requests: ReceivedRequest[] = [];
  readonly errors: string[] = [];
  private readonly server: Server;
  private status: number;

  private constructor(status: number) {
    this.status = status;
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  /** `port`: a fixed port, e.g. to bring a collector back where it was after an outage. */
  static async start(options: { status?: number; port?: number } = {}): Promise<OtlpReceiver> {
    const receiver = new OtlpReceiver(options.status ?? 200);
    await new Promise<void>((resolve, reject) => {
      receiver.server.once('error', reject);
      receiver.server.listen(options.port ?? 0, '127.0.0.1', resolve);
    });
    return receiver;
  }

  /** Base URL, suitable for OTEL_EXPORTER_OTLP_ENDPOINT. */
  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Signal URL, suitable for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or an exporter's `url`. */
  get tracesUrl(): string {
    return `${this.url}${TRACES}`;
  }

  /**
   * The metrics of the latest OTLP metrics request of each resource (cumulative: the latest has
   * them all), by the resource's `service.name`. The bridge pushes its own health metrics and
   * the Celery metrics under different resources, in separate requests.
   */
  readonly metricsByService = new Map<string, ReceivedMetric[]>();
  /** Every resource's latest metrics together. */
  get metrics(): ReceivedMetric[] {
    return [...this.metricsByService.values()].flat();
  }
  /** Resource attributes of the latest metrics request of each `service.name`. */
  readonly metricResources = new Map<string, ReceivedAttributes>();

  get metricsRequests(): number {
    return this.requests.filter((r) => r.path === '/v1/metrics').length;
  }

  get logsRequests(): number {
    return this.requests.filter((r) => r.path === '/v1/logs').length;
  }

  /** Answer trace exports with this status (e.g. 503 to exercise retries); spans are not kept. */
  setStatus(code: number): void {
    this.status = code;
  }

  /**
   * A slow collector: accepted trace requests are answered no faster than `spansPerSecond`
   * overall (each waits its turn, as a loaded backend's queue does); undefined lifts the limit.
   */
  limitSpansPerSecond(spansPerSecond: number | undefined): void {
    this.spansPerSecond = spansPerSecond;
  }

  private spansPerSecond: number | undefined;
  /** When the rate limit lets the next request be answered. */
  private nextAnswerAtMs = 0;

  private async throttle(spans: number): Promise<void> {
    if (this.spansPerSecond === undefined || spans === 0) return;
    const now = Date.now();
    const answerAt = Math.max(now, this.nextAnswerAtMs) + (spans * 1000) / this.spansPerSecond;
    this.nextAnswerAtMs = answerAt;
    await sleep(answerAt - now);
  }

  async waitForSpans(
    predicate: (spans: ReceivedSpan[]) => boolean,
    timeoutMs = 30_000,
  ): Promise<ReceivedSpan[]> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.spans)) {
      if (Date.now() >= deadline) throw new Error(this.describeTimeout(predicate, timeoutMs));
      await sleep(50);
    }
    return [...this.spans];
  }

  async close(): Promise<void> {
    // Exporters keep connections alive; without closeAllConnections() close() would wait for them.
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private describeTimeout(predicate: (spans: ReceivedSpan[]) => boolean, timeoutMs: number) {
    const listed = this.spans.slice(0, 50).map((s) => {
      const id = s.attributes['celery.task.id'];
      const shown = typeof id === 'string' ? id : inspect(id);
      return `  - ${s.name}${id === undefined ? '' : ` [celery.task.id=${shown}]`}`;
    });
    if (this.spans.length > 50) listed.push(`  … and ${this.spans.length - 50} more`);
    return [
      `Timed out after ${timeoutMs} ms waiting for spans matching: ${String(predicate).slice(0, 500)}`,
      `Received ${this.spans.length} span(s) in ${this.requests.length} request(s); ` +
        `errors: ${this.errors.length === 0 ? 'none' : this.errors.join('; ')}`,
      ...listed,
    ].join('\n');
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '').split('?')[0] ?? '';
    const contentType = ((req.headers['content-type'] ?? '').split(';')[0] ?? '')
      .trim()
      .toLowerCase();
    const contentEncoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    const record: ReceivedRequest = {
      path,
      status: 200,
      contentType,
      contentEncoding,
      headers: { ...req.headers },
      spanCount: 0,
    };
    this.requests.push(record);
    try {
      if (req.method !== 'POST' || (path !== TRACES && !COUNTED_ONLY.has(path))) {
        throw new HttpError(404, `unexpected ${req.method} ${req.url}`);
      }
      // OTLP/HTTP defines exactly these two encodings; anything else is a client bug worth seeing.
      if (contentType !== PROTOBUF && contentType !== JSON_TYPE) {
        throw new HttpError(415, `unsupported content-type '${contentType}'`);
      }
      if (contentEncoding !== 'gzip' && contentEncoding !== 'identity') {
        throw new HttpError(415, `unsupported content-encoding '${contentEncoding}'`);
      }
      const body = await readBody(req, contentEncoding);
      if (path === TRACES && this.status === 200) {
        let spans: ReceivedSpan[];
        try {
          spans = decode(body, contentType);
        } catch (err) {
          throw new HttpError(400, `cannot decode ${contentType} body: ${String(err)}`);
        }
        record.spanCount = spans.length;
        // Kept once answered: what the exporter sees accepted is what the test sees.
        await this.throttle(spans.length);
        for (const span of spans) this.spans.push(span); // no spread: huge batches overflow args
      } else if (path === '/v1/metrics') {
        try {
          for (const [service, metrics] of decodeMetrics(body, contentType)) {
            this.metricsByService.set(service, metrics);
          }
          for (const [service, resource] of metricResourcesOf(body, contentType)) {
            this.metricResources.set(service, resource);
          }
        } catch (err) {
          throw new HttpError(400, `cannot decode ${contentType} metrics body: ${String(err)}`);
        }
      }
      record.status = path === TRACES ? this.status : 200;
      // An empty Export*ServiceResponse: zero bytes in protobuf, `{}` in JSON.
      res.writeHead(record.status, { 'content-type': contentType });
      res.end(contentType === JSON_TYPE ? '{}' : '');
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof Error ? err.message : String(err);
      record.status = status;
      this.errors.push(`${req.method} ${path} → ${status}: ${message}`);
      if (!res.headersSent) res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(message);
      req.resume(); // discard any unread body
    }
  }
}
