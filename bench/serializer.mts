// `npm run bench:serializer`: OTLP protobuf serialisation alone, in process: the SDK's
// ProtobufTraceSerializer (otlp-transformer) against the bridge's ProtobufSpanSerializer, on the
// spans the built bridge (dist/) makes from a synthetic stream shaped like bench/stream.mts's:
// decodeEventBody -> TaskAssembler -> taskSpans, then serialised in export batches of 512 spans
// (OTEL_BSP_MAX_EXPORT_BATCH_SIZE). Prints ns/span, MB/s of output and whether the bytes agree.
//
//   npm run bench:serializer -- [--spans N] [--rounds R] [--dist DIR]
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { ROOT } from './paths.mjs';
import { loadShapes } from './shapes.mjs';
import { StreamGenerator } from './stream.mjs';

const { values } = parseArgs({
  options: {
    spans: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '15' },
    batch: { type: 'string', default: '512' },
    // The bridge build to measure (default: this checkout's dist/, which `npm run build` makes).
    dist: { type: 'string', default: `${ROOT}dist/` },
  },
});
const SPANS = Number(values.spans);
const ROUNDS = Number(values.rounds);
const BATCH = Number(values.batch);
const DIST = values.dist.endsWith('/') ? values.dist : `${values.dist}/`;

// The bench compiles on its own (rootDir bench/), so the bridge is loaded from its build and
// described here only as far as it is used.
interface Serializer {
  serializeRequest(spans: ReadableSpan[]): Uint8Array | undefined;
}
type AnyFunction = (...args: never[]) => unknown;
interface Assembler {
  handle(event: unknown): void;
  handleContext(event: unknown): void;
  tick(): void;
}
interface Modules {
  decodeEventBody(
    message: { routingKey: string; contentType: string; body: Buffer },
    options: { maxMessageBytes: number },
    sink: { event(event: unknown): void; reject(rejection: unknown): void },
  ): void;
  isTaskEvent(event: unknown): boolean;
  isTaskContextEvent(event: unknown): boolean;
  TaskAssembler: new (
    options: Record<string, unknown>,
    emit: (task: unknown) => void,
    counters: Record<string, AnyFunction>,
    nowMs: () => number,
  ) => Assembler;
  taskSpans(task: unknown, options: Record<string, unknown>): ReadableSpan[];
  ProtobufSpanSerializer: new () => Serializer;
}

async function load(): Promise<Modules> {
  const from = async (path: string): Promise<Record<string, unknown>> =>
    (await import(pathToFileURL(DIST + path).href)) as Record<string, unknown>;
  return {
    ...(await from('decode/decodeEventBody.js')),
    ...(await from('decode/CeleryEvent.js')),
    ...(await from('assemble/TaskAssembler.js')),
    ...(await from('export/taskSpans.js')),
    ...(await from('export/ProtobufSpanSerializer.js')),
  } as unknown as Modules;
}

/** Spans as the bridge builds them, from the same stream mix as `npm run bench`. */
function buildSpans(m: Modules, count: number): ReadableSpan[] {
  const spanOptions = {
    resource: resourceFromAttributes({
      'service.name': 'celery',
      'service.version': '0.1.0',
      'telemetry.sdk.language': 'nodejs',
    }),
    scope: { name: 'celery-otel-bridge', version: '0.1.0' },
    messagingSystem: 'rabbitmq',
    maxAttributeLength: 32768,
    maxCapturedLength: 1024,
  };
  const spans: ReadableSpan[] = [];
  let now = 0;
  // Counters the assembler may call: all no-ops, whatever their names.
  const counters = new Proxy<Record<string, AnyFunction>>({}, { get: () => () => undefined });
  const assembler = new m.TaskAssembler(
    {
      maxInFlightTasks: 100_000,
      finishGraceMs: 2000,
      maxFinishedTaskIds: 100_000,
      captureArgs: true,
      captureResult: true,
    },
    (task) => spans.push(...m.taskSpans(task, spanOptions)),
    counters,
    () => now,
  );
  const generator = new StreamGenerator(loadShapes(), {
    batched: true,
    workers: 4,
    concurrency: 64,
    seed: 7,
  });
  const sink = {
    event: (event: unknown): void => {
      if (m.isTaskContextEvent(event)) assembler.handleContext(event);
      else if (m.isTaskEvent(event)) assembler.handle(event);
    },
    reject: (): void => undefined,
  };
  for (let message = generator.next(); message !== undefined; message = generator.next()) {
    m.decodeEventBody(
      {
        routingKey: message.routingKey,
        contentType: 'application/json',
        body: Buffer.from(message.body),
      },
      { maxMessageBytes: 16 * 1024 * 1024 },
      sink,
    );
    now += 0.01;
    if (spans.length >= count) generator.stop();
  }
  now += 60_000;
  assembler.tick();
  return spans.slice(0, count);
}

function batches(spans: ReadableSpan[]): ReadableSpan[][] {
  const out: ReadableSpan[][] = [];
  for (let i = 0; i < spans.length; i += BATCH) out.push(spans.slice(i, i + BATCH));
  return out;
}

/** One round: every batch once; returns elapsed ns and output bytes. */
function round(serializer: Serializer, requests: ReadableSpan[][]): [number, number] {
  let bytes = 0;
  const start = performance.now();
  for (const request of requests) bytes += serializer.serializeRequest(request)?.length ?? 0;
  return [(performance.now() - start) * 1e6, bytes];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

const modules = await load();
const spans = buildSpans(modules, SPANS);
const requests = batches(spans);
const ours = new modules.ProtobufSpanSerializer();
const contenders: [string, Serializer][] = [
  ['SDK ProtobufTraceSerializer', ProtobufTraceSerializer],
  ['bridge ProtobufSpanSerializer', ours],
];

let equal = true;
for (const request of requests) {
  const expected = Buffer.from(ProtobufTraceSerializer.serializeRequest(request) ?? []);
  if (!expected.equals(Buffer.from(ours.serializeRequest(request) ?? []))) equal = false;
}

const times = new Map<string, number[]>(contenders.map(([name]) => [name, []]));
let outputBytes = 0;
for (let r = 0; r < ROUNDS + 3; r++) {
  // Alternate, so drift on a shared machine hits both alike; the first 3 rounds warm up.
  for (const [name, serializer] of r % 2 === 0 ? contenders : [...contenders].reverse()) {
    const [ns, bytes] = round(serializer, requests);
    outputBytes = bytes;
    if (r >= 3) times.get(name)?.push(ns);
  }
}

console.log(
  `${spans.length} spans in ${requests.length} requests of up to ${BATCH}, ` +
    `${(outputBytes / spans.length).toFixed(0)} bytes/span, ${ROUNDS} rounds (median, best)`,
);
const results = contenders.map(([name]) => {
  const ns = times.get(name) ?? [];
  return { name, median: median(ns), best: Math.min(...ns) };
});
for (const { name, median: m, best } of results) {
  const perSpan = (ns: number): string => (ns / spans.length).toFixed(0).padStart(6);
  const mbps = (ns: number): string => ((outputBytes / ns) * 1e3).toFixed(0).padStart(5);
  console.log(
    `${name.padEnd(30)} ${perSpan(m)} ns/span (best ${perSpan(best)})  ` +
      `${mbps(m)} MB/s (best ${mbps(best)})`,
  );
}
const [sdk, bridge] = results;
if (sdk !== undefined && bridge !== undefined) {
  console.log(`speed-up ${(sdk.median / bridge.median).toFixed(2)}x`);
}
console.log(`bytes equal: ${equal ? 'yes' : 'NO'}`);
if (!equal) process.exitCode = 1;
