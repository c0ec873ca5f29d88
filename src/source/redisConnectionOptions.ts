import type { RedisOptions } from 'ioredis';
import type { BrokerEndpoint } from '../config/brokerUrl.js';
import { brokerTlsOptions } from './brokerTlsOptions.js';

/** Where and how ioredis connects for `broker`: address, credentials, database and TLS. */
export function redisConnectionOptions(broker: BrokerEndpoint): RedisOptions {
  return {
    host: broker.hostname,
    port: broker.port,
    username: broker.username,
    password: broker.password,
    db: broker.db,
    tls: brokerTlsOptions(broker),
  };
}
