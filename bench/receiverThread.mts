// The OTLP/HTTP receiver of the benchmark, on a worker thread of the bench process: it decodes
// every request down to each span and each attribute (protobufjs on the OTLP trace.proto that the
// tests use), as a collector must before it can accept a request, so its cost is on the machine as
// a real collector's would be; and it can play a slow collector (a rate in spans/s, enforced by
// refusing with 429 or by answering late). It posts what it accepted to the bench's main thread
// (bench/receiver.mts), which keeps the per-task figures.
// Protocol: https://opentelemetry.io/docs/specs/otlp/#otlphttp
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parentPort } from 'node:worker_threads';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import { ROOT } from './paths.mjs';
import type {
  ReceiverCommand,
  ReceiverEvent,
  SlowCollector,
  TaskSpanArrival,
} from './receiverMessages.mjs';

// A run-time read of the tests' copy of OTLP's trace.proto (the bench compiles alone, rootDir
// bench/, so it cannot import test/support).
const root = protobuf.loadSync(`${ROOT}test/support/otlp/trace.proto`);
const ExportTraceServiceRequest = root.lookupType('otlp.ExportTraceServiceRequest');
const SPAN_KIND_CONSUMER = 5;

interface AnyValue {
  /** protobufjs's virtual oneof property: the name of the field that is set. */
  value?: string;
  [field: string]: unknown;
}
interface KeyValue {
  key: string;
  value?: AnyValue;
}
interface Span {
  spanId: Uint8Array;
  kind: number;
  attributes: KeyValue[];
  status?: { code: number };
}
interface Request {
  resourceSpans: {
    resource?: { attributes: KeyValue[] };
    scopeSpans: { spans: Span[] }[];
  }[];
}

/** A request decoded the way a collector turns it into its own span model. */
interface Decoded {
  spans: number;
  attributes: number;
  tasks: TaskSpanArrival[];
}

const text = (v: unknown): string => (typeof v === 'string' ? v : '');

function value(v: AnyValue | undefined): unknown {
  const field = v?.value;
  if (v === undefined || field === undefined) return undefined;
  const raw = v[field];
  if (field === 'intValue') return typeof raw === 'number' ? raw : Number(String(raw));
  if (field === 'arrayValue') {
    return ((raw as { values?: AnyValue[] }).values ?? []).map((item) => value(item));
  }
  if (field === 'kvlistValue') return attributes((raw as { values?: KeyValue[] }).values ?? []);
  return raw;
}

function attributes(list: KeyValue[]): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const kv of list) out.set(kv.key, value(kv.value));
  return out;
}

function decodeProtobuf(body: Buffer): Decoded {
  const request = ExportTraceServiceRequest.decode(body) as unknown as Request;
  const out: Decoded = { spans: 0, attributes: 0, tasks: [] };
  for (const resourceSpans of request.resourceSpans) {
    out.attributes += attributes(resourceSpans.resource?.attributes ?? []).size;
    for (const scopeSpans of resourceSpans.scopeSpans) {
      for (const span of scopeSpans.spans) {
        out.spans++;
        let id: unknown;
        let state: unknown;
        let incomplete = false;
        for (const kv of span.attributes) {
          // Every value converted, as a collector turns it into its own model.
          const converted = value(kv.value);
          out.attributes++;
          if (kv.key === 'celery.task.id') id = converted;
          else if (kv.key === 'celery.task.state') state = converted;
          else if (kv.key === 'celery.task.incomplete') incomplete = true;
        }
        if (span.kind !== SPAN_KIND_CONSUMER || typeof id !== 'string') continue;
        out.tasks.push([id, text(state), incomplete, Buffer.from(span.spanId).toString('hex')]);
      }
    }
  }
  return out;
}

function decodeJson(body: Buffer): Decoded {
  interface JsonKeyValue {
    key: string;
    value: Record<string, unknown>;
  }
  interface JsonSpan {
    spanId?: string;
    kind?: number;
    attributes?: JsonKeyValue[];
  }
  const parsed = JSON.parse(body.toString('utf8')) as {
    resourceSpans?: {
      resource?: { attributes?: JsonKeyValue[] };
      scopeSpans?: { spans?: JsonSpan[] }[];
    }[];
  };
  const out: Decoded = { spans: 0, attributes: 0, tasks: [] };
  for (const resourceSpans of parsed.resourceSpans ?? []) {
    out.attributes += resourceSpans.resource?.attributes?.length ?? 0;
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      for (const span of scopeSpans.spans ?? []) {
        out.spans++;
        const attrs = new Map<string, unknown>();
        for (const kv of span.attributes ?? []) attrs.set(kv.key, Object.values(kv.value)[0]);
        out.attributes += attrs.size;
        const id = attrs.get('celery.task.id');
        if (span.kind !== SPAN_KIND_CONSUMER || typeof id !== 'string') continue;
        out.tasks.push([
          id,
          text(attrs.get('celery.task.state')),
          attrs.has('celery.task.incomplete'),
          span.spanId ?? '',
        ]);
      }
    }
  }
  return out;
}

const port = parentPort;
if (port === null) throw new Error('receiverThread.mjs runs as a worker thread');
let epoch = 0;
let slow: SlowCollector | undefined;
let latencyMs = 0;
/**
 * Refuse mode: a token bucket holding 100 ms of spans (a rate limiter with a small burst, as
 * Tempo's or a gateway's; at least one request of any size gets through when it is full).
 */
const BUCKET_SECONDS = 0.1;
let tokens = 0;
let refilledAt = Date.now();
/** Delay mode: when the collector is free again (it works through requests one after another). */
let busyUntil = 0;

const post = (event: ReceiverEvent): void => port.postMessage(event);

function admit(spans: number, now: number): { status: number; atMs: number } {
  if (slow === undefined) return { status: 200, atMs: now };
  if (slow.mode === 'delay') {
    busyUntil = Math.max(now, busyUntil) + (spans * 1000) / slow.spansPerSecond;
    return { status: 200, atMs: busyUntil };
  }
  tokens = Math.min(
    slow.spansPerSecond,
    tokens + ((now - refilledAt) * slow.spansPerSecond) / 1000,
  );
  refilledAt = now;
  // A request larger than the bucket is taken when the bucket is full, so it is never refused
  // for ever.
  if (tokens >= Math.min(spans, slow.spansPerSecond)) {
    tokens -= spans;
    return { status: 200, atMs: now };
  }
  return { status: slow.refuseStatus, atMs: now };
}

function answer(res: ServerResponse, status: number, json: boolean): void {
  // An empty ExportTraceServiceResponse: zero bytes in protobuf, `{}` in JSON.
  res.writeHead(status, { 'content-type': json ? 'application/json' : 'application/x-protobuf' });
  res.end(json ? '{}' : undefined);
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const requestEpoch = epoch;
    const json = (req.headers['content-type'] ?? '').startsWith('application/json');
    if (req.url?.endsWith('/v1/traces') !== true) {
      post({ type: 'other', epoch: requestEpoch });
      answer(res, 200, json);
      return;
    }
    let decoded: Decoded;
    const started = performance.now();
    try {
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      decoded = json ? decodeJson(body) : decodeProtobuf(body);
    } catch (error) {
      post({ type: 'bad', epoch: requestEpoch, error: String(error) });
      answer(res, 400, json);
      return;
    }
    const decodeMs = performance.now() - started;
    const { status, atMs } = admit(decoded.spans, Date.now());
    if (status !== 200) {
      post({ type: 'refused', epoch: requestEpoch, spans: decoded.spans, status, decodeMs });
      answer(res, status, json);
      return;
    }
    const accept = (): void => {
      // Accepted when the answer goes out: that is when the exporter knows its spans are safe.
      const at = Date.now();
      post({ type: 'accepted', epoch: requestEpoch, at, decodeMs, ...decoded });
      answer(res, 200, json);
    };
    const wait = atMs + latencyMs - Date.now();
    if (wait > 0) setTimeout(accept, wait);
    else accept();
  });
}

/**
 * Decodes a request shaped like the bridge's a few times before listening, so the first run is not
 * measured against a cold decoder (protobufjs's generated code and V8's JIT take a few thousand
 * spans to warm up).
 */
function warmUp(): void {
  const attribute = (key: string, v: Record<string, unknown>): Record<string, unknown> => ({
    key,
    value: v,
  });
  const span = (i: number): Record<string, unknown> => ({
    traceId: Buffer.alloc(16, i),
    spanId: Buffer.alloc(8, i),
    name: 'proj.add',
    kind: SPAN_KIND_CONSUMER,
    startTimeUnixNano: 1,
    endTimeUnixNano: 2,
    attributes: [
      attribute('celery.task.id', {
        stringValue: `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`,
      }),
      attribute('celery.task.name', { stringValue: 'proj.add' }),
      attribute('celery.task.state', { stringValue: 'SUCCESS' }),
      attribute('celery.task.retries', { intValue: 0 }),
      attribute('celery.task.attempts', { intValue: 1 }),
      attribute('celery.task.runtime', { doubleValue: 0.01 }),
      attribute('celery.worker.hostname', { stringValue: 'w1@bench' }),
      attribute('messaging.system', { stringValue: 'celery' }),
    ],
    status: { code: 1 },
  });
  const body = ExportTraceServiceRequest.encode(
    ExportTraceServiceRequest.fromObject({
      resourceSpans: [
        {
          resource: { attributes: [attribute('service.name', { stringValue: 'celery' })] },
          scopeSpans: [{ spans: Array.from({ length: 512 }, (_, i) => span(i)) }],
        },
      ],
    }),
  ).finish();
  for (let i = 0; i < 100; i++) decodeProtobuf(Buffer.from(body));
}

warmUp();
const server = createServer(handle);
// Many concurrent exports and slow answers: no request or keep-alive timeout of its own.
server.requestTimeout = 0;
server.keepAliveTimeout = 60_000;
port.on('message', (command: ReceiverCommand) => {
  if (command.type === 'configure') {
    epoch = command.epoch;
    slow = command.slow;
    latencyMs = command.latencyMs;
    tokens = (slow?.spansPerSecond ?? 0) * BUCKET_SECONDS;
    refilledAt = Date.now();
    busyUntil = 0;
  } else if (command.type === 'close') {
    server.closeAllConnections();
    server.close(() => port.close());
  }
});
server.listen(0, '127.0.0.1', () => {
  post({ type: 'listening', epoch, port: (server.address() as AddressInfo).port });
});
