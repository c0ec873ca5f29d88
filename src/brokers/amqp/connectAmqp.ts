import amqp from 'amqplib';
import type { BrokerEndpoint } from '../BrokerOptions.js';
import { brokerTlsOptions } from '../brokerTlsOptions.js';

/**
 * Opens an AMQP connection to the broker: the one place that turns a BrokerEndpoint (credentials,
 * vhost, TLS settings) into amqplib's connect options. Used by the event source, the queue-length
 * reader and the enable_events broadcaster. Missing credentials default to guest/guest, as kombu's.
 */
export function connectAmqp(broker: BrokerEndpoint): Promise<amqp.ChannelModel> {
  return amqp.connect(
    {
      protocol: broker.tls ? 'amqps' : 'amqp',
      hostname: broker.hostname,
      port: broker.port,
      username: broker.username ?? 'guest',
      password: broker.password ?? 'guest',
      vhost: broker.vhost,
      heartbeat: 30,
    },
    brokerTlsOptions(broker),
  );
}
