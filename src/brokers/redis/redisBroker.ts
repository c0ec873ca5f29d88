import type { Broker, BrokerFactory } from '../Broker.js';
import { RedisControlPublisher } from './RedisControlPublisher.js';
import { RedisEventSource } from './RedisEventSource.js';
import { RedisQueueLengthReader } from './RedisQueueLengthReader.js';

/** Redis: kombu's pub/sub event channels, read by a thread of the bridge's own. */
export const redisBroker: BrokerFactory = (settings, handlers, logger): Broker => {
  const source = new RedisEventSource(
    {
      broker: settings.broker,
      exchange: settings.eventsExchange,
      channels: settings.redis,
      connectTimeoutMs: settings.connectTimeoutMs,
    },
    handlers,
    logger,
  );
  return {
    messagingSystem: 'redis',
    source,
    queueLengths: new RedisQueueLengthReader(settings.broker, settings.redis.globalKeyPrefix),
    controlPublisher: (controlExchange) =>
      new RedisControlPublisher(settings.broker, controlExchange, settings.redis, logger),
    backlogMessages: () => undefined,
    bufferedBytes: () => source.bufferedBytes,
  };
};
