import { ConfigError } from '../shared/errors.js';
import { hasUnencodedCredentials, redactUrl } from '../log/redact.js';
import type { BrokerEndpoint, BrokerKind } from '../brokers/BrokerOptions.js';
import { parseKombuOnlyUrl } from './parseKombuOnlyUrl.js';

/** Celery accepts these spellings for its own transports (kombu/transport/__init__.py). */
const SCHEMES: Record<string, { kind: BrokerKind; tls: boolean; defaultPort: number }> = {
  'amqp:': { kind: 'amqp', tls: false, defaultPort: 5672 },
  'pyamqp:': { kind: 'amqp', tls: false, defaultPort: 5672 },
  'amqps:': { kind: 'amqp', tls: true, defaultPort: 5671 },
  'redis:': { kind: 'redis', tls: false, defaultPort: 6379 },
  'rediss:': { kind: 'redis', tls: true, defaultPort: 6379 },
};

/** Parses a Celery broker URL; throws ConfigError (with the password redacted) when it is not one. */
export function parseBrokerUrl(text: string): BrokerEndpoint {
  const other = parseKombuOnlyUrl(text);
  if (other !== undefined) return other;
  if (hasUnencodedCredentials(text)) {
    // kombu (kombu/utils/url.py url_to_parts) splits such a URL inside the password as well.
    throw new ConfigError(
      `the broker URL ${JSON.stringify(redactUrl(text))} has a "/", "?" or "#" in its user name ` +
        'or password: percent-encode them (%2F, %3F, %23) (--broker / CELERY_BROKER_URL)',
    );
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(
      `the broker URL ${JSON.stringify(redactUrl(text))} is not a URL: use e.g. ` +
        'amqp://guest:guest@localhost:5672// or redis://localhost:6379/0 (--broker / CELERY_BROKER_URL)',
    );
  }
  const scheme = SCHEMES[url.protocol];
  if (scheme === undefined) {
    throw new ConfigError(
      `the broker URL scheme ${JSON.stringify(url.protocol.slice(0, -1))} is not supported: use ` +
        'amqp://, amqps://, redis://, rediss://, redis+socket:// or sentinel:// (--broker / CELERY_BROKER_URL)',
    );
  }
  const redactedUrl = redactUrl(url.href);
  if (url.hostname === '') {
    throw new ConfigError(`the broker URL ${redactedUrl} has no host`);
  }
  const port = url.port === '' ? scheme.defaultPort : Number(url.port);
  const path = decodeURIComponent(url.pathname);
  let vhost = '/';
  let db = 0;
  if (scheme.kind === 'amqp') {
    // kombu: `amqp://host//` and `amqp://host` both mean vhost "/"; `amqp://host/prod` is "prod".
    const rest = path.startsWith('/') ? path.slice(1) : path;
    vhost = rest === '' ? '/' : rest;
  } else {
    const rest = path.replace(/^\/+/, '');
    if (rest !== '') {
      if (!/^\d+$/.test(rest)) {
        throw new ConfigError(
          `the Redis broker URL ${redactedUrl} has path ${JSON.stringify(path)}: it must be a database number, e.g. redis://localhost:6379/0`,
        );
      }
      db = Number(rest);
    }
  }
  return {
    kind: scheme.kind,
    tls: scheme.tls,
    hostname: url.hostname.replace(/^\[|\]$/g, ''),
    port,
    username: url.username === '' ? undefined : decodeURIComponent(url.username),
    password: url.password === '' ? undefined : decodeURIComponent(url.password),
    vhost,
    db,
    redactedUrl,
  };
}
