import type { Broker, BrokerFactory } from '../Broker.js';
import { AmqpControlPublisher } from './AmqpControlPublisher.js';
import { AmqpEventSource } from './AmqpEventSource.js';
import { AmqpQueueLengthReader } from './AmqpQueueLengthReader.js';

/** RabbitMQ: the bridge's own queue on the events exchange. */
export const amqpBroker: BrokerFactory = (settings, handlers, logger): Broker => {
  const source = new AmqpEventSource(
    {
      broker: settings.broker,
      exchange: settings.eventsExchange,
      queue: settings.amqp,
      connectTimeoutMs: settings.connectTimeoutMs,
    },
    handlers,
    logger,
  );
  return {
    messagingSystem: 'rabbitmq',
    source,
    queueLengths: new AmqpQueueLengthReader(settings.broker),
    controlPublisher: (controlExchange) =>
      new AmqpControlPublisher(settings.broker, controlExchange, logger),
    backlogMessages: () => source.brokerBacklog,
    bufferedBytes: () => source.bufferedBytes,
  };
};
