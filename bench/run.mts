// `npm run bench`: replays realistic Celery event streams into real RabbitMQ and Redis and measures
// what users get: the bare consumer alone on the stream first (the ceiling), then the bridge (its
// CLI, its defaults) until every task's span has been accepted by an OTLP receiver that decodes
// every span; a backlog, a live burst, a slow collector, a kill -9, Redis's pub/sub limit, lag and
// memory per in-flight task. See bench/README.md.
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { BareConfig, BareReport } from './bareConsumer.mjs';
import {
  amqpPublisher,
  amqpUrl,
  createVhost,
  deleteVhost,
  PUBSUB_OUTPUT_BUFFER_LIMIT,
  type Publisher,
  redisPublisher,
  startOwnRedis,
  watchSubscriberBuffers,
  type WireMessage,
} from './brokers.mjs';
import {
  type BridgeChild,
  bridgeHasFlag,
  cpuSeconds,
  freePort,
  cpuSecondsOf,
  machineSeconds,
  memory,
  scrapeCounters,
  startBridgeChild,
} from './proc.mjs';
import { type ProfileSummary, summariseProfile } from './profile.mjs';
import { ROOT } from './paths.mjs';
import { BenchReceiver } from './receiver.mjs';
import type { SlowCollector } from './receiverMessages.mjs';
import { loadShapes, type Shapes } from './shapes.mjs';
import { StreamGenerator, type StreamOptions } from './stream.mjs';

type Broker = 'amqp' | 'redis';
type Mode = 'batched' | 'unbatched';
/**
 * backlog: the whole burst is in the bridge's durable queue before it starts (a restart after a
 * deploy or an outage); live: published as fast as the broker takes it while the bridge runs;
 * paced: published at a fixed rate.
 */
type Shape = 'backlog' | 'live' | 'paced';

interface Args {
  brokers: Broker[];
  modes: Mode[];
  events: number;
  inflight: number;
  lagSeconds: number;
  slowTasks: number;
  slowRate: number;
  slowMode: SlowCollector['mode'];
  collectorLatencyMs: number;
  slowStatus: number;
  killAt: number;
  redisLimit: boolean;
  scheduleDelayMs: number;
  bridgeArgs: string[];
  bridgeEnv: Record<string, string>;
  profile: boolean;
  quick: boolean;
  redisDb: number;
  host: string;
  rounds: number;
}

const HELP = `npm run bench -- [options]
  --broker amqp|redis|all   brokers to run (default all)
  --mode batched|unbatched|all
                            task.multi lists of 10-24 events, or one event per message
                            (default all: amqp batched+unbatched, redis batched)
  --events N                events per burst (default 300000)
  --slow-tasks N            tasks of the slow-collector burst (default 30000; 0 skips)
  --slow-rate N             spans/s the slow collector accepts (default 8000)
  --slow-mode refuse|delay  over its rate the slow collector answers --slow-status (default
                            refuse), or answers late
  --slow-status N           refuse: 429 (default) or 503 (the collector's memory_limiter)
  --collector-latency-ms N  every answer of the receiver waits N ms more, answers overlapping
                            (a collector across a network; default 0)
  --kill-at F               kill -9 and standby runs: kill the bridge once this fraction of the
                            tasks have their span (default 0.33; 0 skips both)
  --no-redis-limit          skip the search for the burst that Redis's pub/sub buffer limit cuts
  --schedule-delay-ms N     OTEL_BSP_SCHEDULE_DELAY of the bridge in the bursts (default 100; the
                            lag run keeps the bridge's default)
  --rounds N                bare consumer alone then the bridge, N times over, for the batched
                            bursts (default 3; unbatched runs once): the table shows the round
                            of the median ratio and lists every round's
  --bridge-arg A            one more argument for every bridge (repeat: --bridge-arg --x --bridge-arg 4)
  --bridge-env K=V          one more environment variable for every bridge (repeatable)
  --inflight N              tasks left in flight for the memory figure (default 1000000; 0 skips)
  --lag-seconds S           length of the half-rate lag run (default 10; 0 skips)
  --profile                 also run the bridge under --cpu-prof (RabbitMQ, batched) and summarise
  --quick                   small numbers (20000 events, 3000 slow-collector tasks at 2000 spans/s,
                            20000 in-flight tasks, 2 s lag window): a smoke run of about two minutes
  --redis-db N              Redis db of the stream: channels /N.<exchange>/* (default 13)
`;

function parseArgs(argv: string[]): Args {
  const args: Args = {
    brokers: ['amqp', 'redis'],
    modes: ['batched', 'unbatched'],
    events: 300_000,
    inflight: 1_000_000,
    lagSeconds: 10,
    slowTasks: 30_000,
    slowRate: 8_000,
    slowMode: 'refuse',
    collectorLatencyMs: 0,
    slowStatus: 429,
    killAt: 0.33,
    redisLimit: true,
    scheduleDelayMs: 100,
    bridgeArgs: [],
    bridgeEnv: {},
    profile: false,
    quick: false,
    redisDb: 13,
    host: '127.0.0.1',
    rounds: 3,
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
        args.lagSeconds = count();
        break;
      case '--slow-tasks':
        args.slowTasks = count();
        break;
      case '--slow-rate':
        args.slowRate = Math.max(1, count());
        break;
      case '--slow-mode': {
        const m = value();
        if (m !== 'refuse' && m !== 'delay') throw new Error('--slow-mode refuse|delay');
        args.slowMode = m;
        break;
      }
      case '--slow-status':
        args.slowStatus = count();
        break;
      case '--collector-latency-ms':
        args.collectorLatencyMs = Number(value());
        if (!(args.collectorLatencyMs >= 0))
          throw new Error('--collector-latency-ms needs ms >= 0');
        break;
      case '--kill-at': {
        const f = Number(value());
        if (!(f >= 0 && f < 1)) throw new Error('--kill-at needs a fraction in [0, 1)');
        args.killAt = f;
        break;
      }
      case '--no-redis-limit':
        args.redisLimit = false;
        break;
      case '--schedule-delay-ms':
        args.scheduleDelayMs = count();
        break;
      case '--bridge-arg':
        args.bridgeArgs.push(value());
        break;
      case '--bridge-env': {
        const pair = value();
        const at = pair.indexOf('=');
        if (at < 1) throw new Error('--bridge-env needs NAME=value');
        args.bridgeEnv[pair.slice(0, at)] = pair.slice(at + 1);
        break;
      }
      case '--rounds':
        args.rounds = Math.max(1, count());
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
    if (!explicit.has('--slow-tasks')) args.slowTasks = 3_000;
    if (!explicit.has('--rounds')) args.rounds = 1;
    // Slow enough that a few thousand tasks meet the limit even on a loaded machine.
    if (!explicit.has('--slow-rate')) args.slowRate = 2_000;
  }
  return args;
}

/** The combinations run: amqp batched, amqp unbatched and redis batched. */
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
/** Run on exit, Ctrl-C included: nothing the bench made stays behind. */
const cleanups: (() => void)[] = [];

interface Context {
  readonly args: Args;
  readonly shapes: Shapes;
  readonly receiver: BenchReceiver;
  readonly otlpEndpoint: string;
  readonly amqpUrl: string;
  readonly redisUrl: string;
  /** A name of the bench's own for Celery's event exchange, passed with --events-exchange. */
  readonly exchange: string;
  /** Where the bridges' state files go (removed at the end). */
  readonly stateDir: string;
  /** The bridge serves Prometheus /metrics (--http-port): its own event counters are read there. */
  readonly httpPortFlag: boolean;
  readonly log: (text: string) => void;
}

function streamOptions(mode: Mode, seed: number): StreamOptions {
  return { batched: mode === 'batched', workers: 4, concurrency: 64, seed };
}

async function publisherFor(ctx: Context, broker: Broker): Promise<Publisher> {
  return broker === 'amqp'
    ? amqpPublisher(ctx.amqpUrl, ctx.exchange)
    : redisPublisher(ctx.redisUrl, ctx.args.redisDb, ctx.exchange, ctx.shapes.redisEnvelope);
}

interface BridgeSettings {
  readonly broker: Broker;
  readonly queue: string;
  readonly stateFile: string;
  readonly extraArgs?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly nodeOptions?: readonly string[];
}

type RunningBridge = BridgeChild & { httpPort: number | undefined; readyAt: number };

async function startBridge(ctx: Context, settings: BridgeSettings): Promise<RunningBridge> {
  // A port of its own, so a bridge running next to the bench (tests) is not in the way.
  const httpPort = ctx.httpPortFlag ? await freePort() : undefined;
  const bridge = startBridgeChild(
    [
      '--broker',
      settings.broker === 'amqp' ? ctx.amqpUrl : `${ctx.redisUrl}/${ctx.args.redisDb}`,
      '--events-exchange',
      ctx.exchange,
      '--amqp-queue',
      settings.queue,
      '--state-file',
      settings.stateFile,
      ...(httpPort === undefined
        ? []
        : ['--http-port', String(httpPort), '--http-host', '127.0.0.1']),
      ...(settings.extraArgs ?? []),
      ...ctx.args.bridgeArgs,
    ],
    {
      OTEL_EXPORTER_OTLP_ENDPOINT: ctx.otlpEndpoint,
      ...settings.env,
      ...ctx.args.bridgeEnv,
    },
    [...(settings.nodeOptions ?? [])],
  );
  const handle = { kill: () => bridge.child.kill('SIGKILL') };
  children.add(handle);
  bridge.child.on('exit', () => children.delete(handle));
  await bridge.ready(30_000);
  return { ...bridge, httpPort, readyAt: Date.now() };
}

interface Bare {
  readonly pid: number;
  readonly latest: () => BareReport;
  stop(): Promise<BareReport>;
}

async function startBare(ctx: Context, broker: Broker, queue?: string): Promise<Bare> {
  const config: BareConfig =
    broker === 'amqp'
      ? { kind: 'amqp', url: ctx.amqpUrl, exchange: ctx.exchange, queue, prefetch: 500 }
      : {
          kind: 'redis',
          url: `${ctx.redisUrl}/${ctx.args.redisDb}`,
          pattern: `/${ctx.args.redisDb}.${ctx.exchange}/*`,
        };
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
    readyAt: 0,
    disconnects: 0,
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
    pid: child.pid ?? 0,
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

/**
 * Waits until `count()` reaches `target`, or stops growing for `quietMs` (Redis pub/sub drops what
 * a slow subscriber did not take; the bridge may drop spans: then the target is never reached).
 */
async function waitForCount(
  count: () => number,
  target: number,
  quietMs: number,
  timeoutMs = 900_000,
): Promise<boolean> {
  let last = count();
  let lastChange = Date.now();
  const deadline = Date.now() + timeoutMs;
  while (count() < target && Date.now() - lastChange < quietMs && Date.now() < deadline) {
    await sleep(20);
    if (count() !== last) {
      last = count();
      lastChange = Date.now();
    }
  }
  return count() >= target;
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

interface Burst {
  readonly wire: WireMessage[];
  readonly events: number;
  readonly bytes: number;
  /** Task id -> the state its task span must say. */
  readonly finals: Map<string, 'SUCCESS' | 'FAILURE'>;
  readonly failedTasks: number;
  readonly retriedTasks: number;
  readonly chainedTasks: number;
}

/** The whole burst, encoded for the wire before the clock starts. */
function generate(
  ctx: Context,
  publisher: Publisher,
  mode: Mode,
  size: { events?: number; tasks?: number },
  seed: number,
): Burst {
  const generator = new StreamGenerator(ctx.shapes, streamOptions(mode, seed));
  const wire: WireMessage[] = [];
  const finals = new Map<string, 'SUCCESS' | 'FAILURE'>();
  let events = 0;
  let bytes = 0;
  for (;;) {
    if (
      (size.events !== undefined && events >= size.events) ||
      (size.tasks !== undefined && generator.tasksStarted >= size.tasks)
    ) {
      generator.stop();
    }
    const message = generator.next();
    if (message === undefined) break;
    const encoded = publisher.encode(message);
    wire.push(encoded);
    for (const final of message.finals ?? []) finals.set(final.id, final.state);
    events += message.events;
    bytes += encoded.payload.length;
  }
  return {
    wire,
    events,
    bytes,
    finals,
    failedTasks: generator.failedTasks,
    retriedTasks: generator.retriedTasks,
    chainedTasks: generator.chainedTasks,
  };
}

/** Publishes as fast as the broker takes it, or at `pace` events/s (never 10 ms ahead). */
async function publish(publisher: Publisher, wire: WireMessage[], pace?: number): Promise<number> {
  const t0 = Date.now();
  let sent = 0;
  for (const message of wire) {
    while (pace !== undefined && sent > (pace * (Date.now() - t0 + 10)) / 1000) {
      await publisher.flush();
      await sleep(2);
    }
    const wait = publisher.publish(message);
    if (wait !== undefined) await wait;
    sent += message.events;
  }
  await publisher.flush();
  return Date.now();
}

/** The bridge's --amqp-queue-max-bytes default (docs/configuration.md). */
const DEFAULT_QUEUE_MAX_BYTES = 128 * 2 ** 20;

const round = (value: number, digits: number): number => {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};

const fmt = (n: number): string => n.toLocaleString('en-US');

export interface BareResult {
  shape: Shape;
  eventsPublished: number;
  eventsConsumed: number;
  eventsLost: number;
  disconnects: number;
  seconds: number;
  eventsPerSecond: number;
  /** Shares of all cores' time during the run; `bridge` is the bare consumer. */
  machine: MachineShare;
}

/**
 * The ceiling: the bare consumer alone on the machine, on the same burst, in the same shape as
 * the bridge gets it (backlog: published into its durable queue before it starts; live: published
 * as fast as the broker takes it while it consumes).
 */
interface MachineSplit {
  readonly machine: { total: number; idle: number };
  readonly bridge: number;
  readonly broker: number;
  readonly bench: number;
}

/** Shares of all cores' time, each 0..1: the four add up to about 1 (the rest: other processes). */
export interface MachineShare {
  bridge: number;
  broker: number;
  /** This process: the receiver's thread, the publisher, the bookkeeping. */
  bench: number;
  idle: number;
}

/** CPU seconds so far of the machine, the bridge, the broker's server and this process. */
function machineSplit(broker: Broker, bridgePid: number): MachineSplit {
  const usage = process.cpuUsage();
  return {
    machine: machineSeconds(),
    bridge: cpuSeconds(bridgePid),
    broker: cpuSecondsOf(broker === 'amqp' ? 'beam.smp' : 'redis-server'),
    bench: (usage.user + usage.system) / 1e6,
  };
}

/** Shares as percentages, slash-separated, or n/a. */
function shares(share: MachineShare | undefined): string {
  if (share === undefined) return 'n/a';
  return [share.bridge, share.broker, share.bench, share.idle]
    .map((value) => `${Math.round(value * 100)}%`)
    .join(' / ');
}

function machineShare(from: MachineSplit, to: MachineSplit): MachineShare {
  const total = Math.max(0.01, to.machine.total - from.machine.total);
  const share = (value: number): number => round(Math.max(0, value) / total, 3);
  return {
    bridge: share(to.bridge - from.bridge),
    broker: share(to.broker - from.broker),
    bench: share(to.bench - from.bench),
    idle: share(to.machine.idle - from.machine.idle),
  };
}

/**
 * The run whose ratio to the bare consumer alone is the median (the lower middle of an even
 * count; a run that did not deliver every span ranks lowest), with every round's ratio on it.
 */
function medianRound(runs: BridgeRunResult[]): BridgeRunResult | undefined {
  const ratio = (run: BridgeRunResult): number => run.ratioToBareAlone ?? -1;
  const sorted = [...runs].sort((a, b) => ratio(a) - ratio(b));
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  if (median === undefined) return undefined;
  return {
    ...median,
    roundRatios: runs.map(ratio),
    roundTasksWithoutSpan: runs.map((run) => run.tasksWithoutSpan),
  };
}

async function runBareAlone(
  ctx: Context,
  broker: Broker,
  mode: Mode,
  shape: 'backlog' | 'live',
): Promise<BareResult> {
  const publisher = await publisherFor(ctx, broker);
  const queue = `celery-otel-bench-bare-${randomUUID().slice(0, 8)}`;
  let bare: Bare | undefined;
  try {
    const burst = generate(ctx, publisher, mode, { events: ctx.args.events }, 1);
    let t0: number;
    if (shape === 'backlog') {
      await publisher.declareQueue(queue);
      await publish(publisher, burst.wire);
      await waitFor(async () => (await publisher.queueDepth(queue)) === burst.wire.length, 10_000);
      bare = await startBare(ctx, broker, queue);
      t0 = bare.latest().readyAt;
    } else {
      bare = await startBare(ctx, broker);
      await sleep(300);
      t0 = Date.now();
      await publish(publisher, burst.wire);
    }
    const current = bare;
    const split0 = machineSplit(broker, bare.pid);
    await waitForCount(() => current.latest().events, burst.events, 3_000);
    const machine = machineShare(split0, machineSplit(broker, bare.pid));
    const report = await bare.stop();
    const seconds = Math.max(1, report.lastAt - t0) / 1000;
    return {
      shape,
      eventsPublished: burst.events,
      eventsConsumed: report.events,
      eventsLost: burst.events - report.events,
      disconnects: report.disconnects,
      seconds: round(seconds, 2),
      eventsPerSecond: Math.round(report.events / seconds),
      machine,
    };
  } finally {
    await bare?.stop();
    if (broker === 'amqp') await publisher.deleteQueue(queue);
    await publisher.close();
  }
}

interface BridgeRunSpec {
  readonly label: string;
  readonly broker: Broker;
  readonly mode: Mode;
  readonly shape: Shape;
  readonly size: { events?: number; tasks?: number };
  readonly seed: number;
  readonly pace?: number;
  readonly slow?: SlowCollector;
  /** kill -9 the bridge once this fraction of the tasks have their span, then restart it. */
  readonly killAt?: number;
  /** With killAt: a standby bridge on the same queue and state file takes over; no restart. */
  readonly standby?: boolean;
  readonly bare?: BareResult;
  readonly nodeOptions?: readonly string[];
}

export interface BridgeRunResult {
  label: string;
  broker: Broker;
  mode: Mode;
  shape: Shape;
  /** --amqp-queue-max-bytes given to the bridge, when the burst would not fit the default. */
  queueMaxBytes: number | undefined;
  /** backlog: messages in the bridge's queue at its start (fewer than published: cut by the bound). */
  backlogMessages: number | undefined;
  eventsPublished: number;
  messagesPublished: number;
  megabytesPublished: number;
  tasksPublished: number;
  failedTasks: number;
  retriedTasks: number;
  chainedTasks: number;
  /** Achieved publishing rate (live and paced). */
  publishedEventsPerSecond: number | undefined;
  pacedEventsPerSecond: number | undefined;
  bare: BareResult | undefined;
  slowCollector: SlowCollector | undefined;
  /** Spans (of all kinds) / the slow collector's rate: the shortest possible run. */
  collectorBoundSeconds: number | undefined;
  /** From the start (backlog: the bridge consuming; else: the first publish) to the last task span. */
  secondsToEverySpan: number | undefined;
  secondsToLastSpan: number;
  /** live and paced: from the last publish to the last task span (how far behind the bridge was). */
  secondsAfterLastPublish: number | undefined;
  allDelivered: boolean;
  eventsPerSecond: number | undefined;
  tasksPerSecond: number | undefined;
  ratioToBareAlone: number | undefined;
  /** Each round's ratio, in the order run (this result is the round of the median). */
  roundRatios?: number[];
  /** Each round's tasks without a span, in the order run. */
  roundTasksWithoutSpan?: number[];
  tasksWithSpan: number;
  tasksWithoutSpan: number;
  /** Task spans whose state is not the one published, or marked incomplete. */
  wrongTaskSpans: number;
  duplicateTaskSpans: number;
  duplicatesWithOtherSpanId: number;
  /** Task spans that arrived only while the bridge was being stopped (SIGTERM flush). */
  tasksDeliveredAtStop: number;
  receiver: {
    spans: number;
    attributes: number;
    acceptedRequests: number;
    refusedRequests: number;
    refusedSpans: number;
    badRequests: number;
    /** Receiver thread's decoding time per span (refused requests are decoded too). */
    decodeMicrosecondsPerSpan: number;
    /** Decoding time / the run's time: near 1, the receiver would be what limits the run. */
    decodeShareOfRun: number;
  };
  cpuSecondsPer100kEvents: number;
  /** Shares of all cores' time during the run (not for kill runs): who had the machine. */
  machine: MachineShare | undefined;
  peakRssMiB: number;
  eventsCounted: number | undefined;
  eventsLost: number | undefined;
  counters: Record<string, number> | undefined;
  reportedProblems: Record<string, number>;
  kill:
    | {
        atSeconds: number;
        tasksWithSpanAtKill: number;
        /** From the kill to the new bridge consuming (undefined: a standby took over). */
        restartSeconds: number | undefined;
        /** From the kill to the next task span accepted. */
        nextSpanSeconds: number;
        publishingDoneAtKill: boolean;
      }
    | undefined;
  profile?: ProfileSummary;
}

/**
 * One run of the bridge on one burst: until every task's span has been accepted by the receiver,
 * or none came for a while (then the spans missing are lost).
 */
async function runBridge(ctx: Context, spec: BridgeRunSpec): Promise<BridgeRunResult> {
  const { broker, shape } = spec;
  const queue = `celery-otel-bench-${randomUUID().slice(0, 8)}`;
  const publisher = await publisherFor(ctx, broker);
  const stateFile = `${ctx.stateDir}/${queue}.json`;
  let bridge: RunningBridge | undefined;
  let standby: RunningBridge | undefined;
  try {
    const burst = generate(ctx, publisher, spec.mode, spec.size, spec.seed);
    const expected = burst.finals.size;
    // The bridge's queue holds the whole burst (its default bound is 128 MiB of message bodies):
    // what is measured is the bridge, not the bound docs/configuration.md documents.
    const queueMaxBytes =
      broker === 'amqp' && burst.bytes > DEFAULT_QUEUE_MAX_BYTES * 0.9
        ? 2 * burst.bytes
        : undefined;
    const settings: BridgeSettings = {
      broker,
      queue,
      stateFile,
      extraArgs:
        queueMaxBytes === undefined ? [] : ['--amqp-queue-max-bytes', String(queueMaxBytes)],
      // A burst ends with one partial batch, which a steady stream never has: at the default 5 s
      // it would add up to 5 s to every figure. Full batches leave as soon as they fill either way.
      env: { OTEL_BSP_SCHEDULE_DELAY: String(ctx.args.scheduleDelayMs) },
      nodeOptions: spec.nodeOptions,
    };
    ctx.receiver.reset(spec.slow);
    let t0: number;
    let publishedAt: Promise<number>;
    let backlogMessages: number | undefined;
    if (shape === 'backlog') {
      // The bridge declares its queue (with its own arguments), stops; the burst then waits in the
      // queue, as a backlog after a deploy or an outage does.
      const first = await startBridge(ctx, { ...settings, nodeOptions: [] });
      await first.stop();
      publishedAt = publish(publisher, burst.wire);
      await publishedAt;
      await waitFor(
        async () => ((await publisher.queueDepth(queue)) ?? 0) >= burst.wire.length,
        10_000,
      );
      backlogMessages = await publisher.queueDepth(queue);
      bridge = await startBridge(ctx, settings);
      t0 = bridge.readyAt;
    } else {
      bridge = await startBridge(ctx, settings);
      // Same queue (single-active-consumer: it waits) and same state file (a shared volume).
      if (spec.standby === true) standby = await startBridge(ctx, settings);
      await sleep(300);
      t0 = Date.now();
      publishedAt = publish(publisher, burst.wire, spec.pace);
    }
    let cpuBefore = 0;
    const cpu0 = cpuSeconds(bridge.pid);
    const split0 = spec.killAt === undefined ? machineSplit(broker, bridge.pid) : undefined;
    let kill: BridgeRunResult['kill'];
    if (spec.killAt !== undefined) {
      const target = Math.ceil(expected * spec.killAt);
      let published = false;
      void publishedAt.then(() => (published = true));
      // Killed mid-burst; if spans stop coming before the mark (the bridge dropped them), killed
      // once they have stopped for 5 s.
      let seen = 0;
      let seenAt = Date.now();
      await waitFor(() => {
        const now = ctx.receiver.arrivals.size;
        if (now !== seen) [seen, seenAt] = [now, Date.now()];
        return now >= target || (published && Date.now() - seenAt > 5_000);
      }, 600_000);
      const tasksAtKill = ctx.receiver.arrivals.size;
      const spansAtKill = ctx.receiver.taskSpans;
      const killedAt = Date.now();
      cpuBefore = cpuSeconds(bridge.pid) - cpu0;
      bridge.child.kill('SIGKILL');
      const nextSpan = waitFor(() => ctx.receiver.taskSpans > spansAtKill, 120_000).then(() =>
        Date.now(),
      );
      await bridge.stop();
      if (standby === undefined) {
        bridge = await startBridge(ctx, settings);
      } else {
        bridge = standby;
        standby = undefined;
      }
      kill = {
        atSeconds: round((killedAt - t0) / 1000, 2),
        tasksWithSpanAtKill: tasksAtKill,
        restartSeconds:
          spec.standby === true ? undefined : round((bridge.readyAt - killedAt) / 1000, 2),
        nextSpanSeconds: round(((await nextSpan) - killedAt) / 1000, 2),
        publishingDoneAtKill: published,
      };
    }
    const cpuStart = spec.killAt === undefined ? cpu0 : cpuSeconds(bridge.pid);
    const publishEnd = await publishedAt;
    // Without a span for this long, the rest is lost (the bridge retries a refused batch after at
    // most 30 s: wait longer than that when the collector refuses).
    const quietMs = spec.slow === undefined ? 8_000 : 35_000;
    await waitForCount(() => ctx.receiver.arrivals.size, expected, quietMs);
    const cpu1 = cpuSeconds(bridge.pid);
    const split =
      split0 === undefined ? undefined : machineShare(split0, machineSplit(broker, bridge.pid));
    const mem = memory(bridge.pid);
    const counters =
      bridge.httpPort === undefined ? undefined : await scrapeCounters(bridge.httpPort);
    const consumed = counters?.['celery_otel_bridge_events_total'];
    let lastNeeded = 0;
    let withSpan = 0;
    let wrong = 0;
    for (const [id, state] of burst.finals) {
      const span = ctx.receiver.arrivals.get(id);
      if (span === undefined) continue;
      withSpan++;
      lastNeeded = Math.max(lastNeeded, span.at);
      if (span.state !== state || span.incomplete) wrong++;
    }
    const allDelivered = withSpan === expected;
    // A stop exports what is queued: count it (a user gets those spans too), apart.
    await bridge.stop();
    await sleep(200);
    let atStop = 0;
    for (const id of burst.finals.keys()) {
      const span = ctx.receiver.arrivals.get(id);
      if (span !== undefined && span.at > lastNeeded) atStop++;
    }
    withSpan += atStop;
    const seconds = Math.max(1, lastNeeded - t0) / 1000;
    const events = burst.events;
    const result: BridgeRunResult = {
      label: spec.label,
      broker,
      mode: spec.mode,
      shape,
      queueMaxBytes,
      backlogMessages,
      eventsPublished: events,
      messagesPublished: burst.wire.length,
      megabytesPublished: round(burst.bytes / 2 ** 20, 1),
      tasksPublished: expected,
      failedTasks: burst.failedTasks,
      retriedTasks: burst.retriedTasks,
      chainedTasks: burst.chainedTasks,
      publishedEventsPerSecond:
        shape === 'backlog'
          ? undefined
          : Math.round((events * 1000) / Math.max(1, publishEnd - t0)),
      pacedEventsPerSecond: spec.pace === undefined ? undefined : Math.round(spec.pace),
      bare: spec.bare,
      slowCollector: spec.slow,
      collectorBoundSeconds:
        spec.slow === undefined
          ? undefined
          : round(ctx.receiver.spans / spec.slow.spansPerSecond, 1),
      secondsToEverySpan: allDelivered ? round(seconds, 2) : undefined,
      secondsToLastSpan: round(seconds, 2),
      allDelivered,
      eventsPerSecond: allDelivered ? Math.round(events / seconds) : undefined,
      tasksPerSecond: allDelivered ? Math.round(expected / seconds) : undefined,
      secondsAfterLastPublish:
        shape === 'backlog' ? undefined : round(Math.max(0, lastNeeded - publishEnd) / 1000, 2),
      // Paced, the bridge cannot go faster than the pace: what counts is that it keeps up.
      ratioToBareAlone:
        allDelivered && spec.bare !== undefined && shape !== 'paced'
          ? round(events / seconds / Math.max(1, spec.bare.eventsPerSecond), 3)
          : undefined,
      tasksWithSpan: withSpan,
      tasksWithoutSpan: expected - withSpan,
      wrongTaskSpans: wrong,
      duplicateTaskSpans: ctx.receiver.duplicateTaskSpans,
      duplicatesWithOtherSpanId: ctx.receiver.duplicatesWithOtherSpanId,
      tasksDeliveredAtStop: atStop,
      receiver: {
        spans: ctx.receiver.spans,
        attributes: ctx.receiver.attributes,
        acceptedRequests: ctx.receiver.acceptedRequests,
        refusedRequests: ctx.receiver.refusedRequests,
        refusedSpans: ctx.receiver.refusedSpans,
        badRequests: ctx.receiver.badRequests,
        decodeShareOfRun: round(ctx.receiver.decodeMs / Math.max(1, lastNeeded - t0), 3),
        decodeMicrosecondsPerSpan: round(
          (ctx.receiver.decodeMs * 1000) /
            Math.max(1, ctx.receiver.spans + ctx.receiver.refusedSpans),
          2,
        ),
      },
      cpuSecondsPer100kEvents: round(
        ((cpuBefore + cpu1 - cpuStart) * 100_000) / Math.max(1, events),
        3,
      ),
      machine: split,
      peakRssMiB: round(mem.hwm / 2 ** 20, 1),
      eventsCounted: consumed,
      // After a kill -9 the restarted bridge counts only what it took in itself.
      eventsLost: consumed === undefined || kill !== undefined ? undefined : events - consumed,
      counters,
      reportedProblems: bridge.problems(),
      kill,
    };
    if (ctx.receiver.badRequests > 0) {
      ctx.log(`  the receiver could not decode a request: ${ctx.receiver.lastBadRequest}`);
    }
    return result;
  } finally {
    await bridge?.stop();
    await standby?.stop();
    if (broker === 'amqp') await publisher.deleteQueue(queue);
    await publisher.close();
    rmSync(stateFile, { force: true });
  }
}

export interface RedisLimitTrial {
  events: number;
  megabytes: number;
  disconnected: boolean;
  eventsLost: number;
  peakOutputBufferMiB: number;
}

export interface RedisLimitResult {
  limit: string;
  bare: RedisLimitTrial[];
  /** Largest burst the bare subscriber survived, smallest that disconnected it. */
  bareSurvives: number | undefined;
  bareDisconnectedAt: number | undefined;
  bridge: {
    events: number;
    disconnected: boolean;
    eventsLost: number | undefined;
    tasksWithoutSpan: number;
    tasksPublished: number;
  }[];
}

/** One full-speed burst of `events` to a bare subscriber alone. */
async function redisBareTrial(ctx: Context, events: number): Promise<RedisLimitTrial> {
  const publisher = await publisherFor(ctx, 'redis');
  const bare = await startBare(ctx, 'redis');
  const watch = await watchSubscriberBuffers(ctx.redisUrl);
  try {
    const burst = generate(ctx, publisher, 'batched', { events }, 4);
    await sleep(200);
    await publish(publisher, burst.wire);
    await waitForCount(() => bare.latest().events, burst.events, 2_000);
    const report = await bare.stop();
    const peak = await watch.stop();
    return {
      events: burst.events,
      megabytes: round(burst.bytes / 2 ** 20, 1),
      disconnected: report.disconnects > 0 || report.events < burst.events,
      eventsLost: burst.events - report.events,
      peakOutputBufferMiB: round(peak / 2 ** 20, 1),
    };
  } finally {
    await bare.stop();
    await watch.stop();
    await publisher.close();
  }
}

/**
 * Redis disconnects a subscriber whose output buffer passes `client-output-buffer-limit pubsub`
 * (32 MB at once, or 8 MB for 60 s): the burst size at which that happens to a bare subscriber,
 * published as fast as Redis takes it, found by doubling then bisecting; then the bridge on the
 * largest burst the bare subscriber survived (it must lose nothing) and on the smallest that
 * disconnected it and beyond (does the bridge reach the limit, or go further?).
 */
async function runRedisLimit(ctx: Context): Promise<RedisLimitResult> {
  const { quick, events } = ctx.args;
  const start = quick ? 10_000 : 25_000;
  const max = quick ? 80_000 : Math.max(4 * events, 400_000);
  const trials: RedisLimitTrial[] = [];
  let survives: number | undefined;
  let fails: number | undefined;
  for (let size = start; size <= max; size *= 2) {
    const trial = await redisBareTrial(ctx, size);
    trials.push(trial);
    ctx.log(
      `  bare subscriber, ${fmt(trial.events)} events (${trial.megabytes} MB): ` +
        `${trial.disconnected ? `disconnected, ${fmt(trial.eventsLost)} lost` : 'survived'}, ` +
        `peak output buffer ${trial.peakOutputBufferMiB} MiB`,
    );
    if (trial.disconnected) {
      fails = size;
      break;
    }
    survives = size;
  }
  // Two bisection steps: the limit within a quarter of the last doubling.
  for (let step = 0; !quick && step < 2 && fails !== undefined && survives !== undefined; step++) {
    const size = Math.round((survives + fails) / 2);
    const trial = await redisBareTrial(ctx, size);
    trials.push(trial);
    ctx.log(
      `  bare subscriber, ${fmt(trial.events)} events: ${trial.disconnected ? 'disconnected' : 'survived'}`,
    );
    if (trial.disconnected) fails = size;
    else survives = size;
  }
  const bridge: RedisLimitResult['bridge'] = [];
  const sizes = [survives, fails].filter((s): s is number => s !== undefined);
  // Past the bare subscriber's limit, double until the bridge is cut too (or twice, at most).
  if (fails !== undefined && !quick) sizes.push(fails * 2, fails * 4);
  for (const size of sizes.filter((s) => s <= 2 * max)) {
    const run = await runBridge(ctx, {
      label: `Redis limit ${size}`,
      broker: 'redis',
      mode: 'batched',
      shape: 'live',
      size: { events: size },
      seed: 4,
    });
    const disconnected = (run.reportedProblems['broker_disconnects'] ?? 0) > 0;
    bridge.push({
      events: run.eventsPublished,
      disconnected,
      eventsLost: run.eventsLost,
      tasksWithoutSpan: run.tasksWithoutSpan,
      tasksPublished: run.tasksPublished,
    });
    ctx.log(
      `  bridge, ${fmt(run.eventsPublished)} events: ${disconnected ? 'disconnected' : 'not disconnected'}, ` +
        `events lost ${run.eventsLost === undefined ? 'n/a' : fmt(run.eventsLost)}, ` +
        `tasks without a span ${fmt(run.tasksWithoutSpan)} / ${fmt(run.tasksPublished)}`,
    );
    if (size > (fails ?? Infinity) && disconnected) break;
  }
  return {
    limit: PUBSUB_OUTPUT_BUFFER_LIMIT,
    bare: trials,
    bareSurvives: survives,
    bareDisconnectedAt: fails,
    bridge,
  };
}

/** Bridge settings: its defaults, with its own queue and the bench's OTLP receiver. */
const LAG_COOLDOWN_MS = 3_000;

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

/**
 * A rate-limited run at `rate` events/s with the bridge's defaults (OTEL_BSP_SCHEDULE_DELAY
 * included); lag = span arrival - the task's final event timestamp.
 */
async function runLag(ctx: Context, broker: Broker, mode: Mode, rate: number): Promise<LagResult> {
  const queue = `celery-otel-bench-${randomUUID().slice(0, 8)}`;
  const stateFile = `${ctx.stateDir}/${queue}.json`;
  const publisher = await publisherFor(ctx, broker);
  ctx.receiver.reset();
  const bridge = await startBridge(ctx, { broker, queue, stateFile });
  try {
    const generator = new StreamGenerator(ctx.shapes, streamOptions(mode, 2));
    const finals = new Map<string, number>();
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
    const measured = (): number => {
      let n = 0;
      for (const id of finals.keys()) if (ctx.receiver.arrivals.has(id)) n++;
      return n;
    };
    await waitForCount(measured, finals.size, 1_000, 30_000);
    await bridge.stop();
    const lags: number[] = [];
    for (const [id, at] of finals) {
      const arrival = ctx.receiver.arrivals.get(id);
      if (arrival !== undefined) lags.push(arrival.at - at);
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
    rmSync(stateFile, { force: true });
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
  const stateFile = `${ctx.stateDir}/${queue}.json`;
  const publisher = await amqpPublisher(ctx.amqpUrl, ctx.exchange);
  const bridge = await startBridge(ctx, {
    broker: 'amqp',
    queue,
    // No state file: memory is what is measured, and the first save of an active bridge writes
    // the whole in-flight state, a million tasks here (docs/state-file.md).
    stateFile: 'none',
    extraArgs: [
      '--max-in-flight-tasks',
      String(tasks + 10_000),
      // The estimate's default bound (128 MiB) would give up on most of a million tasks, and the
      // figure would then mix the tasks kept with the garbage of those exported.
      '--max-in-flight-bytes',
      String(2 ** 31),
      // 1M task-received events are ~350 MB: let RabbitMQ hold them all while the bridge catches up.
      '--amqp-queue-max-bytes',
      String(2 ** 31),
    ],
  });
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
      // Per task still in flight: those given up on are not held any more.
      bytesPerTask: Math.round(
        (steady.rss - baseline) / Math.max(1, generator.tasksStarted - evicted),
      ),
      drainSeconds: round(((busyUntil ?? Date.now()) - t0) / 1000, 1),
      evicted,
    };
  } finally {
    // Kill rather than SIGTERM: the tasks never finish, so there is nothing to export (and saving
    // a million tasks to the state file is not what is measured).
    bridge.child.kill('SIGKILL');
    await bridge.stop();
    await publisher.deleteQueue(queue);
    await publisher.close();
    rmSync(stateFile, { force: true });
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  const line = (r: string[]): string =>
    `| ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join(' | ')} |`;
  // Markdown as Prettier writes it, so the table can be pasted into docs/benchmark.md as is.
  const sep = `| ${widths.map((w, c) => (c === 0 ? '-'.repeat(w) : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`;
  return [line(rows[0] ?? []), sep, ...rows.slice(1).map(line)].join('\n');
}

const percent = (ratio: number): string => `${Math.round(ratio * 100)}%`;

function report(
  runs: BridgeRunResult[],
  lags: LagResult[],
  limit: RedisLimitResult | undefined,
  inflight: InflightResult | undefined,
  collectorLatencyMs: number,
): string {
  const rows: string[][] = [['figure', ...runs.map((r) => r.label)]];
  const row = (name: string, cell: (r: BridgeRunResult) => string): void => {
    rows.push([name, ...runs.map(cell)]);
  };
  const lagOf = (r: BridgeRunResult): LagResult | undefined =>
    r.shape === 'live' && r.slowCollector === undefined && r.kill === undefined
      ? lags.find((l) => l.broker === r.broker && l.mode === r.mode)
      : undefined;
  row(
    'events published (messages, MB)',
    (r) => `${fmt(r.eventsPublished)} (${fmt(r.messagesPublished)}, ${r.megabytesPublished})`,
  );
  row('tasks published', (r) => fmt(r.tasksPublished));
  row('published', (r) =>
    r.shape === 'backlog'
      ? 'before the start'
      : r.shape === 'paced'
        ? `at ${fmt(r.pacedEventsPerSecond ?? 0)} ev/s`
        : `full speed: ${fmt(r.publishedEventsPerSecond ?? 0)} ev/s`,
  );
  const latency = collectorLatencyMs > 0 ? `, answers ${collectorLatencyMs} ms late` : '';
  row('collector accepts', (r) =>
    r.slowCollector === undefined
      ? `all at once${latency}`
      : `${fmt(r.slowCollector.spansPerSecond)} spans/s (${r.slowCollector.mode === 'refuse' ? String(r.slowCollector.refuseStatus) : 'slow answers'})${latency}`,
  );
  row('bare consumer alone events/s', (r) =>
    r.bare === undefined ? 'n/a' : fmt(r.bare.eventsPerSecond),
  );
  row('bare consumer alone events lost', (r) =>
    r.bare === undefined ? 'n/a' : fmt(r.bare.eventsLost),
  );
  row('seconds until every task span accepted', (r) =>
    r.secondsToEverySpan === undefined
      ? `never (last span at ${r.secondsToLastSpan})`
      : r.secondsToEverySpan.toFixed(2),
  );
  row('last span, seconds after the last publish', (r) =>
    r.secondsAfterLastPublish === undefined ? 'n/a' : r.secondsAfterLastPublish.toFixed(2),
  );
  row('bridge events/s (to every span)', (r) =>
    r.eventsPerSecond === undefined ? 'n/a' : fmt(r.eventsPerSecond),
  );
  row('bridge / bare consumer alone', (r) =>
    r.ratioToBareAlone === undefined ? 'n/a' : percent(r.ratioToBareAlone),
  );
  row('each round: ratio (tasks without a span)', (r) =>
    r.roundRatios === undefined || r.roundRatios.length < 2
      ? 'n/a'
      : r.roundRatios
          .map((ratio, i) => `${percent(ratio)} (${fmt(r.roundTasksWithoutSpan?.[i] ?? 0)})`)
          .join(', '),
  );
  row('bridge tasks/s (to every span)', (r) =>
    r.tasksPerSecond === undefined ? 'n/a' : fmt(r.tasksPerSecond),
  );
  row('seconds at the collector rate (all spans)', (r) =>
    r.collectorBoundSeconds === undefined ? 'n/a' : r.collectorBoundSeconds.toFixed(1),
  );
  row('tasks with a span / published', (r) => `${fmt(r.tasksWithSpan)} / ${fmt(r.tasksPublished)}`);
  row('**tasks without a span (lost)**', (r) => `**${fmt(r.tasksWithoutSpan)}**`);
  row('task spans wrong or incomplete', (r) => fmt(r.wrongTaskSpans));
  row(
    'duplicate task spans (other span id)',
    (r) => `${fmt(r.duplicateTaskSpans)} (${fmt(r.duplicatesWithOtherSpanId)})`,
  );
  row('task spans only at SIGTERM', (r) => fmt(r.tasksDeliveredAtStop));
  row(
    'requests refused / accepted',
    (r) => `${fmt(r.receiver.refusedRequests)} / ${fmt(r.receiver.acceptedRequests)}`,
  );
  row(
    'receiver decode µs per span (share of the run)',
    (r) =>
      `${r.receiver.decodeMicrosecondsPerSpan.toFixed(1)} (${percent(r.receiver.decodeShareOfRun)})`,
  );
  row('kill -9', (r) =>
    r.kill === undefined
      ? 'n/a'
      : `at ${r.kill.atSeconds} s, ${fmt(r.kill.tasksWithSpanAtKill)} spans in; ` +
        (r.kill.restartSeconds === undefined
          ? 'standby took over'
          : `up again in ${r.kill.restartSeconds} s`) +
        `, next span after ${r.kill.nextSpanSeconds} s`,
  );
  row('bridge CPU s per 100k events', (r) => r.cpuSecondsPer100kEvents.toFixed(2));
  row('all cores: bridge / broker / bench / idle', (r) => shares(r.machine));
  row('bare alone, all cores: consumer / broker / bench / idle', (r) => shares(r.bare?.machine));
  row('bridge peak RSS (MiB)', (r) => r.peakRssMiB.toFixed(0));
  row('events lost (bridge counters)', (r) =>
    r.eventsLost === undefined ? 'n/a' : fmt(r.eventsLost),
  );
  row('intake paused (s)', (r) => {
    const paused = r.counters?.['celery_otel_bridge_intake_paused_time_total'];
    return paused === undefined ? 'n/a' : paused.toFixed(1);
  });
  row(
    'bridge-reported drops',
    (r) =>
      Object.entries(r.reportedProblems)
        .map(([k, v]) => `${k}=${fmt(v)}`)
        .join(' ') || 'none',
  );
  row('lag p50 / p99 at half rate (ms)', (r) => {
    const lag = lagOf(r);
    return lag === undefined ? 'n/a' : `${fmt(lag.lagMs.p50)} / ${fmt(lag.lagMs.p99)}`;
  });
  row('half rate: events/s achieved', (r) => {
    const lag = lagOf(r);
    return lag === undefined ? 'n/a' : fmt(lag.achievedEventsPerSecond);
  });
  row('half rate: task spans / tasks', (r) => {
    const lag = lagOf(r);
    return lag === undefined ? 'n/a' : `${fmt(lag.taskSpansReceived)} / ${fmt(lag.tasksPublished)}`;
  });
  let out = table(rows);
  if (limit !== undefined) {
    const trials = limit.bare
      .map(
        (t) =>
          `${fmt(t.events)} events (${t.megabytes} MB): ${t.disconnected ? `disconnected, ${fmt(t.eventsLost)} lost` : 'survived'}, peak buffer ${t.peakOutputBufferMiB} MiB`,
      )
      .join('; ');
    const bridge = limit.bridge
      .map(
        (b) =>
          `${fmt(b.events)} events: ${b.disconnected ? 'disconnected' : 'not disconnected'}, events lost ${b.eventsLost === undefined ? 'n/a' : fmt(b.eventsLost)}, tasks without a span ${fmt(b.tasksWithoutSpan)} / ${fmt(b.tasksPublished)}`,
      )
      .join('; ');
    out +=
      `\n\nRedis pub/sub limit (client-output-buffer-limit ${limit.limit}), full-speed bursts: ` +
      `the bare subscriber alone survives ${limit.bareSurvives === undefined ? 'none' : `${fmt(limit.bareSurvives)} events`}, ` +
      (limit.bareDisconnectedAt === undefined
        ? 'and was disconnected by none of the bursts tried. '
        : `is disconnected at ${fmt(limit.bareDisconnectedAt)} events. `) +
      `Bare: ${trials}. Bridge: ${bridge || 'not run'}.`;
  }
  if (inflight !== undefined) {
    out +=
      `\n\nIn-flight state: ${fmt(inflight.tasks)} tasks received, never finished: RSS ` +
      `${inflight.baselineRssMiB} -> ${inflight.steadyRssMiB} MiB (peak ${inflight.peakRssMiB} MiB) = ` +
      `${fmt(inflight.bytesPerTask)} bytes per in-flight task` +
      (inflight.evicted > 0 ? ` (${fmt(inflight.evicted)} given up on, not counted)` : '');
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

function version(command: string, args: string[], pattern: RegExp): string {
  try {
    const text = execFileSync(command, args, { encoding: 'utf8', stdio: 'pipe' });
    return pattern.exec(text)?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const modeLabel = (broker: Broker, mode: Mode): string =>
  `${broker === 'amqp' ? 'RabbitMQ' : 'Redis'} ${mode}`;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const log = (text: string): void => {
    process.stderr.write(`[bench +${Math.round((Date.now() - started) / 1000)}s] ${text}\n`);
  };
  const receiver = new BenchReceiver();
  receiver.latencyMs = args.collectorLatencyMs;
  const otlpEndpoint = await receiver.start();
  const { vhost, isolated } = await createVhost();
  if (!isolated) {
    process.stderr.write(
      'bench: rabbitmqctl unavailable: using vhost "/" (with an exchange of its own)\n',
    );
  }
  const redis = args.brokers.includes('redis') ? await startOwnRedis(await freePort()) : undefined;
  if (redis !== undefined) children.add({ kill: () => void redis.stop() });
  const stateDir = mkdtempSync(`${tmpdir()}/celery-otel-bench-`);
  cleanups.push(() => rmSync(stateDir, { recursive: true, force: true }));
  const ctx: Context = {
    args,
    shapes: loadShapes(),
    receiver,
    otlpEndpoint,
    amqpUrl: amqpUrl(args.host, vhost),
    redisUrl: redis?.url ?? 'redis://127.0.0.1:6379',
    exchange: `celeryev-bench-${randomUUID().slice(0, 8)}`,
    stateDir,
    httpPortFlag: bridgeHasFlag('--http-port'),
    log,
  };
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  const revision = bridgeRevision();
  const machine =
    `${cpus().length} cores (${cpuModel}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ` +
    `RabbitMQ ${version('rabbitmqctl', ['-q', 'version'], /(\S+)/)}, ` +
    `Redis ${version('redis-server', ['--version'], /v=(\S+)/)}`;
  const runs: BridgeRunResult[] = [];
  const lags: LagResult[] = [];
  let limit: RedisLimitResult | undefined;
  let inflight: InflightResult | undefined;
  let profile: ProfileSummary | undefined;
  const logRun = (run: BridgeRunResult): void =>
    log(
      `  ${run.label}: ${run.secondsToEverySpan === undefined ? `not every span (last at ${run.secondsToLastSpan} s)` : `every span in ${run.secondsToEverySpan} s`}, ` +
        `tasks without a span ${fmt(run.tasksWithoutSpan)} / ${fmt(run.tasksPublished)}` +
        (run.ratioToBareAlone === undefined
          ? ''
          : `, ${percent(run.ratioToBareAlone)} of bare alone`),
    );
  const done = (run: BridgeRunResult): void => {
    runs.push(run);
    logRun(run);
  };
  try {
    for (const { broker, mode } of combos(args)) {
      const name = modeLabel(broker, mode);
      const events = { events: args.events };
      // The ceilings first, each alone on the machine, on the same burst, then the bridge; in
      // rounds, so that a machine whose speed drifts (a VM: the same work took up to twice as
      // long from one minute to the next here) weighs on the bare runs and the bridge's alike.
      // Each bridge run is compared with the bare run of its own round; the median round counts.
      const shapes: ('backlog' | 'live')[] = broker === 'amqp' ? ['backlog', 'live'] : ['live'];
      const rounds = mode === 'unbatched' ? 1 : args.rounds;
      const bare = new Map<Shape, BareResult>();
      const byShape = new Map<Shape, BridgeRunResult[]>(shapes.map((shape) => [shape, []]));
      for (let round = 1; round <= rounds; round++) {
        const of = rounds > 1 ? ` (round ${round} of ${rounds})` : '';
        const roundBare = new Map<Shape, BareResult>();
        for (const shape of shapes) {
          log(`${name}: bare consumer alone, ${shape}, ${fmt(args.events)} events${of}`);
          const result = await runBareAlone(ctx, broker, mode, shape);
          roundBare.set(shape, result);
          log(
            `  ${fmt(result.eventsPerSecond)} events/s, ${fmt(result.eventsLost)} lost, ${result.disconnects} disconnects`,
          );
        }
        for (const shape of shapes) {
          log(`${name}: bridge, ${shape}${of}`);
          const run = await runBridge(ctx, {
            label: `${name}, ${shape === 'backlog' ? 'backlog' : 'live burst'}`,
            broker,
            mode,
            shape,
            size: events,
            seed: 1,
            bare: roundBare.get(shape),
          });
          logRun(run);
          byShape.get(shape)?.push(run);
        }
      }
      for (const shape of shapes) {
        const median = medianRound(byShape.get(shape) ?? []);
        if (median === undefined) continue;
        if (median.bare !== undefined) bare.set(shape, median.bare);
        if (rounds > 1)
          log(
            `  ${median.label}: median of ${rounds} rounds ${percent(median.ratioToBareAlone ?? 0)} (${(median.roundRatios ?? []).map(percent).join(', ')})`,
          );
        runs.push(median);
      }
      const live = bare.get('live');
      if (broker === 'redis' && live !== undefined) {
        // Issue 5's Redis target: the bridge takes half the bare consumer's rate, losing nothing.
        const pace = live.eventsPerSecond / 2;
        log(`${name}: bridge, paced at ${fmt(Math.round(pace))} events/s (half the bare consumer)`);
        done(
          await runBridge(ctx, {
            label: `${name}, paced ½`,
            broker,
            mode,
            shape: 'paced',
            size: events,
            seed: 1,
            pace,
            bare: live,
          }),
        );
      }
      if (mode === 'batched' && args.slowTasks > 0) {
        const slow: SlowCollector = {
          spansPerSecond: args.slowRate,
          mode: args.slowMode,
          refuseStatus: args.slowStatus,
        };
        log(
          `${name}: bridge, ${fmt(args.slowTasks)} tasks, collector at ${fmt(args.slowRate)} spans/s`,
        );
        done(
          await runBridge(ctx, {
            label: `${name}, slow collector`,
            broker,
            mode,
            shape: 'live',
            size: { tasks: args.slowTasks },
            seed: 5,
            slow,
          }),
        );
      }
      if (broker === 'amqp' && mode === 'batched' && args.killAt > 0) {
        log(`${name}: bridge, kill -9 at ${percent(args.killAt)} of the spans, restart`);
        done(
          await runBridge(ctx, {
            label: `${name}, kill -9`,
            broker,
            mode,
            shape: 'live',
            size: events,
            seed: 6,
            killAt: args.killAt,
          }),
        );
        log(`${name}: bridge and a standby, kill -9 the active one at ${percent(args.killAt)}`);
        done(
          await runBridge(ctx, {
            label: `${name}, standby takeover`,
            broker,
            mode,
            shape: 'live',
            size: events,
            seed: 7,
            killAt: args.killAt,
            standby: true,
          }),
        );
      }
      const liveRun = runs.find(
        (r) =>
          r.broker === broker &&
          r.mode === mode &&
          r.shape === 'live' &&
          r.slowCollector === undefined,
      );
      const rate = Math.max(
        1000,
        (liveRun?.eventsPerSecond ??
          (liveRun?.eventsPublished ?? 0) / (liveRun?.secondsToLastSpan ?? 1)) / 2,
      );
      if (args.lagSeconds > 0) {
        log(`${name}: lag at ${fmt(Math.round(rate))} events/s for ${args.lagSeconds} s`);
        const lag = await runLag(ctx, broker, mode, rate);
        lags.push(lag);
        log(`  lag p50 ${lag.lagMs.p50} ms, p99 ${lag.lagMs.p99} ms`);
      }
      if (broker === 'redis' && mode === 'batched' && args.redisLimit) {
        log(
          `Redis: the burst at which pub/sub's output buffer limit (${PUBSUB_OUTPUT_BUFFER_LIMIT}) cuts a subscriber`,
        );
        limit = await runRedisLimit(ctx);
      }
    }
    if (args.inflight > 0 && args.brokers.includes('amqp')) {
      log(`in-flight memory: ${fmt(args.inflight)} tasks received, never finished`);
      inflight = await runInflight(ctx, args.inflight);
      log(`  ${inflight.bytesPerTask} bytes per task`);
    }
    if (args.profile && args.brokers.includes('amqp')) {
      const dir = `${HERE}profiles/${Date.now()}`;
      mkdirSync(dir, { recursive: true });
      log(`profile: RabbitMQ batched backlog under --cpu-prof (${dir})`);
      const run = await runBridge(ctx, {
        label: 'profile',
        broker: 'amqp',
        mode: 'batched',
        shape: 'backlog',
        size: { events: args.events },
        seed: 1,
        nodeOptions: ['--cpu-prof', `--cpu-prof-dir=${dir}`],
      });
      const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
      if (file !== undefined) {
        profile = summariseProfile(`${dir}/${file}`);
        run.profile = profile;
      }
    }
  } finally {
    for (const child of children) child.kill();
    await receiver.close();
    await deleteVhost(vhost);
    await redis?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
  const date = new Date().toISOString().slice(0, 10);
  const settings =
    `bursts with OTEL_BSP_SCHEDULE_DELAY=${args.scheduleDelayMs}` +
    (args.bridgeArgs.length > 0 ? `, bridge args ${args.bridgeArgs.join(' ')}` : '') +
    (Object.keys(args.bridgeEnv).length > 0
      ? `, bridge env ${Object.entries(args.bridgeEnv)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')}`
      : '');
  process.stdout.write(
    `\nBenchmark, ${date}, ${machine}, bridge ${revision}${args.quick ? ', --quick' : ''} (${settings})\n\n` +
      `${report(runs, lags, limit, inflight, args.collectorLatencyMs)}\n`,
  );
  if (profile !== undefined) process.stdout.write(`\n${printProfile(profile)}\n`);
  const json = { date, machine, revision, args, runs, lags, redisLimit: limit, inflight, profile };
  const jsonText = JSON.stringify(json, null, 2);
  process.stdout.write(`\n${jsonText}\n`);
  writeFileSync(`${HERE}latest.json`, `${jsonText}\n`);
  log(`done in ${Math.round((Date.now() - started) / 1000)} s (JSON also in ${HERE}latest.json)`);
}

process.on('SIGINT', () => {
  for (const child of children) child.kill();
  for (const cleanup of cleanups) cleanup();
  // A vhost left behind is also removed by the next run (createVhost).
  process.exit(130);
});

main().then(
  () => process.exit(0),
  (error: unknown) => {
    for (const child of children) child.kill();
    for (const cleanup of cleanups) cleanup();
    process.stderr.write(
      `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
