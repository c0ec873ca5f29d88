import { resourceFromAttributes } from '@opentelemetry/resources';
import { TaskAssembler } from './assemble/TaskAssembler.js';
import type { FinishedTask } from './assemble/TaskRecord.js';
import type { BridgeOptions } from './config/BridgeOptions.js';
import { type CeleryEvent, isTaskEvent } from './decode/CeleryEvent.js';
import { decodeEventBody, type DecodeSink } from './decode/decodeEventBody.js';
import type { DecodeRejection } from './decode/DecodeRejection.js';
import { createTraceExporter } from './export/createTraceExporter.js';
import { SpanExportQueue } from './export/SpanExportQueue.js';
import { taskSpans, type TaskSpanOptions } from './export/taskSpans.js';
import type { Logger } from './log/Logger.js';
import { AmqpEventSource } from './source/AmqpEventSource.js';
import { describeError } from './source/describeError.js';
import type { EventSource, EventSourceHandlers } from './source/EventSource.js';
import type { RawEventMessage } from './source/RawEventMessage.js';
import { RedisEventSource } from './source/RedisEventSource.js';
import { BridgeStats } from './telemetry/BridgeStats.js';
import { VERSION } from './version.js';

const TICK_MS = 250;
const SUMMARY_INTERVAL_MS = 60_000;

/**
 * The pipeline: source (RabbitMQ or Redis) -> decode -> assemble (TaskAssembler) -> spans
 * (taskSpans) -> bounded export queue -> OTLP exporter.
 */
export class Bridge {
  readonly stats: BridgeStats;
  private readonly assembler: TaskAssembler;
  private readonly exportQueue: SpanExportQueue;
  private readonly source: EventSource;
  private readonly spanOptions: TaskSpanOptions;
  private readonly decodeSink: DecodeSink;
  private timers: NodeJS.Timeout[] = [];
  private connected = false;

  constructor(
    private readonly options: BridgeOptions,
    private readonly logger: Logger,
  ) {
    this.stats = new BridgeStats(logger);
    this.spanOptions = {
      resource: resourceFromAttributes({
        ...options.otlp.resourceAttributes,
        'service.name': options.otlp.serviceName,
        'telemetry.sdk.language': 'nodejs',
      }),
      scope: { name: 'celery-otel-bridge', version: VERSION },
      messagingSystem: options.broker.kind === 'amqp' ? 'rabbitmq' : 'redis',
      maxAttributeLength: options.maxAttributeLength,
      maxCapturedLength: options.maxCapturedLength,
    };
    this.exportQueue = new SpanExportQueue(
      createTraceExporter(options.otlp),
      options.exportQueue,
      this.stats,
    );
    this.assembler = new TaskAssembler(options.assembler, (task) => this.export(task), this.stats);
    this.decodeSink = {
      event: (event) => this.onEvent(event),
      reject: (rejection, count) => this.stats.rejected(rejection, count),
    };
    const handlers: EventSourceHandlers = {
      message: (message) => this.onMessage(message),
      rejected: (rejection: DecodeRejection) => this.stats.rejected(rejection, 1),
      connection: (state, detail) => {
        this.connected = state === 'connected';
        if (state === 'connected') this.logger.info(detail);
        else {
          this.stats.brokerDisconnected();
          this.logger.warn(`${detail}; reconnecting`);
        }
      },
    };
    this.source =
      options.broker.kind === 'amqp'
        ? new AmqpEventSource(
            {
              broker: options.broker,
              exchange: options.eventsExchange,
              queue: options.amqp,
              connectTimeoutMs: options.connectTimeoutMs,
            },
            handlers,
            logger,
          )
        : new RedisEventSource(
            {
              broker: options.broker,
              exchange: options.eventsExchange,
              channels: options.redis,
              connectTimeoutMs: options.connectTimeoutMs,
            },
            handlers,
            logger,
          );
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
      tracesUrl: this.options.otlp.tracesUrl,
      protocol: this.options.otlp.protocol,
    });
    this.timers.push(setInterval(() => this.assembler.tick(), TICK_MS).unref());
    this.timers.push(setInterval(() => this.stats.logSummary(), SUMMARY_INTERVAL_MS).unref());
    await this.source.start();
  }

  /** Graceful stop: stop consuming, export every finished task, flush the exporter. */
  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    await this.source.stop();
    this.connected = false;
    this.assembler.flushHeld();
    await this.exportQueue.shutdown();
    this.stats.logSummary();
    this.logger.info('stopped', {
      spansExported: this.stats.spansExported,
      tasksInFlight: this.assembler.inFlightCount,
    });
  }

  /** Exports what is queued now (for tests and graceful stops). */
  async flush(): Promise<void> {
    this.assembler.tick();
    await this.exportQueue.flush();
  }

  private onMessage(message: RawEventMessage): void {
    try {
      decodeEventBody(message, { maxMessageBytes: this.options.maxMessageBytes }, this.decodeSink);
    } catch (error) {
      // A bug must cost one message, never the bridge.
      this.stats.rejected(
        {
          reason: 'invalid_field',
          detail: `internal error while handling an event: ${describeError(error)}`,
        },
        1,
      );
    }
  }

  private onEvent(event: CeleryEvent): void {
    this.stats.event(event.type);
    if (isTaskEvent(event)) this.assembler.handle(event);
  }

  private export(task: FinishedTask): void {
    this.stats.taskExported();
    this.exportQueue.add(taskSpans(task, this.spanOptions));
  }
}
