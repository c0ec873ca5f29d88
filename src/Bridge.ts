import { type Resource, resourceFromAttributes } from '@opentelemetry/resources';
import { AbandonedTaskSweeper } from './assemble/AbandonedTaskSweeper.js';
import { TaskAssembler } from './assemble/TaskAssembler.js';
import type { FinishedTask } from './assemble/TaskRecord.js';
import { BeatTracker } from './beat/BeatTracker.js';
import { beatMetricData } from './metrics/beatMetricData.js';
import { beatRunSpan } from './beat/beatRunSpan.js';
import type { BridgeOptions } from './config/BridgeOptions.js';
import { isBeatEvent } from './decode/BeatEvent.js';
import {
  type CeleryEvent,
  isTaskContextEvent,
  isTaskCustomEvent,
  isTaskEvent,
  isWorkerEvent,
} from './decode/CeleryEvent.js';
import { decodeEventBody, type DecodeOptions, type DecodeSink } from './decode/decodeEventBody.js';
import type { DecodeRejection } from './shared/DecodeRejection.js';
import { EventStreamDiagnosis } from './diagnose/EventStreamDiagnosis.js';
import { createTraceExporter } from './export/createTraceExporter.js';
import { DEFAULT_MAX_SPAN_BYTES } from './export/ProtobufSpanSerializer.js';
import { SpanExportQueue } from './export/SpanExportQueue.js';
import { TaskResources } from './export/TaskResources.js';
import { taskSpans, type TaskSpanOptions } from './export/taskSpans.js';
import { HttpServer } from './http/HttpServer.js';
import { prometheusTextHandler } from './http/prometheusTextHandler.js';
import type { Logger } from './log/Logger.js';
import { redactUrl } from './log/redact.js';
import { BridgeMetrics } from './metrics/BridgeMetrics.js';
import { createMeterProvider, type MeterSetup } from './metrics/createMeterProvider.js';
import { detectBridgeResource } from './metrics/detectBridgeResource.js';
import { MetricLabels } from './metrics/MetricLabels.js';
import { registerIntakeMetrics } from './metrics/IntakeMetrics.js';
import { QueueLengthPoller } from './metrics/QueueLengthPoller.js';
import { BridgeMetricProducer } from './metrics/BridgeMetricProducer.js';
import { WorkerLiveness } from './assemble/WorkerLiveness.js';
import type { Broker } from './brokers/Broker.js';
import { createBroker } from './brokers/createBroker.js';
import { EnableEventsBroadcaster } from './brokers/EnableEventsBroadcaster.js';
import type { EventSourceHandlers } from './brokers/EventSource.js';
import type { RawEventMessage } from './shared/RawEventMessage.js';
import { SavedTasks } from './state/SavedTasks.js';
import { StateFile } from './state/StateFile.js';
import { BridgeStats } from './telemetry/BridgeStats.js';
import { guarded } from './shared/guarded.js';
import { VERSION } from './version.js';

const TICK_MS = 250;
/** The final metrics push on stop gets this long. */
const SHUTDOWN_METRICS_MS = 2000;
const SUMMARY_INTERVAL_MS = 60_000;
/** How often beat runs are checked for being missed and beat for being gone. */
const BEAT_CHECK_MS = 1000;
/** Workers tracked for liveness at most (a flood of hostnames cannot grow memory). */
const MAX_WORKERS = 10_000;
/**
 * A graceful stop waits this long at most for the collector to accept the last spans (within the
 * 30 s a container runtime gives by default); past it, what is not safe stays unacknowledged in
 * RabbitMQ for the next start.
 */
const STOP_SAFE_MS = 10_000;
/** Pauses of the intake are logged at most once in this long (they come in runs under load). */
const PAUSE_LOG_INTERVAL_MS = 60_000;
/**
 * Longest the start waits for the exporter (its send thread loading the SDK's exporter) before
 * consuming: past it, the first exports wait in the queue as they would for a slow collector.
 */
const EXPORTER_READY_MS = 10_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * The pipeline: source (RabbitMQ or Redis) -> decode -> assemble (TaskAssembler) -> spans
 * (taskSpans) -> bounded export queue -> OTLP exporter; plus the metrics, the HTTP listener,
 * the state file and the timers that give up on tasks that will never finish.
 */
export class Bridge {
  readonly stats: BridgeStats;
  private readonly assembler: TaskAssembler;
  private readonly exportQueue: SpanExportQueue;
  private readonly broker: Broker;
  private readonly spanOptions: TaskSpanOptions;
  private readonly decodeOptions: DecodeOptions;
  private readonly decodeSink: DecodeSink;
  private readonly meters: MeterSetup;
  /** What the event stream shows is wrong with the Celery setup (logged once, a gauge). */
  private readonly diagnosis: EventStreamDiagnosis;
  /** The resource of the bridge's own health metrics (detectBridgeResource). */
  private readonly bridgeResource: Resource;
  private readonly metrics: BridgeMetrics;
  private readonly queueLengths: QueueLengthPoller;
  private readonly httpServer: HttpServer | undefined;
  private timers: NodeJS.Timeout[] = [];
  /** `--state-file`: unfinished tasks kept across restarts; undefined with `none`. */
  private readonly savedTasks: SavedTasks | undefined;
  private readonly sweeper: AbandonedTaskSweeper;
  private readonly liveness: WorkerLiveness;
  /** Periodic tasks, from the beat companion's events (src/beat/). */
  private readonly beat: BeatTracker;
  /** `--enable-events`: broadcasts Celery's enable_events command while the bridge runs. */
  private broadcaster: EnableEventsBroadcaster | undefined;
  private connected = false;
  private disconnectedSince: number | undefined;
  private connectionDetail = 'not connected yet';
  private httpPort: number | undefined;
  private stopping = false;
  private stopDeadlineMs = Number.POSITIVE_INFINITY;
  /** Resolves false STOP_SAFE_MS after a stop began: checkpoints under way give up then. */
  private stopTimedOut: () => void = () => undefined;
  private readonly stopTimeout = new Promise<boolean>(
    (resolve) => (this.stopTimedOut = () => resolve(false)),
  );
  /** Flow control: since when the intake is paused, and the time paused before that. */
  private pausedSinceMs: number | undefined;
  private pausedTotalMs = 0;
  private pausesSinceLog = 0;
  private pauseLoggedAtMs = Number.NEGATIVE_INFINITY;
  /** When the message being decoded arrived (epoch seconds), read once per message. */
  private arrivalSeconds = Date.now() / 1000;
  private readonly arrivalMs = (): number => this.arrivalSeconds * 1000;

  constructor(
    private readonly options: BridgeOptions,
    private readonly logger: Logger,
  ) {
    this.stats = new BridgeStats(logger);
    const handlers: EventSourceHandlers = {
      message: (message) => this.onMessage(message),
      rejected: (rejection: DecodeRejection, count: number) =>
        this.stats.rejected(rejection, count),
      checkpoint: () => this.checkpoint(),
      activate: () => this.savedTasks?.start() ?? Promise.resolve(),
      connection: (state, detail) => {
        // One outage is one disconnect and one warning, however often a source reports it
        // (EventSourceHandlers.connection); /readyz says the latest detail meanwhile.
        const outageStartedMs = this.disconnectedSince;
        if (state === 'disconnected') {
          if (outageStartedMs === undefined) {
            this.disconnectedSince = Date.now();
            this.stats.brokerDisconnected();
            this.logger.warn(`${detail}; reconnecting`);
          }
        } else {
          this.disconnectedSince = undefined;
          if (outageStartedMs === undefined) this.logger.info(detail);
          else {
            this.sweeper.afterOutage();
            const away = ((Date.now() - outageStartedMs) / 1000).toFixed(1);
            this.logger.info(`${detail} after ${away} s away`);
          }
        }
        this.connected = state === 'connected';
        this.connectionDetail = detail;
      },
    };
    this.broker = createBroker(options, handlers, logger);
    const resource: Resource = resourceFromAttributes({
      ...options.otlp.resourceAttributes,
      'service.name': options.otlp.serviceName,
      'telemetry.sdk.language': 'nodejs',
    });
    const scope = { name: 'celery-otel-bridge', version: VERSION };
    this.spanOptions = {
      resource,
      resources: new TaskResources(
        resource.attributes,
        options.otlp.serviceName,
        options.otlp.serviceNameRules,
      ),
      scope,
      messagingSystem: this.broker.messagingSystem,
      maxAttributeLength: options.maxAttributeLength,
      maxCapturedLength: options.maxCapturedLength,
    };
    this.exportQueue = new SpanExportQueue(
      createTraceExporter(
        options.otlp,
        options.exporter,
        (where, error) => this.stats.internalError(where, error),
        {
          // Never below what the attribute limit lets an ordinary span reach.
          maxSpanBytes: Math.max(DEFAULT_MAX_SPAN_BYTES, 16 * options.maxAttributeLength),
          dropped: (reason, count, detail) => this.stats.dropped(reason, count, detail),
        },
      ),
      options.exportQueue,
      this.stats,
    );
    this.exportQueue.onPressure((full) => this.onExportPressure(full));
    this.assembler = new TaskAssembler(options.assembler, (task) => this.export(task), this.stats);
    this.savedTasks =
      options.stateFile === undefined
        ? undefined
        : new SavedTasks(
            new StateFile(options.stateFile),
            this.assembler,
            logger,
            options.stateSnapshotIntervalMs,
            () => this.spansSettled(),
          );
    this.decodeOptions = {
      maxMessageBytes: options.maxMessageBytes,
      maxFieldLength: options.maxAttributeLength,
      // The clock is read once per message: the diagnosis and the lag of its events use it too.
      nowEpochSeconds: () => (this.arrivalSeconds = Date.now() / 1000),
    };
    this.decodeSink = {
      event: (event) => this.onEvent(event),
      reject: (rejection, count) => this.stats.rejected(rejection, count),
      truncated: (field, count) => this.stats.truncated(field, count),
    };
    const metricsOptions = options.metrics;
    this.liveness = new WorkerLiveness(metricsOptions.workerForgetAfterMs, MAX_WORKERS);
    this.sweeper = new AbandonedTaskSweeper(this.assembler, this.liveness, this.stats, logger, {
      maxTaskAgeMs: options.maxTaskAgeMs,
      outageGraceMs: options.outageGraceMs,
    });
    const labels = new MetricLabels(metricsOptions.maxTaskNames, metricsOptions.workerAttribute);
    this.queueLengths = new QueueLengthPoller(
      this.broker.queueLengths,
      metricsOptions.queues,
      metricsOptions.queueLengthIntervalMs,
      logger,
    );
    this.beat = new BeatTracker(
      options.beat,
      (run) => this.exportQueue.add([beatRunSpan(run, this.spanOptions)]),
      logger,
      (taskId) => this.assembler.peek(taskId),
    );
    const producer = new BridgeMetricProducer(
      (now) => [...this.metrics.collect(now), ...beatMetricData(this.beat, Date.now() / 1000, now)],
      scope,
    );
    this.diagnosis = new EventStreamDiagnosis(logger, () => this.arrivalSeconds);
    const diagnosis = new BridgeMetricProducer((now) => this.diagnosis.metrics(now), scope);
    this.bridgeResource = detectBridgeResource(metricsOptions.resourceDetectors, VERSION);
    this.meters = createMeterProvider(
      metricsOptions,
      this.bridgeResource,
      [producer, diagnosis],
      resource,
    );
    this.metrics = new BridgeMetrics(this.meters.provider.getMeter(scope.name, scope.version), {
      stats: this.stats,
      labels,
      liveness: this.liveness,
      forEachInFlight: (visit) => this.assembler.forEachInFlight(visit),
      forEachInFlightSince: (visit) => this.assembler.forEachInFlightSince(visit),
      maxExceptionTypes: metricsOptions.maxTaskNames,
      inFlightCount: () => this.assembler.inFlightCount,
      inFlightBytes: () => this.assembler.inFlightBytes,
      queueLengths: () => this.queueLengths.latest,
      brokerConnected: () => this.connected,
    });
    registerIntakeMetrics(this.meters.provider.getMeter(scope.name, scope.version), {
      paused: () => this.pausedSinceMs !== undefined,
      pausedSeconds: () =>
        (this.pausedTotalMs +
          (this.pausedSinceMs === undefined ? 0 : Date.now() - this.pausedSinceMs)) /
        1000,
      brokerBacklog: () => this.broker.backlogMessages(),
      bufferedBytes: () => this.broker.bufferedBytes(),
      spansQueued: () => this.exportQueue.held,
    });
    this.httpServer =
      metricsOptions.httpPort === 0
        ? undefined
        : new HttpServer(metricsOptions.httpHost, metricsOptions.httpPort, {
            metrics: prometheusTextHandler(this.meters.prometheus),
            readiness: () => ({ ready: this.connected, detail: this.connectionDetail }),
            failed: (error) => this.stats.internalError('metrics_handler', error),
          });
  }

  /** True while connected to the broker and consuming. */
  get isConsuming(): boolean {
    return this.connected;
  }

  get inFlightTasks(): number {
    return this.assembler.inFlightCount;
  }

  async start(): Promise<void> {
    this.logger.info('starting', {
      version: VERSION,
      broker: this.options.broker.redactedUrl,
      exporter: this.options.exporter.kind,
      tracesUrl: redactUrl(this.options.otlp.url),
      protocol: this.options.otlp.protocol,
    });
    // Held tasks go out only while the export queue has room below its high-water mark: a
    // backlog drained at full speed holds thousands, and the pause of the intake cannot stop them.
    const report = (where: string, error: unknown): void => this.stats.internalError(where, error);
    this.timers.push(
      setInterval(
        guarded('tick', report, () => this.assembler.tick(this.mayExport)),
        TICK_MS,
      ).unref(),
    );
    this.timers.push(
      setInterval(
        guarded('summary', report, () => this.stats.logSummary()),
        SUMMARY_INTERVAL_MS,
      ).unref(),
    );
    this.timers.push(
      setInterval(
        guarded('beat', report, () => this.beat.check(Date.now() / 1000)),
        BEAT_CHECK_MS,
      ).unref(),
    );
    this.sweeper.start();
    // The state file is loaded when the source activates (before its first message): at start on
    // Redis, on the first delivery on RabbitMQ, where a standby bridge may wait long for it.
    // The host detector's machine id comes asynchronously; /metrics and the push need it first.
    await this.bridgeResource.waitForAsyncAttributes?.();
    if (this.httpServer !== undefined) {
      // Started before the broker so /healthz answers (and /readyz says why not) while connecting.
      this.httpPort = await this.httpServer.start();
      this.logger.info('serving /metrics, /healthz and /readyz', {
        host: this.options.metrics.httpHost,
        port: this.httpPort,
      });
    }
    await this.exportQueue.ready(EXPORTER_READY_MS);
    await this.broker.source.start();
    if (this.options.enableEvents.enabled) {
      this.broadcaster = new EnableEventsBroadcaster(
        this.broker.controlPublisher(this.options.enableEvents.controlExchange),
        {
          brokerUrl: this.options.broker.redactedUrl,
          intervalMs: this.options.enableEvents.intervalMs,
        },
        this.logger,
      );
      this.broadcaster.start();
    }
    this.queueLengths.start();
  }

  /** The HTTP listener's port once started (useful when configured as an ephemeral port). */
  get listeningPort(): number | undefined {
    return this.httpPort;
  }

  /** Graceful stop: stop consuming, export every finished task, flush the exporter. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopDeadlineMs = Date.now() + STOP_SAFE_MS;
    setTimeout(this.stopTimedOut, STOP_SAFE_MS).unref();
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    this.sweeper.stop();
    await this.broadcaster?.stop();
    // The source hands on what it took, then makes it safe (a last checkpoint) and disconnects.
    await this.broker.source.stop();
    this.connected = false;
    this.connectionDetail = 'stopping';
    await this.flushHeld();
    // One deadline for the whole stop: the checkpoint above, the last save, the last export.
    await this.savedTasks?.stop(Math.max(0, this.stopDeadlineMs - Date.now()));
    // No task-sent comes any more: task counts waiting for one go into the last export.
    this.metrics.flushWaitingCounts();
    await Promise.all([
      Promise.race([
        this.exportQueue.shutdown(),
        sleep(Math.max(SHUTDOWN_METRICS_MS, this.stopDeadlineMs - Date.now())),
      ]),
      this.queueLengths.stop(),
      // One last metrics push, but a collector that is down must not hold the exit for long.
      Promise.race([
        this.meters.provider.shutdown().catch(() => undefined),
        sleep(SHUTDOWN_METRICS_MS),
      ]),
      this.httpServer?.stop(),
    ]);
    this.stats.logSummary();
    this.logger.info('stopped', {
      spansExported: this.stats.total('spansExported'),
      tasksInFlight: this.assembler.inFlightCount,
    });
  }

  /** Exports what is queued now (for tests and graceful stops). */
  async flush(): Promise<void> {
    this.assembler.tick(this.mayExport);
    await this.exportQueue.flush();
  }

  /** Resolves once every span finished until now was accepted by the collector (or dropped). */
  private spansSettled(): Promise<void> {
    return this.exportQueue.settled(this.exportQueue.mark());
  }

  /**
   * What the messages handled so far contributed is safe: their finished spans accepted, their
   * unfinished tasks in the state file (one coalesced write). On a stop, held tasks go out first
   * and the wait is bounded.
   */
  private checkpoint(): Promise<boolean> {
    const safe = (): Promise<boolean> =>
      this.savedTasks !== undefined
        ? this.savedTasks.checkpoint()
        : this.spansSettled().then(() => true);
    // A checkpoint that began before a stop gives up with it too, so a failing collector cannot
    // hold the stop: what is not safe stays unacknowledged for the next bridge.
    return Promise.race([this.stopping ? this.flushHeld().then(safe) : safe(), this.stopTimeout]);
  }

  /** Room below the export queue's high-water mark: held tasks may go out. */
  private readonly mayExport = (): boolean => !this.exportQueue.isUnderPressure;

  /** On a stop: every held task goes out, as fast as the export queue takes them. */
  private async flushHeld(): Promise<void> {
    while (!this.assembler.flushHeld(this.mayExport) && Date.now() < this.stopDeadlineMs) {
      await sleep(20);
    }
    this.assembler.flushHeld();
  }

  /** Flow control: the export queue passed its high-water mark (true) or drained (false). */
  private onExportPressure(full: boolean): void {
    const now = Date.now();
    if (full) {
      if (this.pausedSinceMs !== undefined) return;
      this.pausedSinceMs = now;
      this.broker.source.pause();
      this.pausesSinceLog++;
      if (now - this.pauseLoggedAtMs >= PAUSE_LOG_INTERVAL_MS) {
        this.logger.info(
          'the collector is slower than the event stream: taking nothing from the broker until the export queue drains (nothing is dropped; see celery_otel_bridge_intake_paused_time_total)',
          { pauses: this.pausesSinceLog, spansQueued: this.exportQueue.held },
        );
        this.pauseLoggedAtMs = now;
        this.pausesSinceLog = 0;
      }
      return;
    }
    if (this.pausedSinceMs === undefined) return;
    this.pausedTotalMs += now - this.pausedSinceMs;
    this.pausedSinceMs = undefined;
    this.broker.source.resume();
  }

  private onMessage(message: RawEventMessage): void {
    try {
      decodeEventBody(message, this.decodeOptions, this.decodeSink);
    } catch (error) {
      // A bug must cost one message, never the bridge; it is counted as a bug, not as bad input.
      this.stats.internalError('handle_message', error);
    }
  }

  private onEvent(event: CeleryEvent): void {
    // Custom types are the user's: one series for all of them (no unbounded label values).
    this.stats.event(isTaskCustomEvent(event) ? 'task-custom' : event.type);
    this.diagnosis.onEvent(event);
    if (isTaskCustomEvent(event)) {
      this.assembler.handleCustom(event);
    } else if (isTaskEvent(event)) {
      // Metrics first: they read what the task looked like before this event.
      const terminalEcho = this.assembler.isTerminalEcho(event);
      this.metrics.onTaskEvent(
        event,
        this.assembler.peek(event.uuid),
        this.arrivalMs,
        terminalEcho,
      );
      if (event.type === 'task-sent' && event.queue) this.queueLengths.noteQueue(event.queue);
      this.beat.onTaskEvent(event);
      this.assembler.handle(event, terminalEcho);
    } else if (isTaskContextEvent(event)) {
      // The worker companion's trace context / group / chord ids (docs/companion.md).
      this.assembler.handleContext(event);
    } else if (isWorkerEvent(event)) {
      this.metrics.onWorkerEvent(event);
    } else if (isBeatEvent(event)) {
      const now = Date.now() / 1000;
      if (event.type === 'beat-schedule') this.beat.onSchedule(event, now);
      else if (event.type === 'beat-heartbeat') this.beat.onHeartbeat(event, now);
      else this.beat.onRun(event, now);
    }
  }

  private export(task: FinishedTask): void {
    // Tasks given up on in bulk (a full in-flight table, the age limit) must not crowd out the
    // spans of tasks that really finished.
    const givenUp = task.completeness === 'evicted' || task.completeness === 'expired';
    const spans = taskSpans(task, this.spanOptions);
    // The task span (first) is what the runtime and queue-wait exemplars point at.
    const context = spans[0]?.spanContext();
    if (context !== undefined)
      this.metrics.onTaskExported(task.record.id, context.traceId, context.spanId);
    this.exportQueue.add(spans, givenUp);
  }
}
