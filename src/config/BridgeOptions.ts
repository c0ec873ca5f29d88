import type { TaskAssemblerOptions } from '../assemble/TaskAssembler.js';
import type { BeatTrackerOptions } from '../beat/BeatTracker.js';
import type { SpanExportQueueOptions } from '../export/SpanExportQueue.js';
import type { LogLevel } from '../log/Logger.js';
import type {
  AmqpQueueOptions,
  BrokerEndpoint,
  EnableEventsOptions,
  RedisChannelOptions,
} from '../brokers/BrokerOptions.js';
import type { OtlpTraceOptions, TraceExporterOptions } from '../export/ExportOptions.js';
import type { MetricsOptions } from '../metrics/MetricsOptions.js';

/** Everything the bridge needs, typed; built once from flags and environment by parseConfig. */
export interface BridgeOptions {
  readonly broker: BrokerEndpoint;
  /** Celery's `event_exchange` setting (`celeryev`). */
  readonly eventsExchange: string;
  readonly amqp: AmqpQueueOptions;
  readonly redis: RedisChannelOptions;
  readonly otlp: OtlpTraceOptions;
  readonly metrics: MetricsOptions;
  readonly exportQueue: SpanExportQueueOptions;
  readonly assembler: TaskAssemblerOptions;
  /** Periodic tasks (beat companion events): docs/periodic-tasks.md. */
  readonly beat: BeatTrackerOptions;
  /** Longest string attribute value; longer ones keep head and tail. */
  readonly maxAttributeLength: number;
  /** Longest args / kwargs / result value when captured. */
  readonly maxCapturedLength: number;
  readonly maxMessageBytes: number;
  /** After a broker outage, tasks in flight with no new event for this long are given up. */
  readonly outageGraceMs: number;
  /** An unfinished task with no event for this long is given up (exported as expired). */
  readonly maxTaskAgeMs: number;
  /** Unfinished tasks are saved here on stop and restored at start; undefined: not kept. */
  readonly stateFile: string | undefined;
  /** Periodic state saves (0: only on a graceful stop). */
  readonly stateSnapshotIntervalMs: number;
  /** Give up (exit 1) when the broker cannot be reached at start for this long. */
  readonly connectTimeoutMs: number;
  readonly logLevel: LogLevel;
  readonly exporter: TraceExporterOptions;
  readonly enableEvents: EnableEventsOptions;
}
