import type { TaskAssemblerOptions } from '../assemble/TaskAssembler.js';
import type { BeatTrackerOptions } from '../beat/BeatTracker.js';
import type { SpanExportQueueOptions } from '../export/SpanExportQueue.js';
import type { LogLevel } from '../log/Logger.js';
import type { BrokerEndpoint } from './brokerUrl.js';

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

/**
 * `--broker-tls-*`: how to verify an `amqps://` / `rediss://` broker and authenticate to it. The
 * files were read at startup; the same settings go to every broker connection the bridge opens.
 */
export interface BrokerTlsSettings {
  /** PEM CA bundle: when set, the only CAs trusted for the broker (not the system's list). */
  readonly ca?: Buffer;
  /** PEM client certificate (chain), for brokers that require client certificates. */
  readonly cert?: Buffer;
  /** PEM private key of `cert`. Secret: never log it. */
  readonly key?: Buffer;
  /** Sent as SNI and matched against the certificate instead of the URL's host. */
  readonly servername?: string;
  /** Skip certificate verification (`--broker-tls-insecure`); warned about at start. */
  readonly insecure: boolean;
}

export type TraceExporterKind = 'otlp' | 'console';

export interface TraceExporterOptions {
  /** `otlp`: spans go to the OTLP endpoint; `console`: finished traces are printed as trees. */
  readonly kind: TraceExporterKind;
  /** Console: a trace whose root task is in is printed after this long without a new span. */
  readonly consoleQuietMs: number;
}

/** `--enable-events`: broadcast Celery's `enable_events` control command, as Flower does. */
export interface EnableEventsOptions {
  readonly enabled: boolean;
  readonly intervalMs: number;
  /** Celery's `control_exchange` setting (`celery`): commands go to `<name>.pidbox`. */
  readonly controlExchange: string;
}

export interface AmqpQueueOptions {
  /** The bridge's own queue bound to the events exchange; it outlives a bridge restart. */
  readonly queueName: string;
  /** x-max-length-bytes: the oldest events are dropped past this while the bridge lags. */
  readonly queueMaxBytes: number;
  /** x-message-ttl: events older than this are dropped by RabbitMQ. */
  readonly queueMessageTtlMs: number;
  /** x-expires: the queue is deleted after this long without a consumer. */
  readonly queueExpiresMs: number;
  /** Unacknowledged messages in flight to the bridge. */
  readonly prefetchCount: number;
}

export interface RedisChannelOptions {
  /** kombu's `global_keyprefix` transport option, prepended to every channel. */
  readonly globalKeyPrefix: string;
  /**
   * kombu's `fanout_prefix` transport option: `/{db}.` by default (`true`), empty when Celery
   * runs with `fanout_prefix=False`, or a custom string (`{db}` is replaced).
   */
  readonly fanoutPrefix: string;
  /**
   * `sentinel://` with the default fanout prefix: kombu before 5.4 never fills in `{db}` there
   * and publishes under the literal `/{db}.`; this second prefix is subscribed (and broadcast)
   * too. See redisFanoutPrefixes.
   */
  readonly unformattedFanoutPrefix?: string;
  /**
   * Messages read from the subscription but not yet processed, at most (bytes of payload). Redis
   * keeps nothing for a subscriber: reading fast into this buffer is what keeps a burst from
   * passing Redis's pub/sub output-buffer limit, which would disconnect the bridge.
   */
  readonly maxBufferedBytes: number;
}

export type OtlpProtocol = 'http/protobuf' | 'http/json';

/** One signal's OTLP/HTTP exporter settings. */
export interface OtlpSignalOptions {
  readonly url: string;
  readonly protocol: OtlpProtocol;
  /** Secret: never log the values. */
  readonly headers: Record<string, string>;
  readonly compression: 'gzip' | 'none';
  readonly timeoutMs: number;
}

export interface OtlpTraceOptions extends OtlpSignalOptions {
  readonly serviceName: string;
  readonly resourceAttributes: Record<string, string>;
  /** `--service-name-map`: task spans' service names by queue or task-name prefix, in order. */
  readonly serviceNameRules: readonly ServiceNameRule[];
}

/** `queue:<name>=<service>` (exact queue) or `task:<prefix>=<service>` (task-name prefix). */
export interface ServiceNameRule {
  readonly kind: 'queue' | 'task';
  readonly match: string;
  readonly service: string;
}

export interface WorkerAttributeOptions {
  /** `hostname`: the worker's node name as an attribute; `off`: no worker attribute. */
  readonly mode: 'hostname' | 'off';
  /** Removed from the hostname (e.g. pod suffixes), so restarts do not make new series. */
  readonly strip?: RegExp;
}

export interface MetricsOptions {
  readonly otlp: OtlpSignalOptions;
  /** Push metrics over OTLP (OTEL_METRICS_EXPORTER includes `otlp`, the default). */
  readonly otlpEnabled: boolean;
  readonly exportIntervalMs: number;
  readonly exportTimeoutMs: number;
  /** OTEL_NODE_RESOURCE_DETECTORS: how the bridge's own resource is detected (default `all`). */
  readonly resourceDetectors: readonly string[];
  /** The HTTP listener for /metrics, /healthz, /readyz; port 0 turns it off. */
  readonly httpHost: string;
  readonly httpPort: number;
  readonly workerAttribute: WorkerAttributeOptions;
  /** Distinct task names given their own series; later ones share `__other__`. */
  readonly maxTaskNames: number;
  /** Queues whose length is reported even before an event names them. */
  readonly queues: readonly string[];
  readonly queueLengthIntervalMs: number;
  /** A worker not heard from for this long is forgotten (its series removed). */
  readonly workerForgetAfterMs: number;
}
