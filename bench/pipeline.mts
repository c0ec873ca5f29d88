// The bridge's main-thread cost per event, in process and without brokers: the bench's batched
// stream is handed straight to an unstarted bridge's message handler (as its source hands on a
// delivery), spans go over OTLP/HTTP to a receiver in a child process that answers 200, and the
// main thread's CPU time is read from /proc (the send thread and the receiver not counted). Much steadier than a broker
// run (no RabbitMQ sharing the cores), so it tells whether a change to the hot path helps; the
// broker runs in run.mts stay the figures that count.
//   npm run bench:pipeline -- [--events N] [--rounds R] [--state-file] [--dist DIR] [--compare DIR]
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './paths.mjs';
import { loadShapes } from './shapes.mjs';
import { StreamGenerator } from './stream.mjs';

interface RawMessage {
  readonly routingKey: string;
  readonly contentType: string;
  readonly contentEncoding?: string;
  readonly body: Buffer;
}

interface BridgeInternals {
  onMessage(message: RawMessage): void;
  flush(): Promise<void>;
  stop(): Promise<void>;
  exportQueue: { readonly isUnderPressure: boolean; readonly held: number };
  stats: { total(name: string): number };
}

if (process.argv[2] === '--receiver') {
  // The child: an OTLP/HTTP endpoint that reads each request whole and accepts it.
  const server = createServer((request, response) => {
    request.on('data', () => undefined);
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/x-protobuf' });
      response.end();
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.send?.(typeof address === 'object' && address !== null ? address.port : 0);
  });
} else {
  await main();
}

interface Build {
  readonly label: string;
  readonly Bridge: new (options: unknown, logger: unknown) => unknown;
  readonly parseConfig: (
    argv: string[],
    env: Record<string, string>,
  ) => { command: string; options?: unknown };
  readonly Logger: new (level: string, write: (line: string) => void) => unknown;
}

async function loadBuild(dir: string, label: string): Promise<Build> {
  const dist = dir.endsWith('/') ? dir : `${dir}/`;
  const { Bridge } = (await import(`${dist}Bridge.js`)) as Pick<Build, 'Bridge'>;
  const { parseConfig } = (await import(`${dist}config/parseConfig.js`)) as Pick<
    Build,
    'parseConfig'
  >;
  const { Logger } = (await import(`${dist}log/Logger.js`)) as Pick<Build, 'Logger'>;
  return { label, Bridge, parseConfig, Logger };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      events: { type: 'string', default: '300000' },
      rounds: { type: 'string', default: '8' },
      'state-file': { type: 'boolean', default: false },
      dist: { type: 'string', default: `${ROOT}dist/` },
      // Another build (a worktree's dist/ of an older commit): rounds alternate between the two,
      // so both meet the same machine, and each pair gives one ratio.
      compare: { type: 'string' },
    },
  });
  const events = Number(values.events);
  const rounds = Number(values.rounds);
  const builds = [await loadBuild(values.dist, 'this build')];
  if (values.compare !== undefined) builds.push(await loadBuild(values.compare, values.compare));

  const receiver = fork(new URL(import.meta.url).pathname, ['--receiver'], { stdio: 'inherit' });
  const port = await new Promise<number>((resolve) =>
    receiver.once('message', (p) => resolve(Number(p))),
  );
  const messages = streamMessages(events);
  const perBuild = builds.map(() => [] as number[]);
  try {
    for (let round = 0; round < rounds; round++) {
      for (const [index, build] of builds.entries()) {
        const usPerEvent = await runRound(build, messages, events, port, values['state-file']);
        perBuild[index]?.push(usPerEvent);
        console.log(`round ${round + 1}, ${build.label}: ${usPerEvent.toFixed(2)} µs/event`);
      }
    }
  } finally {
    receiver.kill();
  }
  builds.forEach((build, index) => {
    const sorted = [...(perBuild[index] ?? [])].sort((a, b) => a - b);
    console.log(
      `${build.label}: median ${median(sorted).toFixed(2)} µs/event of main-thread CPU time (best ${sorted[0]?.toFixed(2)})`,
    );
  });
  if (builds.length === 2) {
    const ratios = (perBuild[0] ?? []).map((value, i) => value / (perBuild[1]?.[i] ?? value));
    console.log(
      `this build / ${builds[1]?.label}: median of the paired ratios ${median(ratios.sort((a, b) => a - b)).toFixed(3)}`,
    );
  }
}

function median(sorted: readonly number[]): number {
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** One pass of the stream through a new, unstarted bridge; main-thread µs per event. */
async function runRound(
  build: Build,
  messages: readonly RawMessage[],
  events: number,
  port: number,
  stateFile: boolean,
): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-pipeline-'));
  const parsed = build.parseConfig(
    [
      '--broker',
      'amqp://guest:guest@127.0.0.1:5672/',
      '--state-file',
      stateFile ? join(dir, 'state') : 'none',
      '--http-port',
      '0',
    ],
    {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_METRICS_EXPORTER: 'none',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    },
  );
  if (parsed.command !== 'run') throw new Error('expected a run command');
  const bridge = new build.Bridge(
    parsed.options,
    new build.Logger('warn', (line) => process.stderr.write(`${line}\n`)),
  ) as BridgeInternals;
  // Each round starts without the garbage of the one before (run with --expose-gc).
  (globalThis as { gc?: () => void }).gc?.();
  const cpu0 = mainThreadCpuMs();
  for (let i = 0; i < messages.length;) {
    // Hand on in slices, as the source does, so exports and their answers run between.
    const end = Math.min(messages.length, i + 200);
    for (; i < end; i++) bridge.onMessage(messages[i] as RawMessage);
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (bridge.exportQueue.isUnderPressure) await new Promise((r) => setTimeout(r, 1));
  }
  await bridge.flush();
  const busyMs = mainThreadCpuMs() - cpu0;
  const spans = bridge.stats.total('spansExported');
  await bridge.stop();
  rmSync(dir, { recursive: true, force: true });
  if (spans === 0) throw new Error('no span was exported: is the receiver answering?');
  return (busyMs * 1000) / events;
}

/** The bench's batched stream (the seed of its bursts), encoded before the clock starts. */
function streamMessages(events: number): RawMessage[] {
  const generator = new StreamGenerator(loadShapes(), {
    batched: true,
    workers: 4,
    concurrency: 64,
    seed: 1,
  });
  const out: RawMessage[] = [];
  let count = 0;
  while (count < events) {
    const message = generator.next();
    if (message === undefined) break;
    count += message.events;
    out.push({
      routingKey: message.routingKey,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      body: Buffer.from(message.body),
    });
  }
  generator.stop();
  for (;;) {
    const message = generator.next();
    if (message === undefined) break;
    out.push({
      routingKey: message.routingKey,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      body: Buffer.from(message.body),
    });
  }
  return out;
}

/** CPU time of this process's main thread (its thread id is the pid), from the scheduler's stats. */
function mainThreadCpuMs(): number {
  const fields = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ');
  return Number(fields[0]) / 1e6;
}
