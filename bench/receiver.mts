// A lean OTLP/HTTP receiver for the benchmark: it walks the protobuf wire format just far enough
// to count spans and read each task span's `celery.task.id` (the test receiver in
// test/support/OtlpReceiver.ts decodes everything, which would cost the bench more CPU than the
// bridge spends). Field numbers are those of test/support/otlp/trace.proto (OTLP trace.proto).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

const TASK_ID_KEY = Buffer.from('celery.task.id');
const SPAN_KIND_CONSUMER = 5;

export class BenchReceiver {
  spans = 0;
  taskSpans = 0;
  duplicateTaskSpans = 0;
  traceRequests = 0;
  otherRequests = 0;
  badRequests = 0;
  /** Task id -> arrival time (epoch ms) of its task span. */
  readonly arrivals = new Map<string, number>();
  lastArrivalMs = 0;
  private server: Server | undefined;

  async start(): Promise<string> {
    const server = createServer((req, res) => this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** Forget what arrived (between benchmark phases). */
  reset(): void {
    this.spans = 0;
    this.taskSpans = 0;
    this.duplicateTaskSpans = 0;
    this.traceRequests = 0;
    this.otherRequests = 0;
    this.badRequests = 0;
    this.arrivals.clear();
    this.lastArrivalMs = 0;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const now = Date.now();
      let status = 200;
      if (req.url?.endsWith('/v1/traces') === true) {
        this.traceRequests++;
        try {
          let body = Buffer.concat(chunks);
          if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
          const type = req.headers['content-type'] ?? '';
          if (type.startsWith('application/json')) this.walkJson(body, now);
          else this.walkRequest(body, now);
        } catch {
          this.badRequests++;
          status = 400;
        }
      } else {
        this.otherRequests++;
      }
      res.writeHead(status, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  }

  private arrived(taskId: string, now: number): void {
    this.taskSpans++;
    if (this.arrivals.has(taskId)) this.duplicateTaskSpans++;
    else this.arrivals.set(taskId, now);
    this.lastArrivalMs = now;
  }

  /** ExportTraceServiceRequest.resource_spans(1) -> ResourceSpans.scope_spans(2) -> ScopeSpans.spans(2). */
  private walkRequest(buf: Buffer, now: number): void {
    const request = new Reader(buf, 0, buf.length);
    while (request.more()) {
      const tag = request.varint();
      if (tag !== ((1 << 3) | 2)) {
        request.skip(tag & 7);
        continue;
      }
      const resource = request.sub();
      while (resource.more()) {
        const rtag = resource.varint();
        if (rtag !== ((2 << 3) | 2)) {
          resource.skip(rtag & 7);
          continue;
        }
        const scope = resource.sub();
        while (scope.more()) {
          const stag = scope.varint();
          if (stag !== ((2 << 3) | 2)) {
            scope.skip(stag & 7);
            continue;
          }
          this.walkSpan(scope.sub(), now);
        }
      }
    }
  }

  /** Span.kind(6), Span.attributes(9) -> KeyValue.key(1), KeyValue.value(2) -> AnyValue.string_value(1). */
  private walkSpan(span: Reader, now: number): void {
    this.spans++;
    let kind = 0;
    let taskId: string | undefined;
    while (span.more()) {
      const tag = span.varint();
      if (tag === ((6 << 3) | 0)) {
        kind = span.varint();
      } else if (tag === ((9 << 3) | 2) && taskId === undefined) {
        const keyValue = span.sub();
        let isTaskId = false;
        while (keyValue.more()) {
          const ktag = keyValue.varint();
          if (ktag === ((1 << 3) | 2)) {
            const length = keyValue.varint();
            isTaskId = keyValue.equals(TASK_ID_KEY, length);
            keyValue.pos += length;
          } else if (ktag === ((2 << 3) | 2) && isTaskId) {
            const value = keyValue.sub();
            while (value.more()) {
              const vtag = value.varint();
              if (vtag === ((1 << 3) | 2)) taskId = value.string();
              else value.skip(vtag & 7);
            }
          } else {
            keyValue.skip(ktag & 7);
          }
        }
      } else {
        span.skip(tag & 7);
      }
    }
    if (kind === SPAN_KIND_CONSUMER && taskId !== undefined) this.arrived(taskId, now);
  }

  private walkJson(body: Buffer, now: number): void {
    interface JsonSpan {
      kind?: number;
      attributes?: { key: string; value: { stringValue?: string } }[];
    }
    const parsed = JSON.parse(body.toString('utf8')) as {
      resourceSpans?: { scopeSpans?: { spans?: JsonSpan[] }[] }[];
    };
    for (const resource of parsed.resourceSpans ?? []) {
      for (const scope of resource.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          this.spans++;
          const id = span.attributes?.find((a) => a.key === 'celery.task.id')?.value.stringValue;
          if (span.kind === SPAN_KIND_CONSUMER && id !== undefined) this.arrived(id, now);
        }
      }
    }
  }
}

/** A cursor over one length-delimited protobuf message. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    public pos: number,
    private readonly end: number,
  ) {}

  more(): boolean {
    return this.pos < this.end;
  }

  /** Up to 32 significant bits are enough for tags, lengths and enums; longer varints are skipped. */
  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.buf[this.pos++];
      if (byte === undefined) throw new Error('truncated varint');
      if (shift < 28) result |= (byte & 0x7f) << shift;
      else if (shift === 28) result += (byte & 0x0f) * 2 ** 28;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
    }
  }

  sub(): Reader {
    const length = this.varint();
    const start = this.pos;
    this.pos += length;
    if (this.pos > this.end) throw new Error('truncated message');
    return new Reader(this.buf, start, this.pos);
  }

  string(): string {
    const length = this.varint();
    const start = this.pos;
    this.pos += length;
    return this.buf.toString('utf8', start, this.pos);
  }

  equals(expected: Buffer, length: number): boolean {
    return (
      length === expected.length &&
      this.buf.compare(expected, 0, length, this.pos, this.pos + length) === 0
    );
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.pos += 8;
        return;
      case 2: {
        // Not `this.pos += this.varint()`: that would add to the position before the length.
        const length = this.varint();
        this.pos += length;
        return;
      }
      case 5:
        this.pos += 4;
        return;
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
  }
}
