import type { Attributes, HrTime, Meter } from '@opentelemetry/api';
import type { MetricData } from '@opentelemetry/sdk-metrics';
import { parsePythonException } from '../decode/parsePythonException.js';
import type { TaskRecord } from '../assemble/TaskRecord.js';
import type { TaskEvent, WorkerEvent } from '../decode/CeleryEvent.js';
import type { BridgeStats } from '../telemetry/BridgeStats.js';
import type { MetricLabels } from './MetricLabels.js';
import { ExceptionTypeLabels } from './ExceptionTypeLabels.js';
import { SeriesCounter } from './SeriesCounter.js';
import { gaugeMetricData, type StateGauge } from './BridgeMetricProducer.js';
import { SeriesHistogram } from './SeriesHistogram.js';
import { bridgeHealthGauges } from './bridgeHealthGauges.js';
import { TaskExemplars } from './TaskExemplars.js';
import type { WorkerLiveness } from '../assemble/WorkerLiveness.js';
import { observeMetric } from './observeMetric.js';
import { QueueLabelWait } from './QueueLabelWait.js';
import { SeriesKeys } from './SeriesKeys.js';
import {
  ATTR,
  LOADAVG_PERIODS,
  type RuntimeOutcome,
  type TaskEventState,
} from '../shared/attributeSpecs.js';
import {
  type CountedMetric,
  METRIC_SPECS,
  type MetricKey,
  type MetricSpec,
  QUEUE_LABEL_GRACE_MS,
} from '../shared/metricSpecs.js';

/** What the metrics read from the rest of the bridge when they are collected. */
export interface MetricSources {
  readonly stats: BridgeStats;
  readonly liveness: WorkerLiveness;
  readonly labels: MetricLabels;
  /** Each task in flight: its name and where it stands (TaskAssembler `InFlightState`). */
  forEachInFlight(
    visit: (name: string | undefined, state: 'sent' | 'waiting' | 'running' | 'finished') => void,
  ): void;
  inFlightCount(): number;
  /** The estimated heap those tasks hold (TaskAssembler `inFlightBytes`). */
  inFlightBytes?(): number;
  queueLengths(): ReadonlyMap<string, number>;
  /** Connected to the broker and consuming; `celery_otel_bridge.broker.connected` when given. */
  brokerConnected?(): boolean;
  /**
   * Each task in flight with when its state began (epoch seconds, NaN unknown) and its worker
   * (TaskAssembler `forEachInFlightSince`): oldest ages and prefetched counts.
   */
  forEachInFlightSince?(
    visit: (
      name: string | undefined,
      state: 'sent' | 'waiting' | 'running' | 'finished',
      since: number,
      worker: string | undefined,
    ) => void,
  ): void;
  /** Distinct exception types in `celery.task.exceptions` (as --metrics-max-task-names). */
  readonly maxExceptionTypes?: number;
  /** The bridge's clock, epoch ms (tests). */
  nowMs?(): number;
}

/** `celery.task.state` values of the task counter, by event type. */
const STATE_OF_EVENT: Record<TaskEvent['type'], TaskEventState> = {
  'task-sent': 'sent',
  'task-received': 'received',
  'task-started': 'started',
  'task-succeeded': 'succeeded',
  'task-failed': 'failed',
  'task-retried': 'retried',
  'task-revoked': 'revoked',
  'task-rejected': 'rejected',
  'task-cancelled': 'cancelled',
};

const TERMINAL: ReadonlySet<string> = new Set([
  'task-succeeded',
  'task-failed',
  'task-revoked',
  'task-rejected',
]);

/** Series of the task counter and of each histogram at most, as the SDK's default limit. */
const MAX_TASK_SERIES = 2000;
/** Tasks whose counts wait for their queue at most (QueueLabelWait); past it, counted at once. */
export const MAX_QUEUE_LABEL_WAITS = 50_000;
/** Counts of one task that wait at most: its events, a retry or two included. */
export const MAX_WAITING_COUNTS_PER_TASK = 16;

/** Tasks whose exemplar candidates wait for their span at most (see TaskExemplars). */
const MAX_EXEMPLAR_TASKS = 20_000;

/** Bucket boundaries in seconds: 5 ms to 1 h, for both runtimes and queue waits. */
const DURATION_BUCKETS_S = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
];

/**
 * The bridge's metric instruments, made from their declarations (metricSpecs.ts: names, units and
 * attributes are a documented contract, docs/metrics.md). Task counts, runtimes and queue waits are
 * recorded as events arrive; the bridge's own counters are observed when a reader collects; the
 * gauges of current state (workers, tasks in flight, queue lengths) come from `stateGauges`.
 * https://opentelemetry.io/docs/specs/semconv/general/metrics/
 */
export class BridgeMetrics {
  private readonly tasks: SeriesCounter;
  private readonly runtime: SeriesHistogram;
  private readonly queueWait: SeriesHistogram;
  private readonly lag: SeriesHistogram;
  private readonly exemplars = new TaskExemplars(MAX_EXEMPLAR_TASKS);
  private readonly exceptions: SeriesCounter;
  private readonly exceptionTypes: ExceptionTypeLabels;
  /** Series keys of the per-event counter and the per-task histograms (one cache for all). */
  private readonly keys = new SeriesKeys(2 * MAX_TASK_SERIES);
  /** Counts of tasks whose queue is not known yet (QueueLabelWait). */
  private readonly queueWaits = new QueueLabelWait(
    MAX_QUEUE_LABEL_WAITS,
    MAX_WAITING_COUNTS_PER_TASK,
    QUEUE_LABEL_GRACE_MS,
    (count, queue) => this.countTask(count.name, count.state, queue, count.worker),
  );
  /**
   * A `task-sent` was seen: clients send them (`task_send_sent_event`), so a task's queue may
   * come after its other events. Until then nothing waits for one.
   */
  private sentSeen = false;

  constructor(
    meter: Meter,
    private readonly sources: MetricSources,
  ) {
    const { stats, labels } = sources;
    // Reported through BridgeMetricProducer (see `collect`), as the histograms.
    this.tasks = new SeriesCounter({ ...METRIC_SPECS.tasks, maxSeries: MAX_TASK_SERIES });
    this.exceptions = new SeriesCounter({
      ...METRIC_SPECS.taskExceptions,
      maxSeries: MAX_TASK_SERIES,
    });
    this.exceptionTypes = new ExceptionTypeLabels(sources.maxExceptionTypes ?? 1000);
    // Reported through BridgeMetricProducer (see `collect`), not the SDK's instruments.
    this.runtime = new SeriesHistogram({
      ...METRIC_SPECS.taskRuntime,
      boundaries: DURATION_BUCKETS_S,
      maxSeries: MAX_TASK_SERIES,
    });
    this.queueWait = new SeriesHistogram({
      ...METRIC_SPECS.taskQueueWait,
      boundaries: DURATION_BUCKETS_S,
      maxSeries: MAX_TASK_SERIES,
    });
    this.lag = new SeriesHistogram({
      ...METRIC_SPECS.lag,
      boundaries: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      maxSeries: 1,
    });

    // The bridge's own health: the counters BridgeStats keeps, each observed from its counts.
    for (const [key, spec] of Object.entries(METRIC_SPECS) as [MetricKey, MetricSpec][]) {
      if (spec.counted !== true) continue;
      const metric = key as CountedMetric;
      const attribute = spec.attributes[0]?.name;
      const known = spec.attributes[0]?.values ?? [];
      observeMetric(meter, spec, (observe) => {
        // Without attributes the one series is there from the start, at 0; so is each value of
        // a closed list (the drop reasons), so that `increase()` sees the first drop too rather
        // than a series that starts at 1 (https://prometheus.io/docs/practices/instrumentation/#avoid-missing-metrics).
        if (attribute === undefined) return observe(stats.total(metric));
        const series = stats.series(metric);
        for (const value of known) if (!series.has(value)) observe(0, { [attribute]: value });
        for (const [value, count] of series) observe(count, { [attribute]: value });
      });
    }
    observeMetric(meter, METRIC_SPECS.taskNameOverflow, (observe) =>
      observe(labels.overflowedTaskNames),
    );
  }

  /**
   * The gauges of current state, fresh at each collection (see BridgeMetricProducer for why they
   * are not asynchronous SDK gauges).
   */
  stateGauges(): StateGauge[] {
    const { liveness, labels } = this.sources;
    const workers = liveness.statuses();
    const inFlight = new Map<string, { waiting: number; running: number }>();
    this.sources.forEachInFlight((taskName, state) => {
      // Only sent: still in the broker's queue. Finished: held for stragglers, no longer running.
      if (state !== 'waiting' && state !== 'running') return;
      const name = labels.currentTaskName(taskName);
      const entry = inFlight.get(name) ?? { waiting: 0, running: 0 };
      entry[state]++;
      inFlight.set(name, entry);
    });
    const inFlightPoints: StateGauge['points'][number][] = [];
    for (const [name, entry] of inFlight) {
      inFlightPoints.push(
        {
          attributes: { [ATTR.TASK_NAME]: name, [ATTR.TASK_STATE]: 'waiting' },
          value: entry.waiting,
        },
        {
          attributes: { [ATTR.TASK_NAME]: name, [ATTR.TASK_STATE]: 'running' },
          value: entry.running,
        },
      );
    }
    return [
      ...this.ageAndPrefetchGauges(workers.map((w) => w.hostname)),
      {
        ...METRIC_SPECS.workerTasksProcessed,
        points: workers.map((w) => ({
          attributes: { [ATTR.WORKER_HOSTNAME]: w.hostname },
          value: w.processed,
        })),
      },
      {
        ...METRIC_SPECS.workerLoadavg,
        points: workers.flatMap((w) =>
          w.loadavg === undefined
            ? []
            : LOADAVG_PERIODS.map((period, i) => ({
                attributes: {
                  [ATTR.WORKER_HOSTNAME]: w.hostname,
                  [ATTR.LOADAVG_PERIOD]: period,
                },
                value: w.loadavg?.[i] ?? 0,
              })),
        ),
      },
      {
        ...METRIC_SPECS.workerUp,
        points: workers.map((w) => ({
          attributes: { [ATTR.WORKER_HOSTNAME]: w.hostname },
          value: w.up ? 1 : 0,
        })),
      },
      {
        ...METRIC_SPECS.workerTasksActive,
        points: workers.map((w) => ({
          attributes: { [ATTR.WORKER_HOSTNAME]: w.hostname },
          value: w.active,
        })),
      },
      {
        ...METRIC_SPECS.tasksInFlight,
        points: inFlightPoints,
      },
      {
        ...METRIC_SPECS.queueLength,
        points: [...this.sources.queueLengths()].map(([queue, length]) => ({
          attributes: { [ATTR.MESSAGING_DESTINATION_NAME]: queue },
          value: length,
        })),
      },
      {
        ...METRIC_SPECS.tasksTracked,
        points: [{ attributes: {}, value: this.sources.inFlightCount() }],
      },
      ...bridgeHealthGauges(this.sources.brokerConnected?.()),
      {
        ...METRIC_SPECS.tasksTrackedBytes,
        points: [{ attributes: {}, value: this.sources.inFlightBytes?.() ?? 0 }],
      },
    ];
  }

  /**
   * Records one task event. `before` is the task's record before this event was applied, for
   * the times that came earlier (sent, received, the attempt's start). `nowMs` is read for a
   * task's final events (the lag) and while counts wait for a queue (QueueLabelWait).
   */
  onTaskEvent(
    event: TaskEvent,
    before: Readonly<TaskRecord> | undefined,
    nowMs: () => number,
    /** A second terminal event of a run already counted (TaskAssembler `isTerminalEcho`). */
    echo = false,
  ): void {
    const { labels } = this.sources;
    const name = labels.taskName(event.name ?? before?.name);
    const state = STATE_OF_EVENT[event.type];
    const queue = event.queue || before?.queue;
    const worker = event.type === 'task-sent' ? undefined : labels.workerName(event.hostname);
    if (this.queueWaits.size > 0) this.queueWaits.expire(nowMs());
    if (event.type === 'task-sent') {
      this.sentSeen = true;
      this.countTask(name, state, queue, worker);
      this.queueWaits.resolve(event.uuid, queue);
    } else if (queue || !this.sentSeen) {
      this.countTask(name, state, queue, worker);
    } else if (!this.queueWaits.hold(event.uuid, { name, state, worker }, nowMs())) {
      this.sources.stats.taskCountWithoutQueue();
      this.countTask(name, state, queue, worker);
    }
    // Lag is sampled at each task's final events: the ones whose delay decides when its span
    // goes out. (Recording it for every event cost more than the rest of the pipeline.)
    if (TERMINAL.has(event.type)) {
      this.lag.record('', NO_ATTRIBUTES, Math.max(0, nowMs() / 1000 - event.timestamp));
    }
    switch (event.type) {
      case 'task-started': {
        const since = queuedSince(before);
        // Clamped at 0: `task-sent` comes from the client's clock, and Celery's ETA timer may
        // fire a moment early; a start is still one queue wait.
        if (since !== undefined) {
          this.queueWait.record(
            this.keys.key(name, worker ?? ''),
            () => outcome(name, worker),
            Math.max(0, event.timestamp - since),
            (value) => this.exemplars.candidate(event.uuid, value, nowMs()),
          );
        }
        return;
      }
      case 'task-succeeded':
        if (event.runtime !== undefined)
          this.recordRuntime(event.uuid, name, worker, 'success', event.runtime, nowMs);
        return;
      case 'task-failed':
      case 'task-retried': {
        // A second task-failed of the same run (hard time limit) is not a second failure.
        if (event.type === 'task-failed' && !echo && before?.final?.state !== 'FAILURE') {
          this.recordException(name, event);
        }
        const started = openAttemptStart(before, event.timestamp);
        if (started !== undefined) {
          const result = event.type === 'task-failed' ? 'failure' : 'retry';
          this.recordRuntime(event.uuid, name, worker, result, event.timestamp - started, nowMs);
        }
        return;
      }
      default:
        return;
    }
  }

  /** One increment of `celery.tasks`. */
  private countTask(
    name: string,
    state: string,
    queue: string | undefined,
    worker: string | undefined,
  ): void {
    const key = this.keys.key(name, state, queue ?? '', worker ?? '');
    if (!this.tasks.increment(key)) {
      this.tasks.add(key, () => {
        const attributes: Attributes = { [ATTR.TASK_NAME]: name, [ATTR.TASK_STATE]: state };
        if (queue) attributes[ATTR.MESSAGING_DESTINATION_NAME] = queue;
        if (worker !== undefined) attributes[ATTR.WORKER_HOSTNAME] = worker;
        return attributes;
      });
    }
  }

  /** The bridge stops: the counts still waiting for a queue go out, for the last export. */
  flushWaitingCounts(): void {
    this.queueWaits.flush();
  }

  /**
   * The task's spans were handed to the exporter: its runtime and queue-wait observations may be
   * shown as exemplars pointing at its task span.
   */
  onTaskExported(taskId: string, traceId: string, spanId: string): void {
    this.exemplars.resolve(taskId, traceId, spanId);
  }

  private recordException(name: string, event: TaskEvent): void {
    const type = this.exceptionTypes.typeOf(
      parsePythonException(event.exception, event.traceback).type,
    );
    this.exceptions.add(`${name}\u0000${type}`, () => ({
      [ATTR.TASK_NAME]: name,
      [ATTR.ERROR_TYPE]: type,
    }));
  }

  /**
   * `celery.tasks.oldest_age` (by task name, waiting / running) and
   * `celery.worker.tasks.prefetched` (received, not started, for each worker known from its
   * heartbeats: a forged hostname in task events makes no series).
   */
  private ageAndPrefetchGauges(workers: readonly string[]): StateGauge[] {
    const sources = this.sources;
    if (sources.forEachInFlightSince === undefined) return [];
    const { labels } = this.sources;
    const nowS = (this.sources.nowMs?.() ?? Date.now()) / 1000;
    const oldest = new Map<string, { waiting: number; running: number }>();
    const prefetched = new Map<string, number>(workers.map((w) => [w, 0]));
    sources.forEachInFlightSince((taskName, state, since, worker) => {
      if (state !== 'waiting' && state !== 'running') return;
      if (state === 'waiting' && worker !== undefined) {
        const count = prefetched.get(worker);
        if (count !== undefined) prefetched.set(worker, count + 1);
      }
      if (Number.isNaN(since)) return;
      const name = labels.currentTaskName(taskName);
      let entry = oldest.get(name);
      if (entry === undefined) {
        entry = { waiting: Number.POSITIVE_INFINITY, running: Number.POSITIVE_INFINITY };
        oldest.set(name, entry);
      }
      if (since < entry[state]) entry[state] = since;
    });
    const agePoints: StateGauge['points'][number][] = [];
    for (const [name, entry] of oldest) {
      for (const state of ['waiting', 'running'] as const) {
        if (entry[state] === Number.POSITIVE_INFINITY) continue;
        agePoints.push({
          attributes: { [ATTR.TASK_NAME]: name, [ATTR.TASK_STATE]: state },
          // Clock skew between a worker and the bridge can make it negative: 0 then.
          value: Math.max(0, nowS - entry[state]),
        });
      }
    }
    return [
      {
        ...METRIC_SPECS.tasksOldestAge,
        points: agePoints,
      },
      {
        ...METRIC_SPECS.workerTasksPrefetched,
        points: [...prefetched].map(([hostname, value]) => ({
          attributes: { [ATTR.WORKER_HOSTNAME]: hostname },
          value,
        })),
      },
    ];
  }

  private recordRuntime(
    taskId: string,
    name: string,
    worker: string | undefined,
    result: RuntimeOutcome,
    seconds: number,
    nowMs: () => number,
  ): void {
    this.runtime.record(
      this.keys.key(name, worker ?? '', result),
      () => ({ ...outcome(name, worker), [ATTR.TASK_OUTCOME]: result }),
      seconds,
      (value) => this.exemplars.candidate(taskId, value, nowMs()),
    );
  }

  /** Everything the bridge computes itself, for BridgeMetricProducer at each collection. */
  collect(now: HrTime): MetricData[] {
    // A quiet stream runs no event that would expire them: counts that waited long enough go
    // out with this collection.
    this.queueWaits.expire(this.sources.nowMs?.() ?? Date.now());
    const data = [
      ...this.stateGauges().map((gauge) => gaugeMetricData(gauge, now)),
      this.tasks.toMetricData(now),
      this.exceptions.toMetricData(now),
      this.runtime.toMetricData(now),
      this.queueWait.toMetricData(now),
      this.lag.toMetricData(now),
    ];
    this.sources.labels.collected();
    this.exceptionTypes.collected();
    return data;
  }

  onWorkerEvent(event: WorkerEvent): void {
    this.sources.liveness.onEvent(event);
  }
}

const NO_ATTRIBUTES = (): Attributes => ({});

function outcome(name: string, worker: string | undefined): Attributes {
  const attributes: Attributes = { [ATTR.TASK_NAME]: name };
  if (worker !== undefined) attributes[ATTR.WORKER_HOSTNAME] = worker;
  return attributes;
}

/** When the task became runnable: sent (else received), or its ETA if later. */
function queuedSince(record: Readonly<TaskRecord> | undefined): number | undefined {
  if (record === undefined) return undefined;
  // A retry's wait starts when the previous attempt ended, not when the task was first sent.
  const lastEnd = record.attempts.reduce<number | undefined>(
    (latest, attempt) =>
      attempt.endedAt !== undefined && (latest === undefined || attempt.endedAt > latest)
        ? attempt.endedAt
        : latest,
    undefined,
  );
  let since = lastEnd ?? record.sentAt ?? record.receivedAt;
  if (record.eta !== undefined) {
    const eta = Date.parse(record.eta) / 1000;
    if (Number.isFinite(eta) && (since === undefined || eta > since)) since = eta;
  }
  return since;
}

function openAttemptStart(
  record: Readonly<TaskRecord> | undefined,
  at: number,
): number | undefined {
  let best: number | undefined;
  for (const attempt of record?.attempts ?? []) {
    if (attempt.endedAt !== undefined || attempt.startedAt === undefined || attempt.startedAt > at)
      continue;
    if (best === undefined || attempt.startedAt > best) best = attempt.startedAt;
  }
  return best;
}
