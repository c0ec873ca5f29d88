// Proves that OtlpReceiver decodes honestly: real SDK spans go through the real OTLP exporters
// (protobuf and JSON, plain and gzipped) over real HTTP, and every field must come back intact.
import { gzipSync } from 'node:zlib';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
  type HrTime,
} from '@opentelemetry/api';
import { OTLPTraceExporter as HttpJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { OtlpReceiver, type ReceivedSpan } from '../support/OtlpReceiver.js';

// Leading zero bytes catch hex encoders that drop padding.
const TRACE_ID = '00c0ffee00000000000000000000beef';
const PARENT_SPAN_ID = '00000000000000a1';
const CHILD_SPAN_ID = '0f000000000000b2';
const LINKED = {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  traceFlags: TraceFlags.SAMPLED,
};
// A float-seconds timestamp as Celery events carry it; the SDK takes (float) milliseconds.
const CELERY_TIMESTAMP = 1795736645.1673448;
const START_MS = CELERY_TIMESTAMP * 1000;
const START_NS = 1795736645167344800n;

// The exporters type `compression` as an enum from @opentelemetry/otlp-exporter-base, which is
// not a direct dependency; the enum's value is the string 'gzip'.
type Compression = NonNullable<ConstructorParameters<typeof ProtoTraceExporter>[0]>['compression'];
const GZIP = 'gzip' as Compression;

const toNanos = ([seconds, nanos]: HrTime): bigint =>
  BigInt(seconds) * 1_000_000_000n + BigInt(nanos);

/** Emits a PRODUCER parent and a CONSUMER child through `exporter`; returns what the SDK ended. */
async function emitSpans(exporter: SpanExporter): Promise<ReadableSpan[]> {
  const memory = new InMemorySpanExporter();
  const spanIds = [PARENT_SPAN_ID, CHILD_SPAN_ID];
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'otlp-receiver-test' }),
    idGenerator: { generateTraceId: () => TRACE_ID, generateSpanId: () => spanIds.shift()! },
    // Batch, so both spans travel in one request as they would from the bridge.
    spanProcessors: [new BatchSpanProcessor(exporter), new SimpleSpanProcessor(memory)],
  });
  const tracer = provider.getTracer('otlp-receiver-test-scope', '1.2.3');
  const parent = tracer.startSpan('celery.apply_async tasks.add', {
    kind: SpanKind.PRODUCER,
    startTime: START_MS,
    attributes: {
      'celery.task.id': 'b4ca8d5f-6a3c-4a0e-9d0b-3f5c1d2e7a90',
      'attr.empty': '',
      'attr.true': true,
      'attr.false': false,
      'attr.int': 42,
      'attr.zero': 0,
      'attr.negative': -7,
      'attr.int64': 2 ** 60,
      'attr.double': 3.25,
      'attr.strings': ['a', ''],
      'attr.numbers': [1, 2.5],
      'attr.bools': [true, false],
    },
  });
  const child = tracer.startSpan(
    'run tasks.add',
    {
      kind: SpanKind.CONSUMER,
      startTime: START_MS + 250,
      links: [{ context: LINKED, attributes: { 'link.reason': 'retry-of' } }],
    },
    trace.setSpan(ROOT_CONTEXT, parent),
  );
  child.addEvent('exception', { 'exception.type': 'ValueError', 'retry.count': 2 }, START_MS + 500);
  child.setStatus({ code: SpanStatusCode.ERROR, message: 'ValueError: boom' });
  child.end(START_MS + 750);
  parent.setStatus({ code: SpanStatusCode.OK });
  parent.end(START_MS + 1000);
  await provider.forceFlush();
  const finished = [...memory.getFinishedSpans()];
  await provider.shutdown();
  return finished;
}

const cases = [
  {
    name: 'protobuf',
    contentType: 'application/x-protobuf',
    contentEncoding: 'identity',
    exporter: (url: string) => new ProtoTraceExporter({ url }),
  },
  {
    name: 'protobuf+gzip',
    contentType: 'application/x-protobuf',
    contentEncoding: 'gzip',
    exporter: (url: string) => new ProtoTraceExporter({ url, compression: GZIP }),
  },
  {
    name: 'JSON',
    contentType: 'application/json',
    contentEncoding: 'identity',
    exporter: (url: string) => new HttpJsonTraceExporter({ url }),
  },
  {
    name: 'JSON+gzip',
    contentType: 'application/json',
    contentEncoding: 'gzip',
    exporter: (url: string) => new HttpJsonTraceExporter({ url, compression: GZIP }),
  },
];

describe.each(cases)('OtlpReceiver fed by the real $name exporter', (c) => {
  let receiver: OtlpReceiver;
  let sent: ReadableSpan[];
  let parent: ReceivedSpan;
  let child: ReceivedSpan;

  beforeAll(async () => {
    receiver = await OtlpReceiver.start();
    sent = await emitSpans(c.exporter(receiver.tracesUrl));
    const spans = await receiver.waitForSpans((s) => s.length >= 2, 10_000);
    parent = spans.find((s) => s.spanId === PARENT_SPAN_ID)!;
    child = spans.find((s) => s.spanId === CHILD_SPAN_ID)!;
  });
  afterAll(async () => {
    await receiver.close();
  });

  it('receives one request in the expected encoding and nothing else', () => {
    expect(receiver.errors).toEqual([]);
    expect(receiver.spans).toHaveLength(2);
    expect(receiver.requests).toHaveLength(1);
    expect(receiver.requests[0]).toMatchObject({
      path: '/v1/traces',
      status: 200,
      contentType: c.contentType,
      contentEncoding: c.contentEncoding,
      spanCount: 2,
    });
    expect(receiver.requests[0]?.headers['user-agent']).toMatch(/OTel-OTLP-Exporter-JavaScript/);
  });

  it('decodes ids, parentage, names and kinds', () => {
    expect(parent).toMatchObject({
      traceId: TRACE_ID,
      spanId: PARENT_SPAN_ID,
      parentSpanId: '',
      name: 'celery.apply_async tasks.add',
      kind: 4, // PRODUCER
    });
    expect(child).toMatchObject({
      traceId: TRACE_ID,
      spanId: CHILD_SPAN_ID,
      parentSpanId: PARENT_SPAN_ID,
      name: 'run tasks.add',
      kind: 5, // CONSUMER
    });
  });

  it('decodes fixed64 times to the exact nanoseconds the SDK recorded', () => {
    const byId = new Map(sent.map((s) => [s.spanContext().spanId, s]));
    for (const received of [parent, child]) {
      const original = byId.get(received.spanId)!;
      expect(received.startTimeUnixNano).toBe(toNanos(original.startTime));
      expect(received.endTimeUnixNano).toBe(toNanos(original.endTime));
    }
    // Float millis lose a little precision in the SDK; 1 µs is what Celery timestamps carry.
    const offBy = (ns: bigint, expected: bigint) => (ns > expected ? ns - expected : expected - ns);
    expect(offBy(parent.startTimeUnixNano, START_NS)).toBeLessThanOrEqual(1_000n);
    expect(offBy(parent.endTimeUnixNano, START_NS + 1_000_000_000n)).toBeLessThanOrEqual(1_000n);
    expect(offBy(child.events[0]!.timeUnixNano, START_NS + 500_000_000n)).toBeLessThanOrEqual(
      1_000n,
    );
  });

  it('decodes attributes of every type', () => {
    expect(parent.attributes).toStrictEqual({
      'celery.task.id': 'b4ca8d5f-6a3c-4a0e-9d0b-3f5c1d2e7a90',
      'attr.empty': '',
      'attr.true': true,
      'attr.false': false,
      'attr.int': 42,
      'attr.zero': 0,
      'attr.negative': -7,
      'attr.int64': 2n ** 60n, // beyond Number.MAX_SAFE_INTEGER, so a bigint
      'attr.double': 3.25,
      'attr.strings': ['a', ''],
      'attr.numbers': [1, 2.5],
      'attr.bools': [true, false],
    });
  });

  it('decodes events, links and status', () => {
    expect(child.events).toEqual([
      {
        name: 'exception',
        timeUnixNano: expect.any(BigInt) as unknown,
        attributes: { 'exception.type': 'ValueError', 'retry.count': 2 },
      },
    ]);
    expect(child.links).toEqual([
      { traceId: LINKED.traceId, spanId: LINKED.spanId, attributes: { 'link.reason': 'retry-of' } },
    ]);
    expect(child.status).toEqual({ code: 2, message: 'ValueError: boom' });
    expect(parent.status).toEqual({ code: 1, message: '' });
    expect(parent.events).toEqual([]);
    expect(parent.links).toEqual([]);
  });

  it('decodes resource and scope', () => {
    for (const span of [parent, child]) {
      expect(span.resource['service.name']).toBe('otlp-receiver-test');
      expect(span.scope).toEqual({ name: 'otlp-receiver-test-scope', version: '1.2.3' });
    }
  });
});

describe('OtlpReceiver edge cases', () => {
  let receiver: OtlpReceiver;
  beforeEach(async () => {
    receiver = await OtlpReceiver.start();
  });
  afterEach(async () => {
    await receiver.close();
  });

  const post = (path: string, contentType: string, body: string | Buffer, encoding?: string) =>
    fetch(`${receiver.url}${path}`, {
      method: 'POST',
      headers: {
        'content-type': contentType,
        ...(encoding ? { 'content-encoding': encoding } : {}),
      },
      body,
    });

  it('answers 415 to a non-OTLP content type and records an error', async () => {
    const res = await post('/v1/traces', 'text/plain', 'hello');
    expect(res.status).toBe(415);
    expect(receiver.errors).toEqual([
      expect.stringContaining("unsupported content-type 'text/plain'"),
    ]);
    expect(receiver.spans).toEqual([]);
  });

  it('accepts hand-written OTLP/JSON with int64 as strings or numbers and upper-case hex', async () => {
    const request = {
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: 'svc' } }] },
          scopeSpans: [
            {
              scope: { name: 'scope' },
              spans: [
                {
                  traceId: TRACE_ID.toUpperCase(),
                  spanId: PARENT_SPAN_ID,
                  name: 'hand-made',
                  kind: 3,
                  startTimeUnixNano: START_NS.toString(),
                  endTimeUnixNano: 1795736646000000000,
                  attributes: [
                    { key: 'unsafe', value: { intValue: '9007199254740993' } },
                    { key: 'safe', value: { intValue: '-12' } },
                    { key: 'nan', value: { doubleValue: 'NaN' } },
                  ],
                  status: {},
                },
              ],
            },
          ],
        },
      ],
    };
    const res = await post(
      '/v1/traces',
      'application/json',
      gzipSync(JSON.stringify(request)),
      'gzip',
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.text()).toBe('{}');
    expect(receiver.spans).toEqual([
      {
        traceId: TRACE_ID,
        spanId: PARENT_SPAN_ID,
        parentSpanId: '',
        traceState: '',
        flags: 0,
        name: 'hand-made',
        kind: 3,
        startTimeUnixNano: START_NS,
        endTimeUnixNano: 1795736646000000000n,
        attributes: { unsafe: 9007199254740993n, safe: -12, nan: NaN },
        events: [],
        links: [],
        status: { code: 0, message: '' },
        resource: { 'service.name': 'svc' },
        scope: { name: 'scope', version: '' },
      },
    ]);
  });

  it('answers with the status set by setStatus and keeps no spans meanwhile', async () => {
    receiver.setStatus(503);
    const body = JSON.stringify({ resourceSpans: [] });
    expect((await post('/v1/traces', 'application/json', body)).status).toBe(503);
    receiver.setStatus(200);
    expect((await post('/v1/traces', 'application/json', body)).status).toBe(200);
    expect(receiver.requests.map((r) => r.status)).toEqual([503, 200]);
    expect(receiver.errors).toEqual([]);
  });

  it('decodes metric names from OTLP metrics requests and only counts logs requests', async () => {
    const json = {
      resourceMetrics: [
        {
          scopeMetrics: [
            {
              metrics: [
                { name: 'celery.tasks', unit: '{task}', sum: { dataPoints: [] } },
                { name: 'celery.worker.up', unit: '1', gauge: { dataPoints: [] } },
              ],
            },
          ],
        },
      ],
    };
    const res = await post('/v1/metrics', 'application/json', JSON.stringify(json));
    expect(res.status).toBe(200);
    expect(receiver.metrics).toEqual([
      { name: 'celery.tasks', unit: '{task}', kind: 'sum' },
      { name: 'celery.worker.up', unit: '1', kind: 'gauge' },
    ]);
    expect((await post('/v1/metrics', 'application/x-protobuf', Buffer.from([0xff]))).status).toBe(
      400,
    );
    expect((await post('/v1/logs', 'application/json', 'not even json')).status).toBe(200);
    expect([receiver.metricsRequests, receiver.logsRequests]).toEqual([2, 1]);
    expect(receiver.spans).toEqual([]);
  });

  it('answers 413 to bodies over 64 MiB', async () => {
    const res = await post(
      '/v1/traces',
      'application/x-protobuf',
      Buffer.alloc(64 * 1024 * 1024 + 1),
    );
    expect(res.status).toBe(413);
    expect(receiver.errors).toEqual([expect.stringContaining('exceeds limit')]);
  });

  it('explains a waitForSpans timeout with the spans it did get', async () => {
    receiver.spans.push({
      traceId: TRACE_ID,
      spanId: PARENT_SPAN_ID,
      parentSpanId: '',
      traceState: '',
      flags: 0,
      name: 'run tasks.add',
      kind: 5,
      startTimeUnixNano: 0n,
      endTimeUnixNano: 0n,
      attributes: { 'celery.task.id': 'task-1' },
      events: [],
      links: [],
      status: { code: 0, message: '' },
      resource: {},
      scope: { name: '', version: '' },
    });
    const error = await receiver.waitForSpans((s) => s.length >= 3, 120).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/Timed out after 120 ms waiting for spans matching/);
    expect((error as Error).message).toMatch(/s\.length >= 3/);
    expect((error as Error).message).toContain('Received 1 span(s)');
    expect((error as Error).message).toContain('- run tasks.add [celery.task.id=task-1]');
  });
});
