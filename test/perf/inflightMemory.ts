// Memory of the assembler's in-flight state, without brokers: N tasks that only get
// `task-received` (as in the bench's memory phase, bench/run.mts `runInflight`) are decoded by the
// real decoder from `task.multi` bodies shaped like the captured ones (test/fixtures, Python's
// json.dumps spacing, fresh UUIDs) and handed to the real TaskAssembler, with the `peek` that
// Bridge.onEvent does before each event. Prints heap and RSS growth per task, and what one
// `forEachInFlight` pass (the metrics' state gauges) allocates.
//
//   npx esbuild test/perf/inflightMemory.ts --bundle --platform=node --format=esm \
//     --outfile=node_modules/.cache/inflight-memory/run.mjs
//   node --expose-gc node_modules/.cache/inflight-memory/run.mjs [N]
//
// Not a test (vitest only runs *.test.ts): a measurement, run by hand.
import { randomUUID } from 'node:crypto';
import { TaskAssembler } from '../../src/assemble/TaskAssembler.js';
import { isTaskEvent, type TaskEvent } from '../../src/decode/CeleryEvent.js';
import { decodeEventBody } from '../../src/decode/decodeEventBody.js';

const tasks = Number(process.argv[2] ?? 1_000_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

const calls = [
  { name: 'proj.add', args: '(1, 2)', kwargs: '{}' },
  { name: 'proj.mul', args: '(2, 2)', kwargs: '{}' },
  { name: 'proj.xsum', args: '([1, 2, 3],)', kwargs: '{}' },
  { name: 'proj.sleepy', args: '(0.1,)', kwargs: "{'label': 'x'}" },
];
const workers = ['w1@vm', 'w2@vm', 'w3@vm', 'w4@vm'];

/** One `task-received` as Celery 5.2.6 writes it (fixture field order, json.dumps spacing). */
function received(index: number, worker: string, clock: number): string {
  const id = randomUUID();
  const call = calls[index % calls.length] ?? calls[0];
  const fields: [string, unknown][] = [
    ['hostname', worker],
    ['utcoffset', 0],
    ['pid', 5779],
    ['clock', clock],
    ['uuid', id],
    ['name', call?.name],
    ['args', call?.args],
    ['kwargs', call?.kwargs],
    ['root_id', id],
    ['parent_id', null],
    ['retries', 0],
    ['eta', null],
    ['expires', null],
    ['timestamp', Date.now() / 1000 + index * 1e-6],
    ['type', 'task-received'],
  ];
  return `{${fields.map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(', ')}}`;
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

function settle(): NodeJS.MemoryUsage {
  for (let i = 0; i < 4; i++) gc?.();
  return process.memoryUsage();
}

let emitted = 0;
const assembler = new TaskAssembler(
  {
    maxInFlightTasks: tasks + 10_000,
    finishGraceMs: 5000,
    maxFinishedTaskIds: 100_000,
    captureArgs: false,
    captureResult: false,
  },
  () => emitted++,
  { lateEvent: () => undefined, duplicateEvent: () => undefined, tasksEvicted: () => undefined },
);

const sink = {
  event: (event: unknown): void => {
    const task = event as TaskEvent;
    if (!isTaskEvent(task)) return;
    // What Bridge.onEvent does: the metrics read the record before the event is applied.
    if (assembler.peek(task.uuid) !== undefined) throw new Error('unexpected known task');
    assembler.handle(task);
  },
  reject: (): void => {
    throw new Error('rejected');
  },
};

const before = settle();
const t0 = performance.now();
let clock = 0;
for (let sent = 0; sent < tasks;) {
  // Worker buffers of 10-24 events, as `task.multi` (celery/events/dispatcher.py).
  const size = Math.min(10 + (sent % 15), tasks - sent);
  const worker = workers[sent % workers.length] ?? 'w1@vm';
  const items: string[] = [];
  for (let i = 0; i < size; i++) items.push(received(sent + i, worker, ++clock));
  const body = Buffer.from(`[${items.join(', ')}]`);
  decodeEventBody(
    { routingKey: 'task.multi', contentType: 'application/json', body },
    { maxMessageBytes: 16 * 1024 * 1024 },
    sink,
  );
  sent += size;
}
const loadMs = performance.now() - t0;
const after = settle();
if (assembler.inFlightCount !== tasks || emitted !== 0) throw new Error('tasks were lost');

let visited = 0;
// heapUsed right after a full GC is not yet stable (sweeping): measure from a quiet point.
settle();
const beforeVisit = process.memoryUsage().heapUsed;
const t1 = performance.now();
assembler.forEachInFlight((_name, state) => {
  if (state === 'waiting') visited++;
});
const visitMs = performance.now() - t1;
const visitAllocated = process.memoryUsage().heapUsed - beforeVisit;

const perTask = (a: number, b: number): string => ((b - a) / tasks).toFixed(1);
console.log(
  `${tasks} tasks in flight, loaded in ${(loadMs / 1000).toFixed(1)} s\n` +
    `heap used: ${mib(before.heapUsed)} -> ${mib(after.heapUsed)} MiB = ` +
    `${perTask(before.heapUsed, after.heapUsed)} bytes/task\n` +
    `heap committed: ${mib(before.heapTotal)} -> ${mib(after.heapTotal)} MiB = ` +
    `${perTask(before.heapTotal, after.heapTotal)} bytes/task\n` +
    `array buffers: ${perTask(before.arrayBuffers, after.arrayBuffers)} bytes/task\n` +
    `RSS: ${mib(before.rss)} -> ${mib(after.rss)} MiB = ${perTask(before.rss, after.rss)} bytes/task\n` +
    `forEachInFlight: ${visited} visited in ${visitMs.toFixed(0)} ms, ` +
    `${mib(visitAllocated)} MiB allocated (no GC in between)`,
);
