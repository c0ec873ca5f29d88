import type { RedisOptions } from 'ioredis';
import type { BrokerEndpoint } from '../BrokerOptions.js';
import { brokerTlsOptions } from '../brokerTlsOptions.js';

/**
 * Where and how ioredis connects for `broker`: address, credentials, database and TLS; for
 * `redis+socket://` the Unix socket; for `sentinel://` the sentinels and the master's name, as
 * kombu's SentinelChannel asks redis-py's Sentinel for `master_for(master_name)` (ioredis then
 * asks the sentinels for the master at every connect, and checks its role).
 */
export function redisConnectionOptions(broker: BrokerEndpoint): RedisOptions {
  const credentials = { username: broker.username, password: broker.password, db: broker.db };
  if (broker.socketPath !== undefined) return { path: broker.socketPath, ...credentials };
  if (broker.sentinel !== undefined) {
    return {
      sentinels: broker.sentinel.sentinels.map(({ host, port }) => ({ host, port })),
      name: broker.sentinel.masterName,
      sentinelPassword: broker.sentinel.password,
      // Also listen for the sentinels' +switch-master: a failover is followed at once, even
      // when the old master stays reachable (ioredis SentinelConnector/FailoverDetector).
      failoverDetector: true,
      // All sentinels unreachable: fail this attempt, so that the connection's own retryStrategy
      // (and --connect-timeout-ms at start) decides, as for a plain Redis that is down. ioredis's
      // default retries inside connect() for ever.
      sentinelRetryStrategy: () => null,
      ...credentials,
    };
  }
  return {
    host: broker.hostname,
    port: broker.port,
    ...credentials,
    tls: brokerTlsOptions(broker),
  };
}
