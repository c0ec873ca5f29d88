import { ConfigError } from '../shared/errors.js';
import type { BrokerEndpoint } from '../brokers/BrokerOptions.js';

/** kombu/transport/redis.py `SentinelTransport.default_port`. */
const SENTINEL_PORT = 26379;

/**
 * The broker URLs kombu accepts that are not a single WHATWG-parsable `scheme://host` URL:
 *
 * - `sentinel://h1:26379;sentinel://h2:26379/0` (kombu/transport/redis.py `SentinelChannel`):
 *   the Redis master is found by asking the sentinels. As kombu does, every `;`-separated
 *   `sentinel://` URL names one sentinel (`_sentinel_managed_pool`), and the first URL gives the
 *   master's username, password and database (`_connparams` reads the connection's first URL).
 *   The master's name is not in the URL but in the transport options (`master_name`): the caller
 *   adds it (`--redis-sentinel-master`).
 * - `redis+socket:///path/to/redis.sock?virtual_host=1` (`_connparams`: scheme `socket`, path,
 *   the database from `virtual_host`).
 * - Any other `;`-separated list (kombu/connection.py `Connection.__init__`: failover alternates,
 *   e.g. `amqp://h1;amqp://h2`): refused with a clear message.
 *
 * Returns undefined for everything else (a plain URL, parsed by parseBrokerUrl).
 */
export function parseKombuOnlyUrl(text: string): BrokerEndpoint | undefined {
  const parts = text.split(';').map((part) => part.trim());
  const sentinel = parts.every((part) => /^sentinel:\/\//i.test(part));
  if (sentinel) return parseSentinelUrls(parts);
  if (parts.length > 1) {
    const redacted = parts.map(redactPart).join(';');
    throw new ConfigError(
      `the broker URL ${JSON.stringify(redacted)} lists several brokers (kombu's failover ` +
        'alternates): the bridge reads one broker. Give the URL of one (--broker / ' +
        'CELERY_BROKER_URL); run one bridge per broker if the brokers do not share their events ' +
        '(a RabbitMQ cluster does: any node will do). For Redis Sentinel use sentinel:// URLs ' +
        'only, e.g. sentinel://h1:26379;sentinel://h2:26379 with --redis-sentinel-master.',
    );
  }
  if (/^redis\+socket:\/\//i.test(text)) return parseRedisSocketUrl(text);
  return undefined;
}

function parseSentinelUrls(parts: string[]): BrokerEndpoint {
  const redactedUrl = parts.map(redactPart).join(';');
  const urls = parts.map((part) => {
    try {
      return new URL(part);
    } catch {
      throw new ConfigError(
        `the broker URL ${JSON.stringify(redactedUrl)} has a part that is not a URL: use e.g. ` +
          'sentinel://h1:26379;sentinel://h2:26379/0 (--broker / CELERY_BROKER_URL)',
      );
    }
  });
  const sentinels = urls.map((url) => {
    if (url.hostname === '') throw new ConfigError(`the broker URL ${redactedUrl} has no host`);
    return {
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port === '' ? SENTINEL_PORT : Number(url.port),
    };
  });
  const first = urls[0] as URL;
  const rest = decodeURIComponent(first.pathname).replace(/^\/+/, '');
  if (rest !== '' && !/^\d+$/.test(rest)) {
    throw new ConfigError(
      `the Sentinel broker URL ${redactedUrl} has path ${JSON.stringify(first.pathname)}: it must be a database number, e.g. sentinel://h1:26379/0`,
    );
  }
  const head = sentinels[0] as { host: string; port: number };
  return {
    kind: 'redis',
    tls: false,
    hostname: head.host,
    port: head.port,
    username: first.username === '' ? undefined : decodeURIComponent(first.username),
    password: first.password === '' ? undefined : decodeURIComponent(first.password),
    vhost: '/',
    db: rest === '' ? 0 : Number(rest),
    redactedUrl,
    sentinel: { sentinels, masterName: '' },
  };
}

const SOCKET_URL = /^redis\+socket:\/\/(?:([^:@/]*)(?::([^@]*))?@)?(\/[^?#]*)(?:\?([^#]*))?$/i;

function parseRedisSocketUrl(text: string): BrokerEndpoint {
  const match = SOCKET_URL.exec(text);
  const redactedUrl = redactPart(text);
  if (match === null) {
    throw new ConfigError(
      `the broker URL ${JSON.stringify(redactedUrl)} is not a Redis socket URL: use e.g. ` +
        'redis+socket:///var/run/redis/redis.sock?virtual_host=0 (--broker / CELERY_BROKER_URL)',
    );
  }
  const [, user = '', password = '', path = '', query = ''] = match;
  const virtualHost = new URLSearchParams(query).get('virtual_host') ?? '';
  if (virtualHost !== '' && !/^\/?\d+$/.test(virtualHost)) {
    throw new ConfigError(
      `the broker URL ${redactedUrl} has virtual_host=${JSON.stringify(virtualHost)}: it must be a database number`,
    );
  }
  const socketPath = decodeURIComponent(path);
  return {
    kind: 'redis',
    tls: false,
    // No host: the socket path stands for it in messages and in the state file's name.
    hostname: socketPath,
    port: 0,
    username: user === '' ? undefined : decodeURIComponent(user),
    password: password === '' ? undefined : decodeURIComponent(password),
    vhost: '/',
    db: virtualHost === '' ? 0 : Number(virtualHost.replace('/', '')),
    redactedUrl,
    socketPath,
  };
}

/** One URL of a list with its password shown as `***`, whether or not it parses. */
function redactPart(text: string): string {
  return text.replace(/^([a-z0-9+.-]*:\/\/[^:/@;]*:)[^;]*@/i, '$1***@');
}

/**
 * Adds the transport options kombu reads for `sentinel://` (`master_name`, `sentinel_kwargs`'s
 * password) from the bridge's flags; refuses a Sentinel URL without a master name, as kombu does
 * ("'master_name' transport option must be specified.").
 */
export function withSentinelOptions(
  broker: BrokerEndpoint,
  masterName: string,
  sentinelPassword: string,
): BrokerEndpoint {
  if (broker.sentinel === undefined) return broker;
  if (masterName === '') {
    throw new ConfigError(
      `the broker URL ${broker.redactedUrl} is a Redis Sentinel URL: also give the master's name ` +
        "with --redis-sentinel-master / CELERY_OTEL_BRIDGE_REDIS_SENTINEL_MASTER (Celery's " +
        "broker_transport_options = {'master_name': ...})",
    );
  }
  return {
    ...broker,
    sentinel: {
      ...broker.sentinel,
      masterName,
      ...(sentinelPassword === '' ? {} : { password: sentinelPassword }),
    },
  };
}
