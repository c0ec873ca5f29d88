import type { Attributes, Link } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import {
  type IExportTraceServiceResponse,
  type ISerializer,
  ProtobufTraceSerializer,
} from '@opentelemetry/otlp-transformer';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import { ProtoWriter, varintSize } from './ProtoWriter.js';
import type { SpanDropReason } from '../shared/attributeSpecs.js';

/**
 * Serialises spans into an OTLP `ExportTraceServiceRequest` in protobuf, byte for byte what
 * otlp-transformer's ProtobufTraceSerializer produces (test/unit/ProtobufSpanSerializer checks it
 * against the installed version), in less time: serialisation is a large share of the bridge's
 * CPU (`npm run bench:serializer` measures both).
 *
 * Where the SDK measures every string twice (a size-estimation pass, then the write) and moves
 * every message larger than 127 bytes after writing it, this writes each span once: lengths of
 * long strings are computed up front, nested messages reserve the length bytes they most likely
 * need, and the request's outer layers (ResourceSpans, ScopeSpans) are assembled around the
 * finished spans in the final copy. Resource and scope are encoded once per object and cached:
 * like the SDK, which groups spans by their identity, this takes them to be immutable once spans
 * refer to them.
 *
 * Spans can be encoded ahead of their request (`encode`, as the export queue does when it takes a
 * span, QueueExporter.ts): each is written into a shared off-heap buffer of {@link CHUNK_BYTES}
 * and kept as an EncodedSpan (that buffer, a range, its resource and scope); `serializeEncoded`
 * assembles a request from them. `serializeRequest` is the two in one.
 *
 * Field numbers and types, from opentelemetry-proto (v1.x, unchanged since 1.0):
 * https://github.com/open-telemetry/opentelemetry-proto/blob/main/opentelemetry/proto/collector/trace/v1/trace_service.proto
 * https://github.com/open-telemetry/opentelemetry-proto/blob/main/opentelemetry/proto/trace/v1/trace.proto
 * https://github.com/open-telemetry/opentelemetry-proto/blob/main/opentelemetry/proto/common/v1/common.proto
 * https://github.com/open-telemetry/opentelemetry-proto/blob/main/opentelemetry/proto/resource/v1/resource.proto
 *
 * What the SDK writes, and so this too: proto3 defaults are omitted only for trace_state,
 * parent_span_id, kind, status.message, version and schema urls; dropped counts, status.code and
 * Resource.dropped_attributes_count (always 0) are written even when zero; Span.flags and
 * Link.flags are always written (HAS_IS_REMOTE is always set); an attribute of an unsupported
 * type (undefined, bigint, function) becomes a KeyValue with an empty AnyValue.
 */
export class ProtobufSpanSerializer implements ISerializer<
  ReadableSpan[],
  IExportTraceServiceResponse
> {
  /** Where spans are encoded; replaced by a new one when nearly full (see `encode`). */
  private chunk = new ProtoWriter(CHUNK_BYTES);
  private readonly resources = new WeakMap<Resource, EncodedParts>();
  private readonly scopes = new WeakMap<InstrumentationScope, EncodedParts>();
  private readonly guard: SpanGuard;

  constructor(options: SpanSerializerOptions = {}) {
    this.guard = new SpanGuard(options);
  }

  /**
   * The request for `spans`. A span that cannot be written (a value of a type no span should
   * have threw) or whose encoding is larger than `maxSpanBytes` is left out alone, reported to
   * `dropped` and removed from `spans` (the caller's array): one bad span never fails its batch.
   */
  serializeRequest(spans: ReadableSpan[]): Uint8Array {
    const encoded: EncodedSpan[] = [];
    let kept = 0;
    for (const span of spans) {
      const one = this.encode(span);
      if (one === undefined) continue;
      encoded.push(one);
      spans[kept++] = span;
    }
    spans.length = kept;
    return this.serializeEncoded(encoded);
  }

  /**
   * `span` encoded (ScopeSpans.spans, with its tag and length), or undefined when it is left out:
   * it could not be written, or its encoding is larger than `maxSpanBytes` (told to `dropped`).
   */
  encode(span: ReadableSpan): EncodedSpan | undefined {
    let chunk = this.chunk;
    // A span rarely needs more than the room kept: a larger one grows this chunk (ProtoWriter
    // copies it into a larger buffer; spans encoded before keep the one they were written in).
    if (chunk.buf.length - chunk.pos < CHUNK_ROOM)
      chunk = this.chunk = new ProtoWriter(CHUNK_BYTES);
    const start = chunk.pos;
    const written = this.guard.write(chunk, span);
    const buf = chunk.buf;
    // A span that grew the chunk (ProtoWriter moved it to a larger buffer) keeps that buffer to
    // itself, kept or left out for its size: the next spans start a chunk of the usual size, so a
    // huge span pins its large buffer only while it is held, never every span after it.
    if (buf.length > CHUNK_BYTES) this.chunk = new ProtoWriter(CHUNK_BYTES);
    if (!written) return undefined;
    return {
      buf,
      start,
      end: chunk.pos,
      resource: span.resource,
      scope: span.instrumentationScope,
    };
  }

  /** The request for spans encoded by `encode`, grouped as the SDK groups them. */
  serializeEncoded(spans: readonly EncodedSpan[]): Uint8Array {
    const groups: ResourceGroup[] = [];
    const first = spans[0];
    if (first !== undefined && sameResourceAndScope(spans, first)) {
      // The bridge's case: one resource, one scope.
      groups.push({
        parts: this.resourceParts(first.resource),
        scopes: [{ parts: this.scopeParts(first.scope), spans }],
      });
    } else {
      // Resources in order of first appearance (by identity), and within each, scopes in order
      // of first appearance (by identity), spans in their order.
      for (const [resource, byScope] of groupSpans(spans)) {
        const scopes: ScopeGroup[] = [];
        for (const [scope, scopeSpans] of byScope) {
          scopes.push({ parts: this.scopeParts(scope), spans: scopeSpans });
        }
        groups.push({ parts: this.resourceParts(resource), scopes });
      }
    }
    return assemble(groups);
  }

  deserializeResponse(data: Uint8Array): IExportTraceServiceResponse {
    return ProtobufTraceSerializer.deserializeResponse(data);
  }

  /** ResourceSpans.resource (field 1) and ResourceSpans.schema_url (field 3), encoded. */
  private resourceParts(resource: Resource): EncodedParts {
    const cached = this.resources.get(resource);
    if (cached !== undefined) return cached;
    const writer = new ProtoWriter(256);
    writer.byte(0x0a); // ResourceSpans.resource
    const start = writer.startMessage(1);
    // The attributes getter logs an error while async attributes are pending, as it does for
    // the SDK's serializer; such a resource is not cached, its attributes may still change.
    const attributes = resource.attributes;
    if (attributes) writeAttributes(writer, attributes, 0x0a); // Resource.attributes = 1
    writer.byte(0x10); // Resource.dropped_attributes_count = 2: the SDK always writes 0
    writer.byte(0);
    writer.finishMessage(start, 1);
    const head = writer.copy();
    writer.pos = 0;
    if (resource.schemaUrl) {
      writer.byte(0x1a); // ResourceSpans.schema_url = 3
      writer.string(resource.schemaUrl);
    }
    const parts = { head, tail: writer.copy() };
    if (!resource.asyncAttributesPending) this.resources.set(resource, parts);
    return parts;
  }

  /** ScopeSpans.scope (field 1) and ScopeSpans.schema_url (field 3), encoded. */
  private scopeParts(scope: InstrumentationScope): EncodedParts {
    const cached = this.scopes.get(scope);
    if (cached !== undefined) return cached;
    // Newer scopes carry attributes; the SDK writes them when present.
    const extended = scope as ScopeWithAttributes;
    const writer = new ProtoWriter(256);
    writer.byte(0x0a); // ScopeSpans.scope
    const start = writer.startMessage(1);
    writer.byte(0x0a); // InstrumentationScope.name = 1, written even when empty
    writer.string(scope.name);
    if (scope.version) {
      writer.byte(0x12); // InstrumentationScope.version = 2
      writer.string(scope.version);
    }
    if (extended.attributes) writeAttributes(writer, extended.attributes, 0x1a); // = 3
    if (extended.droppedAttributesCount) {
      writer.byte(0x20); // InstrumentationScope.dropped_attributes_count = 4
      writer.varint(extended.droppedAttributesCount);
    }
    writer.finishMessage(start, 1);
    const head = writer.copy();
    writer.pos = 0;
    if (scope.schemaUrl) {
      writer.byte(0x1a); // ScopeSpans.schema_url = 3
      writer.string(scope.schemaUrl);
    }
    const parts = { head, tail: writer.copy() };
    this.scopes.set(scope, parts);
    return parts;
  }
}

/** Why the serializer left a span out: `celery_otel_bridge.spans.dropped{reason}`. */
export type SerializerDropReason = Extract<SpanDropReason, 'too_large' | 'unserializable'>;

export interface SpanSerializerOptions {
  /** Largest encoded span sent; a larger one is left out alone. Default DEFAULT_MAX_SPAN_BYTES. */
  readonly maxSpanBytes?: number;
  /** Told of each span left out, once per span (a batch retried later does not hold it). */
  readonly dropped?: (reason: SerializerDropReason, count: number, detail: string) => void;
}

/**
 * 1 MiB: a task span at the default attribute limits is a few tens of KiB; a collector takes
 * 20 MiB requests by default (OpenTelemetry Collector confighttp `max_request_body_size`), so
 * one span this big cannot make a batch of ordinary ones too large on its own.
 */
export const DEFAULT_MAX_SPAN_BYTES = 1024 * 1024;

/**
 * An encoded span: ScopeSpans.spans (tag, length, Span) in `buf[start, end)`, with what its
 * request groups it by. `buf` is shared with the spans encoded next to it.
 */
export interface EncodedSpan {
  readonly buf: Buffer;
  readonly start: number;
  readonly end: number;
  readonly resource: Resource;
  readonly scope: InstrumentationScope;
}

/**
 * Spans are encoded into buffers of this size (off-heap: `Buffer.allocUnsafeSlow`); a buffer
 * is freed once no span encoded in it is held any more.
 */
const CHUNK_BYTES = 1024 * 1024;
/** A new chunk is started when less than this is left in the current one. */
const CHUNK_ROOM = 64 * 1024;

/** Writes one span, rewinding over it when it fails or is too large. */
class SpanGuard {
  private readonly maxSpanBytes: number;

  constructor(private readonly options: SpanSerializerOptions) {
    this.maxSpanBytes = options.maxSpanBytes ?? DEFAULT_MAX_SPAN_BYTES;
  }

  /** True when `span` was written; false when it was left out (and told to `dropped`). */
  write(writer: ProtoWriter, span: ReadableSpan): boolean {
    const start = writer.pos;
    let reason: SerializerDropReason | undefined;
    let detail = '';
    try {
      writeSpan(writer, span);
      if (writer.pos - start > this.maxSpanBytes) {
        reason = 'too_large';
        detail = `a span larger than ${this.maxSpanBytes} bytes encoded was left out of its export (its batch went without it); lower --max-attribute-length or --max-captured-length`;
      }
    } catch (error) {
      reason = 'unserializable';
      detail = `a span could not be encoded and was left out of its export (its batch went without it): ${error instanceof Error ? error.name : typeof error}`;
    }
    if (reason === undefined) return true;
    writer.pos = start;
    this.options.dropped?.(reason, 1, detail);
    return false;
  }
}

interface EncodedParts {
  /** The message field with its tag and length. */
  readonly head: Buffer;
  /** The schema_url field, or nothing. */
  readonly tail: Buffer;
}

interface ScopeGroup {
  readonly parts: EncodedParts;
  readonly spans: readonly EncodedSpan[];
}

interface ResourceGroup {
  readonly parts: EncodedParts;
  readonly scopes: ScopeGroup[];
}

type ScopeWithAttributes = InstrumentationScope & {
  readonly attributes?: Attributes;
  readonly droppedAttributesCount?: number;
};

function sameResourceAndScope(spans: readonly EncodedSpan[], first: EncodedSpan): boolean {
  const resource = first.resource;
  const scope = first.scope;
  for (const span of spans) {
    if (span.resource !== resource || span.scope !== scope) return false;
  }
  return true;
}

function groupSpans(
  spans: readonly EncodedSpan[],
): Map<Resource, Map<InstrumentationScope, EncodedSpan[]>> {
  const byResource = new Map<Resource, Map<InstrumentationScope, EncodedSpan[]>>();
  for (const span of spans) {
    let byScope = byResource.get(span.resource);
    if (byScope === undefined) {
      byScope = new Map();
      byResource.set(span.resource, byScope);
    }
    let list = byScope.get(span.scope);
    if (list === undefined) {
      list = [];
      byScope.set(span.scope, list);
    }
    list.push(span);
  }
  return byResource;
}

/**
 * ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }, each
 * ResourceSpans { resource = 1; repeated ScopeSpans scope_spans = 2; schema_url = 3 }, each
 * ScopeSpans { scope = 1; repeated Span spans = 2; schema_url = 3 }: the lengths are known once
 * the spans are written, so the request is built in one exact-size copy.
 */
function assemble(groups: ResourceGroup[]): Buffer {
  let total = 0;
  const resourceLengths: number[] = [];
  const scopeLengths: number[] = [];
  for (const group of groups) {
    let length = group.parts.head.length + group.parts.tail.length;
    for (const scope of group.scopes) {
      let spansLength = 0;
      for (const span of scope.spans) spansLength += span.end - span.start;
      const scopeLength = scope.parts.head.length + spansLength + scope.parts.tail.length;
      scopeLengths.push(scopeLength);
      length += 1 + varintSize(scopeLength) + scopeLength;
    }
    resourceLengths.push(length);
    total += 1 + varintSize(length) + length;
  }
  const out = Buffer.allocUnsafeSlow(total);
  let pos = 0;
  let scopeIndex = 0;
  groups.forEach((group, index) => {
    out[pos++] = 0x0a; // ExportTraceServiceRequest.resource_spans = 1
    pos = putLength(out, pos, resourceLengths[index] ?? 0);
    pos += group.parts.head.copy(out, pos);
    for (const scope of group.scopes) {
      out[pos++] = 0x12; // ResourceSpans.scope_spans = 2
      pos = putLength(out, pos, scopeLengths[scopeIndex++] ?? 0);
      pos += scope.parts.head.copy(out, pos);
      // ScopeSpans.spans = 2
      for (const span of scope.spans) pos += span.buf.copy(out, pos, span.start, span.end);
      pos += scope.parts.tail.copy(out, pos);
    }
    pos += group.parts.tail.copy(out, pos);
  });
  return out;
}

function putLength(out: Buffer, pos: number, length: number): number {
  let value = length;
  while (value > 0x7f) {
    out[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[pos++] = value;
  return pos;
}

/** Span.flags / Link.flags: W3C trace flags in the low byte, then HAS_IS_REMOTE and IS_REMOTE. */
const FLAGS_HAS_IS_REMOTE = 0x100;
const FLAGS_IS_REMOTE = 0x200;

function spanFlags(traceFlags: number, isRemote: boolean | undefined): number {
  return (traceFlags & 0xff) | FLAGS_HAS_IS_REMOTE | (isRemote ? FLAGS_IS_REMOTE : 0);
}

/** ScopeSpans.spans (field 2): one Span with its tag and length. */
function writeSpan(writer: ProtoWriter, span: ReadableSpan): void {
  writer.byte(0x12);
  // Most spans are 128 bytes to 16 KiB long: a two-byte length.
  const start = writer.startMessage(2);
  const context = span.spanContext();
  writer.byte(0x0a); // trace_id = 1
  writer.hexBytes(context.traceId);
  writer.byte(0x12); // span_id = 2
  writer.hexBytes(context.spanId);
  const traceState = context.traceState?.serialize();
  if (traceState) {
    writer.byte(0x1a); // trace_state = 3
    writer.string(traceState);
  }
  const parent = span.parentSpanContext;
  if (parent?.spanId) {
    writer.byte(0x22); // parent_span_id = 4
    writer.hexBytes(parent.spanId);
  }
  writer.byte(0x2a); // name = 5
  writer.string(span.name);
  // OTLP's SpanKind is the API's plus one: 0 is SPAN_KIND_UNSPECIFIED, omitted.
  const kind = (span.kind as number | undefined) == null ? 0 : span.kind + 1;
  if (kind !== 0) {
    writer.byte(0x30); // kind = 6
    writer.varint(kind);
  }
  writer.byte(0x39); // start_time_unix_nano = 7, fixed64
  writer.hrTime(span.startTime);
  writer.byte(0x41); // end_time_unix_nano = 8, fixed64
  writer.hrTime(span.endTime);
  if (span.attributes) writeAttributes(writer, span.attributes, 0x4a); // attributes = 9
  writer.byte(0x50); // dropped_attributes_count = 10
  writer.varint(span.droppedAttributesCount);
  for (const event of span.events) writeEvent(writer, event);
  writer.byte(0x60); // dropped_events_count = 12
  writer.varint(span.droppedEventsCount);
  for (const link of span.links) writeLink(writer, link);
  writer.byte(0x70); // dropped_links_count = 14
  writer.varint(span.droppedLinksCount);
  writer.byte(0x7a); // status = 15
  const status = writer.startMessage(1);
  if (span.status.message) {
    writer.byte(0x12); // Status.message = 2
    writer.string(span.status.message);
  }
  writer.byte(0x18); // Status.code = 3, written even when UNSET
  writer.varint(span.status.code);
  writer.finishMessage(status, 1);
  // flags = 16, fixed32: tag 16 << 3 | 5 = 133, a two-byte varint. IS_REMOTE describes the
  // parent (the SDK reads parentSpanContext.isRemote).
  writer.byte(0x85);
  writer.byte(0x01);
  writer.fixed32(spanFlags(context.traceFlags, parent?.isRemote));
  writer.finishMessage(start, 2);
}

/** Span.events (field 11): Event { time_unix_nano = 1; name = 2; attributes = 3; dropped = 4 }. */
function writeEvent(writer: ProtoWriter, event: TimedEvent): void {
  writer.byte(0x5a);
  const start = writer.startMessage(event.attributes ? 2 : 1);
  writer.byte(0x09); // time_unix_nano = 1, fixed64
  writer.hrTime(event.time);
  writer.byte(0x12); // name = 2
  writer.string(event.name);
  if (event.attributes) writeAttributes(writer, event.attributes, 0x1a); // attributes = 3
  writer.byte(0x20); // dropped_attributes_count = 4
  writer.varint(event.droppedAttributesCount || 0);
  writer.finishMessage(start, event.attributes ? 2 : 1);
}

/**
 * Span.links (field 13): Link { trace_id = 1; span_id = 2; trace_state = 3; attributes = 4;
 * dropped_attributes_count = 5; flags = 6 (fixed32) }.
 */
function writeLink(writer: ProtoWriter, link: Link): void {
  writer.byte(0x6a);
  const start = writer.startMessage(1);
  const context = link.context;
  writer.byte(0x0a);
  writer.hexBytes(context.traceId);
  writer.byte(0x12);
  writer.hexBytes(context.spanId);
  const traceState = context.traceState?.serialize();
  if (traceState) {
    writer.byte(0x1a);
    writer.string(traceState);
  }
  if (link.attributes) writeAttributes(writer, link.attributes, 0x22);
  writer.byte(0x28);
  writer.varint(link.droppedAttributesCount || 0);
  writer.byte(0x35);
  writer.fixed32(spanFlags(context.traceFlags, context.isRemote));
  writer.finishMessage(start, 1);
}

/** Strings at least this long get their UTF-8 length measured first, so nothing moves. */
const LONG_STRING = 128;

/**
 * A repeated KeyValue field (`tag` = its field number << 3 | 2): KeyValue { key = 1; value = 2 }
 * (common.proto). Own enumerable keys in for-in order, as the SDK iterates them.
 */
function writeAttributes(writer: ProtoWriter, attributes: Attributes, tag: number): void {
  for (const key in attributes) {
    if (!Object.hasOwn(attributes, key)) continue;
    const value = attributes[key];
    if (typeof value === 'string') {
      if (value.length >= LONG_STRING) {
        writeLongStringKeyValue(writer, tag, key, value);
        continue;
      }
      if (writeShortKeyValue(writer, tag, key, value)) continue;
    } else if (typeof value === 'number' && value >= 0 && value < 0x4000 && value % 1 === 0) {
      if (writeShortKeyValue(writer, tag, key, value)) continue;
    }
    writer.byte(tag);
    writeKeyValueBody(writer, key, value);
  }
}

/** Tracebacks, captured args: every length measured before writing, so nothing moves. */
function writeLongStringKeyValue(
  writer: ProtoWriter,
  tag: number,
  key: string,
  value: string,
): void {
  const keyLength = Buffer.byteLength(key, 'utf8');
  const valueLength = Buffer.byteLength(value, 'utf8');
  const anyLength = 1 + varintSize(valueLength) + valueLength;
  writer.byte(tag);
  writer.varint(1 + varintSize(keyLength) + keyLength + 1 + varintSize(anyLength) + anyLength);
  writer.byte(0x0a); // KeyValue.key
  writer.stringOfLength(key, keyLength);
  writer.byte(0x12); // KeyValue.value
  writer.varint(anyLength);
  writer.byte(0x0a); // AnyValue.string_value
  writer.stringOfLength(value, valueLength);
}

/**
 * The common attribute in one pass: an ASCII key with an ASCII string or a small non-negative
 * integer (below 2^14), the whole KeyValue under 128 bytes, so every length is one byte and known
 * up front. Returns false, having written nothing, for anything else.
 */
function writeShortKeyValue(
  writer: ProtoWriter,
  tag: number,
  key: string,
  value: string | number,
): boolean {
  const keyLength = key.length;
  const isString = typeof value === 'string';
  // AnyValue: string_value (tag, length, bytes) or int_value (tag, one- or two-byte varint).
  const anyLength = isString ? 2 + value.length : value < 0x80 ? 2 : 3;
  const length = 4 + keyLength + anyLength;
  if (length >= 128) return false;
  writer.ensure(length + 2);
  const buf = writer.buf;
  let pos = writer.pos;
  buf[pos++] = tag;
  buf[pos++] = length;
  buf[pos++] = 0x0a; // KeyValue.key
  buf[pos++] = keyLength;
  for (let i = 0; i < keyLength; i++) {
    const code = key.charCodeAt(i);
    if (code >= 0x80) return false;
    buf[pos++] = code;
  }
  buf[pos++] = 0x12; // KeyValue.value
  buf[pos++] = anyLength;
  if (isString) {
    buf[pos++] = 0x0a; // AnyValue.string_value
    buf[pos++] = value.length;
    for (let i = 0; i < value.length; i++) {
      const code = value.charCodeAt(i);
      if (code >= 0x80) return false;
      buf[pos++] = code;
    }
  } else {
    buf[pos++] = 0x18; // AnyValue.int_value
    if (value < 0x80) {
      buf[pos++] = value;
    } else {
      buf[pos++] = (value & 0x7f) | 0x80;
      buf[pos++] = value >>> 7;
    }
  }
  writer.pos = pos;
  return true;
}

function writeKeyValueBody(writer: ProtoWriter, key: string, value: unknown): void {
  const start = writer.startMessage(1);
  writer.byte(0x0a); // KeyValue.key = 1
  writer.string(key);
  writer.byte(0x12); // KeyValue.value = 2
  const valueStart = writer.startMessage(1);
  writeAnyValue(writer, value);
  writer.finishMessage(valueStart, 1);
  writer.finishMessage(start, 1);
}

/** int_value is int64: integers in [-2^63, 2^63) go there, any other number is a double. */
const INT64_MIN = -(2 ** 63);
const INT64_END = 2 ** 63;

/**
 * AnyValue { string_value = 1; bool_value = 2; int_value = 3; double_value = 4;
 * array_value = 5; kvlist_value = 6; bytes_value = 7 }, chosen in the SDK's order of checks.
 */
function writeAnyValue(writer: ProtoWriter, value: unknown): void {
  switch (typeof value) {
    case 'string':
      writer.byte(0x0a);
      writer.string(value);
      return;
    case 'boolean':
      writer.byte(0x10);
      writer.byte(value ? 1 : 0);
      return;
    case 'number':
      if (Number.isInteger(value) && value >= INT64_MIN && value < INT64_END) {
        writer.byte(0x18);
        writer.varint(value);
      } else {
        writer.byte(0x21);
        writer.double(value);
      }
      return;
    case 'object':
      break;
    default:
      return; // undefined, bigint, symbol, function: an empty AnyValue, as the SDK writes
  }
  if (value === null) return;
  if (value instanceof Uint8Array) {
    writer.byte(0x3a);
    writer.bytes(value);
  } else if (Array.isArray(value)) {
    writer.byte(0x2a); // ArrayValue { repeated AnyValue values = 1 }
    const start = writer.startMessage(1);
    for (const item of value as unknown[]) {
      writer.byte(0x0a);
      const itemStart = writer.startMessage(1);
      writeAnyValue(writer, item);
      writer.finishMessage(itemStart, 1);
    }
    writer.finishMessage(start, 1);
  } else {
    writer.byte(0x32); // KeyValueList { repeated KeyValue values = 1 }
    const start = writer.startMessage(1);
    const record = value as Record<string, unknown>;
    for (const key in record) {
      if (!Object.hasOwn(record, key)) continue;
      writer.byte(0x0a);
      writeKeyValueBody(writer, key, record[key]);
    }
    writer.finishMessage(start, 1);
  }
}
