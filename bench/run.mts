// `npm run bench`: replays realistic Celery event streams into real RabbitMQ and Redis, runs a bare
// consumer and the bridge (its CLI, normal settings) on the same stream, and reports throughput,
// CPU, memory, loss and lag. See bench/README.md.
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { BareConfig, BareReport } from './bareConsumer.mjs';
import {
  amqpPublisher,
  amqpUrl,
  createVhost,
  deleteVhost,
  type Publisher,
  redisPublisher,
  type WireMessage,
} from './brokers.mjs';
import {
  type BridgeChild,
  bridgeHasFlag,
  cpuSeconds,
  freePort,
  memory,
  scrapeCounters,
  startBridgeChild,
} from './proc.mjs';
import { type ProfileSummary, summariseProfile } from './profile.mjs';
import { ROOT } from './paths.mjs';
import { BenchReceiver } from './receiver.mjs';
import { loadShapes, type Shapes } from './shapes.mjs';
import { StreamGenerator, type StreamOptions } from './stream.mjs';

type Broker = 'amqp' | 'redis';
type Mode = 'batched' | 'unbatched';

interface Args {
  brokers: Broker[];
  modes: Mode[];
  events: number;
  inflight: number;
  lagSeconds: number;
  profile: boolean;
  quick: boolean;
  redisDb: number;
  host: string;
}

const HELP = `npm run bench -- [options]
  --broker amqp|redis|all   brokers to run (default all)
  --mode batched|unbatched|all
                            task.multi lists of 10-24 events, or one event per message
                            (default all: amqp batched+unbatched, redis batched)
  --events N                events per throughput burst (default 300000)
  --inflight N              tasks left in flight for the memory figure (default 1000000; 0 skips)
  --lag-seconds S           length of the half-rate lag run (default 10)
  --profile                 also run the bridge under --cpu-prof (RabbitMQ, batched) and summarise
  --quick                   small numbers, a smoke run under a minute
  --redis-db N              Redis db of the stream: channels /N.celeryev/* (default 13)
`;

function parseArgs(argv: string[]): Args {
  const args: Args = {
    brokers: ['amqp', 'redis'],
    modes: ['batched', 'unbatched'],
    events: 300_000,
    inflight: 1_000_000,
    lagSeconds: 10,
    profile: false,
    quick: false,
    redisDb: 13,
    host: '127.0.0.1',
  };
  const explicit = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] ?? '';
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${flag} needs a value`);
      return next;
    };
    const count = (): number => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} needs a whole number`);
      return n;
    };
    explicit.add(flag);
    switch (flag) {
      case '--broker': {
        const b = value();
        if (b !== 'amqp' && b !== 'redis' && b !== 'all')
          throw new Error('--broker amqp|redis|all');
        args.brokers = b === 'all' ? ['amqp', 'redis'] : [b];
        break;
      }
      case '--mode': {
        const m = value();
        if (m !== 'batched' && m !== 'unbatched' && m !== 'all') {
          throw new Error('--mode batched|unbatched|all');
        }
        args.modes = m === 'all' ? ['batched', 'unbatched'] : [m];
        break;
      }
      case '--events':
        args.events = Math.max(1000, count());
        break;
      case '--inflight':
        args.inflight = count();
        break;
      case '--lag-seconds':
        args.lagSeconds = Math.max(1, count());
        break;
      case '--redis-db':
        args.redisDb = count();
        break;
      case '--profile':
        args.profile = true;
        break;
      case '--quick':
        args.quick = true;
        break;
      case '--help':
      case '-h':
        process.stdout.write(HELP);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${flag}\n${HELP}`);
    }
  }
  if (args.quick) {
    if (!explicit.has('--events')) args.events = 20_000;
    if (!explicit.has('--inflight')) args.inflight = 20_000;
    if (!explicit.has('--lag-seconds')) args.lagSeconds = 2;
  }
  return args;
}

/** The combinations run: the issue asks for amqp batched, amqp unbatched and redis batched. */
function combos(args: Args): { broker: Broker; mode: Mode }[] {
  const out: { broker: Broker; mode: Mode }[] = [];
  for (const broker of args.brokers) {
    for (const mode of args.modes) {
      // Redis unbatched only when asked for explicitly.
      if (broker === 'redis' && mode === 'unbatched' && args.modes.length > 1) continue;
      out.push({ broker, mode });
    }
  }
  return out;
}

const HERE = fileURLToPath(new URL('./', import.meta.url));
const children = new Set<{ kill(): void }>();

interface Context {
  readonly args: Args;
  readonly shapes: Shapes;
  readonly receiver: BenchReceiver;
  readonly otlpEndpoint: string;
  readonly vhost: string;
  readonly amqpUrl: string;
  readonly redisUrl: string;
  /** The bridge serves Prometheus /metrics (--http-port): its own event counters are read there. */
  readonly httpPortFlag: boolean;
}

function streamOptions(mode: Mode, seed: number): StreamOptions {
  return { batched: mode === 'batched', workers: 4, concurrency: 64, seed };
}

async function publisherFor(ctx: Context, broker: Broker): Promise<Publisher> {
  return broker === 'amqp'
    ? amqpPublisher(ctx.amqpUrl)
    : redisPublisher(ctx.redisUrl, ctx.args.redisDb, ctx.shapes.redisEnvelope);
}

async function startBridge(
  ctx: Context,
  broker: Broker,
  queue: string,
  extraArgs: string[] = [],
  nodeOptions: string[] = [],
): Promise<BridgeChild & { httpPort: number | undefined }> {
  // A port of its own, so a bridge running next to the bench (tests) is not in the way.
  const httpPort = ctx.httpPortFlag ? await freePort() : undefined;
  const bridge = startBridgeChild(
    [
      '--broker',
      broker === 'amqp' ? ctx.amqpUrl : ctx.redisUrl,
      '--amqp-queue',
      queue,
      ...(httpPort === undefined
        ? []
        : ['--http-port', String(httpPort), '--http-host', '127.0.0.1']),
      ...extraArgs,
    ],
    { OTEL_EXPORTER_OTLP_ENDPOINT: ctx.otlpEndpoint },
    nodeOptions,
  );
  const handle = { kill: () => bridge.child.kill('SIGKILL') };
  children.add(handle);
  bridge.child.on('exit', () => children.delete(handle));
  await bridge.ready(30_000);
  return { ...bridge, httpPort };
}

interface Bare {
  readonly latest: () => BareReport;
  stop(): Promise<BareReport>;
}

async function startBare(ctx: Context, broker: Broker): Promise<Bare> {
  const config: BareConfig =
    broker === 'amqp'
      ? { kind: 'amqp', url: ctx.amqpUrl, exchange: 'celeryev', prefetch: 500 }
      : { kind: 'redis', url: ctx.redisUrl, pattern: `/${ctx.args.redisDb}.celeryev/*` };
  const child: ChildProcess = fork(`${HERE}bareConsumer.mjs`, [JSON.stringify(config)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const handle = { kill: () => child.kill('SIGKILL') };
  children.add(handle);
  let latest: BareReport = {
    type: 'progress',
    events: 0,
    messages: 0,
    firstAt: 0,
    lastAt: 0,
    errors: 0,
  };
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  void exited.then(() => children.delete(handle));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the bare consumer did not start')), 30_000);
    child.on('message', (message: BareReport) => {
      latest = message;
      if (message.type === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => reject(new Error('the bare consumer exited at start')));
  });
  return {
    latest: () => latest,
    async stop() {
      if (child.connected) child.send('stop');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      return latest;
    },
  };
}

/** Samples the bridge's CPU every 100 ms, to tell when it has worked through a burst. */
class CpuSampler {
  readonly samples: { at: number; cpu: number }[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    this.sample();
    this.timer = setInterval(() => this.sample(), 100);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * Resolves with the end of the last busy interval once the bridge was idle (under 15% of a
   * core) for 0.5 s; undefined on timeout.
   */
  async busyUntil(timeoutMs: number): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      await sleep(100);
      const s = this.samples;
      if (s.length < 7) continue;
      let idle = true;
      for (let i = s.length - 5; i < s.length; i++) {
        if (this.fraction(i) >= 0.15) idle = false;
      }
      if (!idle) continue;
      for (let i = s.length - 1; i > 0; i--) {
        if (this.fraction(i) >= 0.15) return (s[i] as { at: number }).at;
      }
      return s[0]?.at;
    }
    return undefined;
  }

  private fraction(i: number): number {
    const a = this.samples[i - 1];
    const b = this.samples[i];
    if (a === undefined || b === undefined || b.at === a.at) return 0;
    return ((b.cpu - a.cpu) * 1000) / (b.at - a.at);
  }

  private sample(): void {
    try {
      this.samples.push({ at: Date.now(), cpu: cpuSeconds(this.pid) });
    } catch {
      // The process is gone.
    }
  }
}

/** Waits until every expected task span arrived, or none arrived for `quietMs`. */
async function waitForSpans(
  receiver: BenchReceiver,
  expected: number,
  quietMs: number,
): Promise<void> {
  let last = receiver.arrivals.size;
  let lastChange = Date.now();
  while (receiver.arrivals.size < expected && Date.now() - lastChange < quietMs) {
    await sleep(100);
    if (receiver.arrivals.size !== last) {
      last = receiver.arrivals.size;
      lastChange = Date.now();
    }
  }
}

/**
 * Waits until `count()` reaches `target`, or stops growing for `quietMs` (Redis pub/sub drops what
 * a slow subscriber did not take: then the target is never reached).
 */
async function waitForCount(count: () => number, target: number, quietMs: number): Promise<void> {
  let last = count();
  let lastChange = Date.now();
  while (count() < target && Date.now() - lastChange < quietMs) {
    await sleep(50);
    if (count() !== last) {
      last = count();
      lastChange = Date.now();
    }
  }
}

async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await sleep(50);
  }
  return false;
}

function generate(ctx: Context, publisher: Publisher, mode: Mode, events: number, seed: number) {
  const generator = new StreamGenerator(ctx.shapes, streamOptions(mode, seed));
  const wire: WireMessage[] = [];
  let count = 0;
  for (;;) {
    if (count >= events) generator.stop();
    const message = generator.next();
    if (message === undefined) break;
    wire.push(publisher.encode(message));
    count += message.events;
  }
  return { generator, wire, events: count };
}

/** Bridge settings: its defaults, with its own queue and the bench's OTLP receiver. */
const LAG_COOLDOWN_MS = 3_000;

export interface BurstResult {
  broker: Broker;
  mode: Mode;
  /** Published at this many events/s instead of as fast as possible. */
  pacedEventsPerSecond?: number;
  eventsPublished: number;
  messagesPublished: number;
  tasksPublished: number;
  failedTasks: number;
  retriedTasks: number;
  chainedTasks: number;
  publishSeconds: number;
  bare: {
    eventsPerSecond: number;
    eventsConsumed: number;
    eventsLost: number;
    /** The same burst with no bridge running: the machine's ceiling without the bridge's CPU. */
    aloneEventsPerSecond: number;
  };
  bridge: {
    eventsPerSecond: number;
    tasksPerSecond: number;
    ratioToBare: number;
    cpuSecondsPer100kEvents: number;
    peakRssMiB: number;
    taskSpansReceived: number;
    spansReceived: number;
    tasksMissing: number;
    duplicateTaskSpans: number;
    /** Lower bound: the events of the tasks whose span never arrived are counted as lost. */
    eventsLostInferred: number;
    /** The bridge's own count of events it took in (celery_otel_bridge.events), when exposed. */
    eventsCounted: number | undefined;
    /** Published minus counted by the bridge. */
    eventsLost: number | undefined;
    counters: Record<string, number> | undefined;
    drainTimedOut: boolean;
    reportedProblems: Record<string, number>;
  };
  profile?: ProfileSummary;
}

async function runBurst(
  ctx: Context,
  broker: Broker,
  mode: Mode,
  options: {
    profileDir?: string;
    paceEventsPerSecond?: number;
    aloneEventsPerSecond?: number;
  } = {},
): Promise<BurstResult> {
  // (Not again for the profile: that run is about where the bridge's time goes.)
  const alone =
    options.aloneEventsPerSecond ??
    (options.profileDir === undefined ? await runBareAlone(ctx, broker, mode) : 0);
  const pace = options.paceEventsPerSecond;
  const queue = `celery-otel-bench-${randomUUID().slice(0, 8)}`;
  const publisher = await publisherFor(ctx, broker);
  const nodeOptions =
    options.profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.profileDir}`];
  const bridge = await startBridge(ctx, broker, queue, [], nodeOptions);
  const bare = await startBare(ctx, broker);
  try {
    const { generator, wire, events } = generate(ctx, publisher, mode, ctx.args.events, 1);
    const eventsPerTask = events / Math.max(1, generator.tasksFinished);
    ctx.receiver.reset();
    await sleep(300);
    const cpu0 = cpuSeconds(bridge.pid);
    const sampler = new CpuSampler(bridge.pid);
    const t0 = Date.now();
    let sent = 0;
    for (const message of wire) {
      // Paced: never ahead of `pace` events/s by more than 10 ms of events.
      while (pace !== undefined && sent > (pace * (Date.now() - t0 + 10)) / 1000) {
        await publisher.flush();
        await sleep(2);
      }
      const wait = publisher.publish(message);
      if (wait !== undefined) await wait;
      sent += message.events;
    }
    await publisher.flush();
    const publishedAt = Date.now();
    await waitForCount(() => bare.latest().events, events, 3_000);
    if (broker === 'amqp') {
      await waitFor(async () => (await publisher.queueDepth(queue)) === 0, 300_000);
    }
    const busyUntil = await sampler.busyUntil(300_000);
    sampler.stop();
    // Full batches are out by now; the last partial one would wait OTEL_BSP_SCHEDULE_DELAY (5 s).
    // Read the figures, then stop the bridge, which exports what is queued before it exits.
    await waitForSpans(ctx.receiver, generator.tasksFinished, 1_000);
    const cpu1 = cpuSeconds(bridge.pid);
    const mem = memory(bridge.pid);
    const counters =
      bridge.httpPort === undefined ? undefined : await scrapeCounters(bridge.httpPort);
    const consumed = counters?.['celery_otel_bridge_events_total'];
    await bare.stop();
    await bridge.stop();
    await waitForSpans(ctx.receiver, generator.tasksFinished, 1_000);
    const bareReport = bare.latest();
    const bareSeconds = Math.max(1, bareReport.lastAt - t0) / 1000;
    const bridgeSeconds = Math.max(1, (busyUntil ?? Date.now()) - t0) / 1000;
    const received = ctx.receiver.arrivals.size;
    const missing = Math.max(0, generator.tasksFinished - received);
    const result: BurstResult = {
      broker,
      mode,
      eventsPublished: events,
      messagesPublished: wire.length,
      tasksPublished: generator.tasksFinished,
      failedTasks: generator.failedTasks,
      retriedTasks: generator.retriedTasks,
      chainedTasks: generator.chainedTasks,
      pacedEventsPerSecond: pace === undefined ? undefined : Math.round(pace),
      publishSeconds: round((publishedAt - t0) / 1000, 2),
      bare: {
        eventsPerSecond: Math.round(bareReport.events / bareSeconds),
        eventsConsumed: bareReport.events,
        eventsLost: events - bareReport.events,
        aloneEventsPerSecond: alone,
      },
      bridge: {
        // What the bridge took in (its own counter when exposed): on Redis a slow subscriber is
        // disconnected and what it missed is gone, so "published / time" would flatter it.
        eventsPerSecond: Math.round(Math.min(events, consumed ?? events) / bridgeSeconds),
        tasksPerSecond: Math.round(received / bridgeSeconds),
        ratioToBare: 0,
        cpuSecondsPer100kEvents: round(
          ((cpu1 - cpu0) * 100_000) / Math.max(1, Math.min(events, consumed ?? events)),
          3,
        ),
        peakRssMiB: round(mem.hwm / 2 ** 20, 1),
        taskSpansReceived: received,
        spansReceived: ctx.receiver.spans,
        tasksMissing: missing,
        duplicateTaskSpans: ctx.receiver.duplicateTaskSpans,
        eventsLostInferred: Math.round(missing * eventsPerTask),
        eventsCounted: consumed,
        eventsLost: consumed === undefined ? undefined : events - consumed,
        counters,
        drainTimedOut: busyUntil === undefined,
        reportedProblems: {},
      },
    };
    result.bridge.ratioToBare = round(
      result.bridge.eventsPerSecond / Math.max(1, result.bare.eventsPerSecond),
      3,
    );
    result.bridge.reportedProblems = bridge.problems();
    return result;
  } finally {
    await bare.stop();
    await bridge.stop();
    await publisher.deleteQueue(queue);
    await publisher.close();
  }
}

/** The ceiling with nothing else on the machine: the same burst, the bare consumer only. */
async function runBareAlone(ctx: Context, broker: Broker, mode: Mode): Promise<number> {
  const publisher = await publisherFor(ctx, broker);
  const bare = await startBare(ctx, broker);
  try {
    const { wire, events } = generate(ctx, publisher, mode, ctx.args.events, 1);
    await sleep(300);
    const t0 = Date.now();
    for (const message of wire) {
      const wait = publisher.publish(message);
      if (wait !== undefined) await wait;
    }
    await publisher.flush();
    await waitForCount(() => bare.latest().events, events, 3_000);
    return Math.round((bare.latest().events * 1000) / Math.max(1, bare.latest().lastAt - t0));
  } finally {
    await bare.stop();
    await publisher.close();
  }
}

export interface LagResult {
  broker: Broker;
  mode: Mode;
  targetEventsPerSecond: number;
  achievedEventsPerSecond: number;
  seconds: number;
  tasksPublished: number;
  taskSpansReceived: number;
  lagMs: { p50: number; p90: number; p99: number; max: number };
}

/** A rate-limited run at `rate` events/s; lag = span arrival - the task's final event timestamp. */
async function runLag(ctx: Context, broker: Broker, mode: Mode, rate: number): Promise<LagResult> {
  const queue = `celery-otel-bench-${randomUUID().slice(0, 8)}`;
  const publisher = await publisherFor(ctx, broker);
  const bridge = await startBridge(ctx, broker, queue);
  try {
    const generator = new StreamGenerator(ctx.shapes, streamOptions(mode, 2));
    const finals = new Map<string, number>();
    ctx.receiver.reset();
    const t0 = Date.now();
    const end = t0 + ctx.args.lagSeconds * 1000;
    let published = 0;
    let windowEvents = 0;
    const send = async (measured = false): Promise<boolean> => {
      const message = generator.next();
      if (message === undefined) return false;
      // Encoded at publish time: the events' timestamps are "now", as a worker's would be.
      const wait = publisher.publish(publisher.encode(message));
      if (wait !== undefined) await wait;
      if (measured) for (const final of message.finals ?? []) finals.set(final.id, final.at * 1000);
      published += message.events;
      return true;
    };
    // Measured: tasks that end within the window. The stream then goes on at the same rate for
    // a cool-down, so the measured spans leave in full batches as in a steady stream, not in the
    // last partial batch of a stream that stopped (which waits for OTEL_BSP_SCHEDULE_DELAY).
    let measuring = true;
    let seconds = 0;
    const cooldownMs = ctx.args.quick ? 1_000 : LAG_COOLDOWN_MS;
    for (let now = Date.now(); now < end + cooldownMs; now = Date.now()) {
      if (measuring && now >= end) {
        measuring = false;
        seconds = (now - t0) / 1000;
        windowEvents = published;
      }
      // Publish what is due, in slices of 20 ms so the window ends on time even when the broker
      // cannot take the rate.
      const due = (rate * (now - t0)) / 1000;
      while (published < due && Date.now() < now + 20) await send(measuring);
      await publisher.flush();
      await sleep(1);
    }
    generator.stop();
    while (await send()) {
      // Let the jobs in progress finish.
    }
    await publisher.flush();
    // The measured tasks left in full batches during the cool-down; a stop exports the rest.
    await waitForSpans(ctx.receiver, generator.tasksFinished, 1_000);
    await bridge.stop();
    const lags: number[] = [];
    for (const [id, arrival] of ctx.receiver.arrivals) {
      const at = finals.get(id);
      if (at !== undefined) lags.push(arrival - at);
    }
    lags.sort((a, b) => a - b);
    const pct = (p: number): number =>
      Math.round(lags[Math.min(lags.length - 1, Math.floor((p / 100) * lags.length))] ?? NaN);
    return {
      broker,
      mode,
      targetEventsPerSecond: Math.round(rate),
      achievedEventsPerSecond: Math.round(windowEvents / seconds),
      seconds: round(seconds, 1),
      tasksPublished: finals.size,
      taskSpansReceived: lags.length,
      lagMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: Math.round(lags.at(-1) ?? NaN) },
    };
  } finally {
    await bridge.stop();
    await publisher.deleteQueue(queue);
    await publisher.close();
  }
}

export interface InflightResult {
  tasks: number;
  baselineRssMiB: number;
  steadyRssMiB: number;
  peakRssMiB: number;
  bytesPerTask: number;
  drainSeconds: number;
  evicted: number;
}

/** N tasks received and never finished: the bridge's RSS growth per in-flight task. */
async function runInflight(ctx: Context, tasks: number): Promise<InflightResult> {
  const queue = `celery-otel-bench-${randomUUID().slice(0, 8)}`;
  const publisher = await amqpPublisher(ctx.amqpUrl);
  const bridge = await startBridge(ctx, 'amqp', queue, [
    '--max-in-flight-tasks',
    String(tasks + 10_000),
    // 1M task-received events are ~350 MB: let RabbitMQ hold them all while the bridge catches up.
    '--amqp-queue-max-bytes',
    String(2 ** 31),
  ]);
  try {
    await sleep(1500);
    ctx.receiver.reset();
    const baseline = memory(bridge.pid).rss;
    const generator = new StreamGenerator(ctx.shapes, {
      ...streamOptions('batched', 3),
      receivedOnly: true,
    });
    const t0 = Date.now();
    const sampler = new CpuSampler(bridge.pid);
    for (;;) {
      if (generator.tasksStarted >= tasks) generator.stop();
      const message = generator.next();
      if (message === undefined) break;
      const wait = publisher.publish(publisher.encode(message));
      if (wait !== undefined) await wait;
    }
    await publisher.flush();
    await waitFor(async () => (await publisher.queueDepth(queue)) === 0, 300_000);
    const busyUntil = await sampler.busyUntil(300_000);
    sampler.stop();
    // Let the heap settle (idle-time GC) before reading the steady state.
    await sleep(3000);
    const steady = memory(bridge.pid);
    // Task spans during this run: tasks the bridge gave up on (evicted or timed out).
    const evicted = ctx.receiver.arrivals.size;
    return {
      tasks: generator.tasksStarted,
      baselineRssMiB: round(baseline / 2 ** 20, 1),
      steadyRssMiB: round(steady.rss / 2 ** 20, 1),
      peakRssMiB: round(steady.hwm / 2 ** 20, 1),
      bytesPerTask: Math.round((steady.rss - baseline) / generator.tasksStarted),
      drainSeconds: round(((busyUntil ?? Date.now()) - t0) / 1000, 1),
      evicted,
    };
  } finally {
    // Kill rather than SIGTERM: the tasks never finish, so there is nothing to export.
    bridge.child.kill('SIGKILL');
    await bridge.stop();
    await publisher.deleteQueue(queue);
    await publisher.close();
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  const line = (r: string[]): string =>
    `| ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join(' | ')} |`;
  // Markdown as Prettier writes it, so the table can be pasted into the README as is.
  const sep = `| ${widths.map((w, c) => (c === 0 ? '-'.repeat(w) : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`;
  return [line(rows[0] ?? []), sep, ...rows.slice(1).map(line)].join('\n');
}

const fmt = (n: number): string => n.toLocaleString('en-US');

function report(
  bursts: BurstResult[],
  lags: LagResult[],
  inflight: InflightResult | undefined,
): string {
  const rows: string[][] = [
    [
      'figure',
      ...bursts.map(
        (b) =>
          `${b.broker === 'amqp' ? 'RabbitMQ' : 'Redis'} ${b.mode}` +
          (b.pacedEventsPerSecond === undefined ? '' : ', paced'),
      ),
    ],
  ];
  const row = (name: string, cell: (b: BurstResult, i: number) => string): void => {
    rows.push([name, ...bursts.map(cell)]);
  };
  row(
    'events published (messages)',
    (b) => `${fmt(b.eventsPublished)} (${fmt(b.messagesPublished)})`,
  );
  row('bare consumer alone events/s', (b) => fmt(b.bare.aloneEventsPerSecond));
  row('bare consumer events/s (next to the bridge)', (b) => fmt(b.bare.eventsPerSecond));
  row('bridge events/s', (b) => fmt(b.bridge.eventsPerSecond));
  row('published at events/s', (b) =>
    b.pacedEventsPerSecond === undefined
      ? 'full speed'
      : `${fmt(b.pacedEventsPerSecond)} (${Math.round((b.pacedEventsPerSecond / Math.max(1, b.bare.aloneEventsPerSecond)) * 100)}% of bare alone)`,
  );
  row('bridge / bare consumer', (b) => `${Math.round(b.bridge.ratioToBare * 100)}%`);
  row(
    'bridge / bare consumer alone',
    (b) =>
      `${Math.round((b.bridge.eventsPerSecond / Math.max(1, b.bare.aloneEventsPerSecond)) * 100)}%`,
  );
  row('bridge tasks/s', (b) => fmt(b.bridge.tasksPerSecond));
  row('bridge CPU s per 100k events', (b) => b.bridge.cpuSecondsPer100kEvents.toFixed(2));
  row('bridge peak RSS (MiB)', (b) => b.bridge.peakRssMiB.toFixed(0));
  row(
    'task spans received / tasks published',
    (b) => `${fmt(b.bridge.taskSpansReceived)} / ${fmt(b.tasksPublished)}`,
  );
  row('events lost (bridge counters)', (b) =>
    b.bridge.eventsLost === undefined ? 'n/a' : fmt(b.bridge.eventsLost),
  );
  row('events of tasks without a span', (b) => fmt(b.bridge.eventsLostInferred));
  row('events lost (bare consumer)', (b) => fmt(b.bare.eventsLost));
  row(
    'bridge-reported drops',
    (b) =>
      Object.entries(b.bridge.reportedProblems)
        .map(([k, v]) => `${k}=${fmt(v)}`)
        .join(' ') || 'none',
  );
  row('lag p50 / p99 at half rate (ms)', (b) => {
    const lag =
      b.pacedEventsPerSecond === undefined
        ? lags.find((l) => l.broker === b.broker && l.mode === b.mode)
        : undefined;
    return lag === undefined ? 'n/a' : `${fmt(lag.lagMs.p50)} / ${fmt(lag.lagMs.p99)}`;
  });
  row('half rate: events/s achieved', (b) => {
    const lag =
      b.pacedEventsPerSecond === undefined
        ? lags.find((l) => l.broker === b.broker && l.mode === b.mode)
        : undefined;
    return lag === undefined ? 'n/a' : fmt(lag.achievedEventsPerSecond);
  });
  row('half rate: task spans / tasks', (b) => {
    const lag =
      b.pacedEventsPerSecond === undefined
        ? lags.find((l) => l.broker === b.broker && l.mode === b.mode)
        : undefined;
    return lag === undefined ? 'n/a' : `${fmt(lag.taskSpansReceived)} / ${fmt(lag.tasksPublished)}`;
  });
  let out = table(rows);
  if (inflight !== undefined) {
    out +=
      `\n\nIn-flight state: ${fmt(inflight.tasks)} tasks received, never finished: RSS ` +
      `${inflight.baselineRssMiB} -> ${inflight.steadyRssMiB} MiB (peak ${inflight.peakRssMiB} MiB) = ` +
      `${fmt(inflight.bytesPerTask)} bytes per in-flight task`;
  }
  return out;
}

function printProfile(summary: ProfileSummary): string {
  const lines = [
    `Profile ${summary.file}: ${fmt(summary.busyMs)} ms busy of ${fmt(summary.totalMs)} ms sampled`,
    '',
    table([
      ['stage (self time, nearest bridge/library frame)', 'ms', '% of busy'],
      ...summary.stages.map((s) => [s.stage, fmt(s.ms), s.percentOfBusy.toFixed(1)]),
    ]),
    '',
    table([
      ['top self-time functions', 'stage', 'ms', '% of busy'],
      ...summary.topSelf.map((f) => [f.fn, f.stage, fmt(f.ms), f.percentOfBusy.toFixed(1)]),
    ]),
  ];
  return lines.join('\n');
}

/** Which bridge was measured: the commit, and whether src/ had uncommitted changes. */
function bridgeRevision(): string {
  try {
    const git = (...args: string[]): string =>
      execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = git('status', '--porcelain', '--', 'src') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? ' + uncommitted src/ changes' : ''}`;
  } catch {
    return 'unknown revision';
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const receiver = new BenchReceiver();
  const otlpEndpoint = await receiver.start();
  const { vhost, isolated } = await createVhost();
  if (!isolated) {
    process.stderr.write(
      'bench: rabbitmqctl unavailable: using vhost "/" (other consumers of celeryev will see the load)\n',
    );
  }
  const ctx: Context = {
    args,
    shapes: loadShapes(),
    receiver,
    otlpEndpoint,
    vhost,
    amqpUrl: amqpUrl(args.host, vhost),
    redisUrl: `redis://${args.host}:6379/${args.redisDb}`,
    httpPortFlag: bridgeHasFlag('--http-port'),
  };
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  const revision = bridgeRevision();
  const machine = `${cpus().length} cores, ${cpuModel}, Node ${process.version}`;
  const log = (text: string): void => {
    process.stderr.write(`[bench +${Math.round((Date.now() - started) / 1000)}s] ${text}\n`);
  };
  const bursts: BurstResult[] = [];
  const lags: LagResult[] = [];
  let inflight: InflightResult | undefined;
  let profile: ProfileSummary | undefined;
  try {
    for (const { broker, mode } of combos(args)) {
      log(`${broker} ${mode}: burst of ${fmt(args.events)} events`);
      const burst = await runBurst(ctx, broker, mode);
      bursts.push(burst);
      log(
        `  bare ${fmt(burst.bare.eventsPerSecond)} ev/s, bridge ${fmt(burst.bridge.eventsPerSecond)} ev/s, ` +
          `spans ${fmt(burst.bridge.taskSpansReceived)}/${fmt(burst.tasksPublished)}`,
      );
      if (broker === 'redis') {
        // Issue 5's Redis target: the bridge takes half the bare consumer's rate, losing nothing.
        const pace = burst.bare.aloneEventsPerSecond / 2;
        log(
          `${broker} ${mode}: burst paced at ${fmt(Math.round(pace))} events/s (half the bare consumer alone)`,
        );
        const paced = await runBurst(ctx, broker, mode, {
          paceEventsPerSecond: pace,
          aloneEventsPerSecond: burst.bare.aloneEventsPerSecond,
        });
        bursts.push(paced);
        log(
          `  bridge ${fmt(paced.bridge.eventsPerSecond)} ev/s, lost ${fmt(paced.bridge.eventsLost ?? paced.bridge.eventsLostInferred)}, ` +
            `spans ${fmt(paced.bridge.taskSpansReceived)}/${fmt(paced.tasksPublished)}`,
        );
      }
      const rate = Math.max(1000, burst.bridge.eventsPerSecond / 2);
      log(`${broker} ${mode}: lag at ${fmt(Math.round(rate))} events/s for ${args.lagSeconds} s`);
      const lag = await runLag(ctx, broker, mode, rate);
      lags.push(lag);
      log(`  lag p50 ${lag.lagMs.p50} ms, p99 ${lag.lagMs.p99} ms`);
    }
    if (args.inflight > 0) {
      log(`in-flight memory: ${fmt(args.inflight)} tasks received, never finished`);
      inflight = await runInflight(ctx, args.inflight);
      log(`  ${inflight.bytesPerTask} bytes per task`);
    }
    if (args.profile) {
      const dir = `${HERE}profiles/${Date.now()}`;
      mkdirSync(dir, { recursive: true });
      log(`profile: RabbitMQ batched burst under --cpu-prof (${dir})`);
      const burst = await runBurst(ctx, 'amqp', 'batched', { profileDir: dir });
      const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
      if (file !== undefined) {
        profile = summariseProfile(`${dir}/${file}`);
        burst.profile = profile;
      }
    }
  } finally {
    for (const child of children) child.kill();
    await receiver.close();
    await deleteVhost(vhost);
  }
  const date = new Date().toISOString().slice(0, 10);
  process.stdout.write(
    `\nBenchmark, ${date}, ${machine}, bridge ${revision}\n\n${report(bursts, lags, inflight)}\n`,
  );
  if (profile !== undefined) process.stdout.write(`\n${printProfile(profile)}\n`);
  const json = { date, machine, revision, args, bursts, lags, inflight, profile };
  const jsonText = JSON.stringify(json, null, 2);
  process.stdout.write(`\n${jsonText}\n`);
  writeFileSync(`${HERE}latest.json`, `${jsonText}\n`);
  log(`done in ${Math.round((Date.now() - started) / 1000)} s (JSON also in ${HERE}latest.json)`);
}

process.on('SIGINT', () => {
  for (const child of children) child.kill();
  // A vhost left behind is also removed by the next run (createVhost).
  process.exit(130);
});

main().then(
  () => process.exit(0),
  (error: unknown) => {
    for (const child of children) child.kill();
    process.stderr.write(
      `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
