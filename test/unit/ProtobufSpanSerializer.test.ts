// ProtobufSpanSerializer must put on the wire exactly what the SDK's ProtobufTraceSerializer
// (otlp-transformer 0.223.0) does: every case compares the two byte for byte.
import {
  type Attributes,
  type HrTime,
  type Link,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
} from '@opentelemetry/api';
import { type InstrumentationScope, TraceState } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { type Resource, resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { createTraceExporter } from '../../src/export/createTraceExporter.js';
import { ProtobufSpanSerializer } from '../../src/export/ProtobufSpanSerializer.js';
import { amqpCompanionFixtureMessages, amqpFixtureMessages } from '../support/fixtures.js';
import { OtlpReceiver } from '../support/OtlpReceiver.js';
import { assemble, assemblerEventsOf, decodeAll } from '../support/pipeline.js';
import { seededRandom } from '../support/seededRandom.js';

/** Both serialisations of `spans`; fails with the first differing offset when they differ. */
function expectSameBytes(spans: ReadableSpan[], serializer = new ProtobufSpanSerializer()): Buffer {
  const expected = Buffer.from(ProtobufTraceSerializer.serializeRequest(spans) ?? []);
  const actual = Buffer.from(serializer.serializeRequest(spans));
  if (!actual.equals(expected)) {
    let at = 0;
    while (at < actual.length && actual[at] === expected[at]) at++;
    const around = (b: Buffer): string => b.subarray(Math.max(0, at - 16), at + 16).toString('hex');
    expect.fail(
      `bytes differ at offset ${at} of ${expected.length} (ours ${actual.length}):\n` +
        `  sdk  ${around(expected)}\n  ours ${around(actual)}`,
    );
  }
  return actual;
}

function fixtureSpans(
  messages: Parameters<typeof decodeAll>[0],
  capture = false,
  maxAttributeLength = 32768,
): ReadableSpan[] {
  const { events } = decodeAll(messages);
  return assemble(
    assemblerEventsOf(events),
    { captureArgs: capture, captureResult: capture },
    { maxAttributeLength },
  ).spans;
}

describe('ProtobufSpanSerializer on the spans taskSpans builds from the captured streams', () => {
  const plain = fixtureSpans(amqpFixtureMessages(), true);
  const companion = fixtureSpans(amqpCompanionFixtureMessages(), true);
  const all = [...plain, ...companion];

  it('covers what the bridge exports: failures, retries, revokes, chains, upstream, chords', () => {
    const attr = (s: ReadableSpan, key: string): unknown => s.attributes[key];
    // Shown here so that the equality below is known to cover each shape.
    expect(all.some((s) => s.events.some((e) => e.attributes?.['exception.stacktrace']))).toBe(
      true,
    );
    expect(all.some((s) => attr(s, 'celery.attempt.outcome') === 'RETRY')).toBe(true);
    expect(all.some((s) => s.events.some((e) => e.name === 'task-revoked'))).toBe(true);
    expect(all.some((s) => attr(s, 'celery.task.parent_id') !== undefined)).toBe(true);
    expect(all.some((s) => attr(s, 'celery.task.args') !== undefined)).toBe(true);
    expect(
      companion.some(
        (s) =>
          s.parentSpanContext?.isRemote === true &&
          s.parentSpanContext.traceState?.serialize() === 'vendor=abc' &&
          s.spanContext().traceState !== undefined,
      ),
    ).toBe(true);
    expect(companion.some((s) => s.links.length > 1)).toBe(true);
    expect(all.some((s) => s.parentSpanContext === undefined)).toBe(true);
  });

  it('gives the SDK bytes for every span alone, each stream at once, and both streams at once', () => {
    const serializer = new ProtobufSpanSerializer();
    for (const span of all) expectSameBytes([span], serializer);
    expectSameBytes(plain, serializer);
    expectSameBytes(companion, serializer);
    expectSameBytes(all, serializer);
    // Again with the cached resource and scope bytes, and a fresh instance.
    expectSameBytes(all, serializer);
    expectSameBytes(all);
  });

  it('gives the SDK bytes with the default capture settings and short attribute limits', () => {
    expectSameBytes(fixtureSpans(amqpFixtureMessages()));
    expectSameBytes(fixtureSpans(amqpCompanionFixtureMessages(), true, 40));
  });

  it('returns a buffer of its own each time (a request may be retried after the next one)', () => {
    const serializer = new ProtobufSpanSerializer();
    const first = serializer.serializeRequest(plain);
    const copy = Buffer.from(first);
    serializer.serializeRequest(companion);
    expect(Buffer.from(first).equals(copy)).toBe(true);
  });

  it('keeps spans encoded ahead intact while later ones fill new buffers, and sends them as the SDK would', () => {
    // As the export queue holds them: encoded when taken, sent after many more were encoded.
    const serializer = new ProtobufSpanSerializer();
    const early = plain.map((s) => serializer.encode(s));
    // More than a buffer's worth after them, with spans large enough to grow a buffer on the way.
    const big = plain.map((s) => ({
      ...s,
      attributes: { ...s.attributes, big: 'b'.repeat(100_000) },
    }));
    const later = [];
    for (let round = 0; round < 4; round++) {
      for (const s of [...companion, ...big]) later.push(serializer.encode(s));
    }
    const buffers = new Set([...early, ...later].map((e) => e?.buf));
    expect(buffers.size).toBeGreaterThan(2);
    const expected = (spans: ReadableSpan[]): Buffer =>
      Buffer.from(ProtobufTraceSerializer.serializeRequest(spans) ?? []);
    const encoded = early.flatMap((e) => e ?? []);
    expect(encoded).toHaveLength(plain.length);
    expect(Buffer.from(serializer.serializeEncoded(encoded))).toEqual(expected(plain));
    // A batch drawn from several buffers, two resources and two scopes.
    const mixed = [...plain.slice(0, 3), ...companion.slice(0, 3), ...big.slice(0, 2)];
    const mixedEncoded = [
      ...early.slice(0, 3),
      ...later.slice(0, 3),
      ...later.slice(companion.length, companion.length + 2),
    ].flatMap((e) => e ?? []);
    expect(Buffer.from(serializer.serializeEncoded(mixedEncoded))).toEqual(expected(mixed));
  });
});

// --- hand-made spans ---

const TRACE_ID = '00c0ffee00000000000000000000beef';
const SPAN_ID = '00000000000000a1';
const PARENT_ID = '0f000000000000b2';
const RESOURCE = resourceFromAttributes({ 'service.name': 'celery', 'host.name': 'vm' });
const SCOPE: InstrumentationScope = { name: 'celery-otel-bridge', version: '0.1.0' };

interface SpanInit {
  name?: string;
  kind?: SpanKind;
  context?: SpanContext;
  parent?: SpanContext;
  start?: HrTime;
  end?: HrTime;
  attributes?: Attributes;
  events?: TimedEvent[];
  links?: Link[];
  status?: ReadableSpan['status'];
  resource?: Resource;
  scope?: InstrumentationScope;
  dropped?: [number, number, number];
}

function span(init: SpanInit = {}): ReadableSpan {
  const context = init.context ?? {
    traceId: TRACE_ID,
    spanId: SPAN_ID,
    traceFlags: TraceFlags.SAMPLED,
  };
  return {
    name: init.name ?? 'tasks.add',
    kind: init.kind ?? SpanKind.CONSUMER,
    spanContext: () => context,
    parentSpanContext: init.parent,
    startTime: init.start ?? [1795736645, 167345000],
    endTime: init.end ?? [1795736646, 5000],
    duration: [0, 0],
    status: init.status ?? { code: SpanStatusCode.UNSET },
    attributes: init.attributes ?? { 'celery.task.id': 'b4ca8d5f' },
    links: init.links ?? [],
    events: init.events ?? [],
    ended: true,
    resource: init.resource ?? RESOURCE,
    instrumentationScope: init.scope ?? SCOPE,
    droppedAttributesCount: init.dropped?.[0] ?? 0,
    droppedEventsCount: init.dropped?.[1] ?? 0,
    droppedLinksCount: init.dropped?.[2] ?? 0,
  };
}

describe('ProtobufSpanSerializer on edge cases', () => {
  it('serialises an empty list as an empty request', () => {
    expect(expectSameBytes([]).length).toBe(0);
  });

  it('groups spans of two resources and two scopes in the order the SDK does', () => {
    const other = resourceFromAttributes({ 'service.name': 'other' }, { schemaUrl: 'https://x/1' });
    const scopeB: InstrumentationScope = { name: 'b', version: '2', schemaUrl: 'https://s/2' };
    const scopeC: InstrumentationScope = { name: '' };
    const spans = [
      span({ name: '1', scope: scopeB }),
      span({ name: '2', resource: other }),
      span({ name: '3' }),
      span({ name: '4', resource: other, scope: scopeC }),
      span({ name: '5', scope: scopeB }),
      span({ name: '6', resource: other }),
      // Equal content, distinct objects: separate groups, as in the SDK.
      span({ name: '7', scope: { ...SCOPE } }),
    ];
    expectSameBytes(spans);
    expectSameBytes(spans.reverse());
  });

  it('encodes non-ASCII, multi-byte, lone-surrogate and empty strings', () => {
    const strings = [
      '',
      'café',
      'ÿ',
      '\u0080',
      '\u07ff\u0800',
      '日本語のタスク',
      '😀 emoji 🚀',
      'lone \ud800 high',
      'lone \udc00 low',
      'ends high \ud83d',
      '\udc00\ud800',
      'é'.repeat(64), // 128 bytes from 64 units: the one-byte length guess is wrong
      'x'.repeat(127),
      'x'.repeat(128),
      '€'.repeat(5462), // 16386 bytes: a three-byte length
      `${'a'.repeat(200)}\ud800${'b'.repeat(200)}`,
    ];
    for (const s of strings) {
      expectSameBytes([
        span({
          name: s,
          attributes: { [s]: s, plain: s, [`k${s}`]: [s, s] },
          status: { code: SpanStatusCode.ERROR, message: s },
          events: [{ name: s, time: [1, 2], attributes: { m: s } }],
          scope: { name: s, version: s },
          resource: resourceFromAttributes({ [s]: s }),
        }),
      ]);
    }
  });

  it('encodes ints, negative ints, doubles, NaN, booleans, arrays, kvlists and bytes', () => {
    const attributes: Record<string, unknown> = {
      zero: 0,
      negativeZero: -0,
      one: 1,
      int32Max: 2 ** 31 - 1,
      uint32Max: 2 ** 32 - 1,
      twoTo32: 2 ** 32,
      safeMax: Number.MAX_SAFE_INTEGER,
      twoTo60: 2 ** 60,
      twoTo63: 2 ** 63, // not an int64: a double
      minInt64: -(2 ** 63),
      negative: -1,
      negativeLarge: -(2 ** 40) - 3,
      double: 3.25,
      negativeDouble: -0.1,
      nan: NaN,
      payloadNan: new Float64Array(new Uint8Array([1, 0, 0, 0, 0, 0, 0xf8, 0x7f]).buffer)[0],
      infinity: Infinity,
      negativeInfinity: -Infinity,
      tiny: Number.MIN_VALUE,
      yes: true,
      no: false,
      strings: ['a', '', 'é'],
      numbers: [1, 2.5, -3, NaN],
      bools: [true, false],
      mixed: ['a', 1, true, null, undefined, [1, [2]], { nested: 'kv' }],
      empty: [],
      sparse: [1, , 3], // eslint-disable-line no-sparse-arrays
      kvlist: { a: 1, b: 'two', c: { d: [true] }, 2: 'integer-like key first' },
      emptyKvlist: {},
      bytes: new Uint8Array([0, 1, 255]),
      buffer: Buffer.from('buf'),
      undefinedValue: undefined,
      nullValue: null,
      bigint: 10n,
      fn: () => 1,
      date: new Date(0),
      int8: new Int8Array([-1, 2]),
    };
    expectSameBytes([span({ attributes: attributes as Attributes })]);
  });

  it('encodes attributes larger than 128 KiB and huge dropped counts (multi-byte varints)', () => {
    const big = 'x'.repeat(140 * 1024);
    const spans = [
      span({
        attributes: { big, 'big.utf8': 'é'.repeat(70 * 1024), list: [big, big] },
        events: [{ name: 'exception', time: [1, 0], attributes: { 'exception.stacktrace': big } }],
        status: { code: SpanStatusCode.ERROR, message: big },
        dropped: [300, 70_000, 2 ** 32 - 1],
      }),
      span({ name: 'small', attributes: {} }),
    ];
    expectSameBytes(spans);
    // The buffer grew past its cap and was replaced; the next request must still be right.
    const serializer = new ProtobufSpanSerializer();
    expectSameBytes(spans, serializer);
    expectSameBytes(spans.slice(1), serializer);
  });

  it('encodes parents, trace state, trace flags and the remote flag on spans and links', () => {
    const remoteParent: SpanContext = {
      traceId: TRACE_ID,
      spanId: PARENT_ID,
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
      traceState: new TraceState('vendor=abc,other=x'),
    };
    const context = (traceFlags: number, traceState?: string): SpanContext => ({
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      traceFlags,
      ...(traceState === undefined ? {} : { traceState: new TraceState(traceState) }),
    });
    const links: Link[] = [
      { context: remoteParent, attributes: { 'celery.link.type': 'upstream' } },
      { context: context(TraceFlags.NONE) },
      { context: context(0xff, 'a=b'), attributes: {}, droppedAttributesCount: 4 },
    ];
    expectSameBytes([
      span(),
      span({ parent: remoteParent, context: context(TraceFlags.SAMPLED, 'vendor=abc') }),
      span({ parent: { ...remoteParent, isRemote: false }, context: context(TraceFlags.NONE) }),
      span({ parent: { ...remoteParent, isRemote: undefined } }),
      span({ parent: { ...remoteParent, spanId: '' } }),
      span({ context: context(0x1ff) }),
      span({ links }),
      span({ kind: SpanKind.INTERNAL, status: { code: SpanStatusCode.OK, message: '' } }),
      span({ kind: SpanKind.SERVER, status: { code: SpanStatusCode.ERROR } }),
      span({ kind: undefined as unknown as SpanKind }),
      span({ context: { traceId: 'ABCDEF0123456789abcdef0123456789', spanId: '', traceFlags: 1 } }),
      span({ context: { traceId: '0g1', spanId: 'zz', traceFlags: 1 } }),
    ]);
  });

  it('encodes events with and without attributes, and times beyond the usual range', () => {
    expectSameBytes([
      span({
        events: [
          { name: 'task-rejected', time: [1795736645, 999999999] },
          { name: 'e', time: [0, 0], attributes: {}, droppedAttributesCount: 2 },
          { name: 'e', time: [1795736645, 1], attributes: { n: 1 } },
        ],
      }),
      span({ start: [0, 0], end: [2 ** 32 - 1, 999_999_999] }),
      span({ start: [2 ** 32, 5], end: [18_446_744_073, 709_551_615] }),
      span({ start: [-1, 5], end: [1.5, 2.5] }),
      span({ start: [1795736645, 1e9 + 7], end: [1795736645, -3] }),
      span({ start: [1e12, 0], end: [NaN, 0] }),
    ]);
  });
});

// --- a seeded random generator: a few hundred requests of arbitrary spans ---

class RandomSpans {
  private readonly random: () => number;
  private readonly resources: Resource[];
  private readonly scopes: InstrumentationScope[];

  constructor(seed: number) {
    this.random = seededRandom(seed);
    this.resources = Array.from({ length: 1 + this.int(3) }, () =>
      resourceFromAttributes(
        this.attributes(4),
        this.chance(0.3) ? { schemaUrl: this.string() } : {},
      ),
    );
    this.scopes = Array.from({ length: 1 + this.int(3) }, () => ({
      name: this.string(),
      ...(this.chance(0.7) ? { version: this.string() } : {}),
      ...(this.chance(0.3) ? { schemaUrl: this.string() } : {}),
    }));
  }

  int(below: number): number {
    return Math.floor(this.random() * below);
  }

  chance(p: number): boolean {
    return this.random() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  string(): string {
    const pools = [
      'abcdefghijklmnopqrstuvwxyz._-0123456789',
      'éüñçßÿ\u0080\u07ff',
      '日本語タスク\u0800\uffff',
      '😀🚀𝄞',
      '\ud800\udc00\udbff',
    ];
    const length = this.pick([0, 1, 5, 20, 42, 43, 100, 127, 128, 300, 5000]);
    let out = '';
    while (out.length < length) out += this.pick([...this.pick(pools)]);
    return this.chance(0.05) ? out.slice(0, -1) : out; // sometimes cuts a surrogate pair
  }

  hex(length: number): string {
    let out = '';
    for (let i = 0; i < length; i++) out += '0123456789abcdef'[this.int(16)];
    return this.chance(0.05) ? out.toUpperCase() : out;
  }

  value(depth = 0): unknown {
    switch (this.int(depth > 1 ? 4 : 7)) {
      case 0:
        return this.string();
      case 1:
        return this.chance(0.5);
      case 2:
        return this.pick([0, 1, -1, 127, 128, 2 ** 31, 2 ** 32 + 1, -(2 ** 53), 2 ** 62, 1e300]);
      case 3:
        return this.pick([0.5, -2.75, NaN, Infinity, 1 / 3, -1e-300]);
      case 4:
        return Array.from({ length: this.int(4) }, () => this.value(depth + 1));
      case 5:
        return this.attributes(3, depth + 1);
      default:
        return this.pick([new Uint8Array(this.int(40)), undefined, null]);
    }
  }

  attributes(count: number, depth = 0): Attributes {
    const out: Record<string, unknown> = {};
    for (let i = this.int(count + 1); i > 0; i--) out[this.string()] = this.value(depth);
    return out as Attributes;
  }

  context(): SpanContext {
    const context: SpanContext = {
      traceId: this.hex(this.chance(0.95) ? 32 : this.int(40)),
      spanId: this.hex(this.chance(0.95) ? 16 : this.int(20)),
      traceFlags: this.pick([0, 1, 1, 3, 0xff, 0x101]),
    };
    if (this.chance(0.3)) context.isRemote = this.chance(0.5);
    if (this.chance(0.2))
      context.traceState = new TraceState(`k${this.int(99)}=v,z=${this.int(9)}`);
    return context;
  }

  time(): HrTime {
    if (this.chance(0.05)) return [this.pick([-5, 0, 1.5, 2 ** 33]), this.int(2e9)];
    return [1_700_000_000 + this.int(1e8), this.int(1e9)];
  }

  span(): ReadableSpan {
    const context = this.context();
    return span({
      name: this.string(),
      kind: this.pick([0, 1, 2, 3, 4]),
      context,
      parent: this.chance(0.6) ? this.context() : undefined,
      start: this.time(),
      end: this.time(),
      attributes: this.attributes(12),
      events: Array.from({ length: this.int(4) }, () => ({
        name: this.string(),
        time: this.time(),
        ...(this.chance(0.7) ? { attributes: this.attributes(3) } : {}),
        ...(this.chance(0.2) ? { droppedAttributesCount: this.int(300) } : {}),
      })),
      links: Array.from({ length: this.int(3) }, () => ({
        context: this.context(),
        ...(this.chance(0.7) ? { attributes: this.attributes(3) } : {}),
        ...(this.chance(0.2) ? { droppedAttributesCount: this.int(300) } : {}),
      })),
      status: this.chance(0.5)
        ? { code: this.pick([0, 1, 2]) }
        : { code: this.pick([0, 1, 2]), message: this.string() },
      resource: this.pick(this.resources),
      scope: this.pick(this.scopes),
      dropped: [this.int(3) * this.int(200), this.int(2) * 128, this.int(70_000)],
    });
  }
}

describe('ProtobufSpanSerializer on random spans', () => {
  it('gives the SDK bytes for 400 seeded random requests', () => {
    const serializer = new ProtobufSpanSerializer();
    for (let seed = 1; seed <= 400; seed++) {
      const random = new RandomSpans(seed);
      const spans = Array.from({ length: random.int(12) }, () => random.span());
      try {
        expectSameBytes(spans, serializer);
      } catch (error) {
        throw new Error(`seed ${seed}: ${String(error)}`);
      }
    }
  });
});

describe('the http/protobuf exporter with ProtobufSpanSerializer', () => {
  it('delivers what the receiver decodes as the spans taskSpans built, gzipped, with headers', async () => {
    const spans = fixtureSpans(amqpCompanionFixtureMessages(), true);
    const receiver = await OtlpReceiver.start();
    try {
      const exporter = createTraceExporter({
        url: receiver.tracesUrl,
        protocol: 'http/protobuf',
        headers: { 'x-test': 'yes' },
        compression: 'gzip',
        timeoutMs: 10_000,
        serviceName: 'celery',
        resourceAttributes: {},
        serviceNameRules: [],
      });
      const result = await new Promise<number>((resolve) =>
        exporter.export(
          spans.flatMap((span) => exporter.hold(span) ?? []),
          (r) => resolve(r.code),
        ),
      );
      await exporter.shutdown();
      expect(result).toBe(0);
      expect(receiver.requests).toHaveLength(1);
      expect(receiver.requests[0]).toMatchObject({
        status: 200,
        contentType: 'application/x-protobuf',
        contentEncoding: 'gzip',
        spanCount: spans.length,
      });
      expect(receiver.requests[0]?.headers['x-test']).toBe('yes');
      const nanos = ([s, n]: HrTime): bigint => BigInt(s) * 1_000_000_000n + BigInt(n);
      expect(receiver.spans).toEqual(
        spans.map((s) => ({
          traceId: s.spanContext().traceId,
          spanId: s.spanContext().spanId,
          parentSpanId: s.parentSpanContext?.spanId ?? '',
          traceState: s.spanContext().traceState?.serialize() ?? '',
          // W3C flags, HAS_IS_REMOTE, and IS_REMOTE for a remote parent.
          flags: s.spanContext().traceFlags | 0x100 | (s.parentSpanContext?.isRemote ? 0x200 : 0),
          name: s.name,
          kind: s.kind + 1,
          startTimeUnixNano: nanos(s.startTime),
          endTimeUnixNano: nanos(s.endTime),
          attributes: s.attributes,
          events: s.events.map((e) => ({
            name: e.name,
            timeUnixNano: nanos(e.time),
            attributes: e.attributes ?? {},
          })),
          links: s.links.map((l) => ({
            traceId: l.context.traceId,
            spanId: l.context.spanId,
            attributes: l.attributes ?? {},
          })),
          status: { code: s.status.code, message: s.status.message ?? '' },
          resource: { 'service.name': 'celery' },
          scope: { name: 'celery-otel-bridge', version: 'test' },
        })),
      );
    } finally {
      await receiver.close();
    }
  });
});
