import type { Logger } from '../log/Logger.js';
import type { Broker, BrokerSettings } from './Broker.js';
import type { EventSourceHandlers } from './EventSource.js';
import { amqpBroker } from './amqp/amqpBroker.js';
import { redisBroker } from './redis/redisBroker.js';

/** The one place that chooses between brokers, by the broker URL's scheme. */
export function createBroker(
  settings: BrokerSettings,
  handlers: EventSourceHandlers,
  logger: Logger,
): Broker {
  const factory = settings.broker.kind === 'amqp' ? amqpBroker : redisBroker;
  return factory(settings, handlers, logger);
}
