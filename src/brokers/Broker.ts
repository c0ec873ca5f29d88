import type { Logger } from '../log/Logger.js';
import type { AmqpQueueOptions, BrokerEndpoint, RedisChannelOptions } from './BrokerOptions.js';
import type { ControlPublisher } from './ControlPublisher.js';
import type { EventSource, EventSourceHandlers } from './EventSource.js';
import type { QueueLengthReader } from './QueueLengthReader.js';

/** What a broker offers the bridge: its event source, queue-length reader and control channel. */
export interface Broker {
  /** `messaging.system` of the OpenTelemetry messaging conventions. */
  readonly messagingSystem: 'rabbitmq' | 'redis';
  readonly source: EventSource;
  readonly queueLengths: QueueLengthReader;
  /** A publisher of remote control commands to the workers (`--enable-events`). */
  controlPublisher(controlExchange: string): ControlPublisher;
  /** RabbitMQ: messages ready in the bridge's queue at the last read; undefined elsewhere. */
  backlogMessages(): number | undefined;
  /** Bytes the read thread holds that the bridge has not taken yet. */
  bufferedBytes(): number;
}

/** The options every broker reads its own part of. */
export interface BrokerSettings {
  readonly broker: BrokerEndpoint;
  /** Celery's `event_exchange` setting (`celeryev`). */
  readonly eventsExchange: string;
  readonly amqp: AmqpQueueOptions;
  readonly redis: RedisChannelOptions;
  readonly connectTimeoutMs: number;
}

export type BrokerFactory = (
  settings: BrokerSettings,
  handlers: EventSourceHandlers,
  logger: Logger,
) => Broker;
