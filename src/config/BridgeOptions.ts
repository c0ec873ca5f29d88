import type { TaskAssemblerOptions } from '../assemble/TaskAssembler.js';
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
  readonly exportQueue: SpanExportQueueOptions;
  readonly assembler: TaskAssemblerOptions;
  /** Longest string attribute value; longer ones keep head and tail. */
  readonly maxAttributeLength: number;
  /** Longest args / kwargs / result value when captured. */
  readonly maxCapturedLength: number;
  readonly maxMessageBytes: number;
  /** Give up (exit 1) when the broker cannot be reached at start for this long. */
  readonly connectTimeoutMs: number;
  readonly logLevel: LogLevel;
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
}

export type OtlpProtocol = 'http/protobuf' | 'http/json';

export interface OtlpTraceOptions {
  readonly tracesUrl: string;
  readonly protocol: OtlpProtocol;
  /** Secret: never log the values. */
  readonly headers: Record<string, string>;
  readonly compression: 'gzip' | 'none';
  readonly timeoutMs: number;
  readonly serviceName: string;
  readonly resourceAttributes: Record<string, string>;
}
