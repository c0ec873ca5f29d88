/**
 * `--broker-tls-*`: how to verify an `amqps://` / `rediss://` broker and authenticate to it. The
 * files were read at startup; the same settings go to every broker connection the bridge opens.
 */
export interface BrokerTlsSettings {
  /** PEM CA bundle: when set, the only CAs trusted for the broker (not the system's list). */
  readonly ca?: Buffer;
  /** PEM client certificate (chain), for brokers that require client certificates. */
  readonly cert?: Buffer;
  /** PEM private key of `cert`. Secret: never log it. */
  readonly key?: Buffer;
  /** Sent as SNI and matched against the certificate instead of the URL's host. */
  readonly servername?: string;
  /** Skip certificate verification (`--broker-tls-insecure`); warned about at start. */
  readonly insecure: boolean;
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
  /**
   * `sentinel://` with the default fanout prefix: kombu before 5.4 never fills in `{db}` there
   * and publishes under the literal `/{db}.`; this second prefix is subscribed (and broadcast)
   * too. See redisFanoutPrefixes.
   */
  readonly unformattedFanoutPrefix?: string;
  /**
   * Messages read from the subscription but not yet processed, at most (bytes of payload). Redis
   * keeps nothing for a subscriber: reading fast into this buffer is what keeps a burst from
   * passing Redis's pub/sub output-buffer limit, which would disconnect the bridge.
   */
  readonly maxBufferedBytes: number;
}

/** `--enable-events`: broadcast Celery's `enable_events` control command, as Flower does. */
export interface EnableEventsOptions {
  readonly enabled: boolean;
  readonly intervalMs: number;
  /** Celery's `control_exchange` setting (`celery`): commands go to `<name>.pidbox`. */
  readonly controlExchange: string;
}

export type BrokerKind = 'amqp' | 'redis';

export interface BrokerEndpoint {
  readonly kind: BrokerKind;
  readonly tls: boolean;
  readonly hostname: string;
  readonly port: number;
  readonly username?: string;
  /** Secret: never log it. {@link redactedUrl} is the loggable form. */
  readonly password?: string;
  /** RabbitMQ virtual host (`/` by default, as kombu reads `amqp://host//`). */
  readonly vhost: string;
  /** Redis database number from the URL path (`redis://host:6379/0`). */
  readonly db: number;
  /** The URL as logs show it: credentials `***`, no query string (log/redact.ts redactUrl). */
  readonly redactedUrl: string;
  /** `--broker-tls-*` (only with `tls`); absent: Node's defaults (system CAs, full checks). */
  readonly tlsSettings?: BrokerTlsSettings;
  /** `sentinel://` (kombu's Redis Sentinel transport): ask these sentinels for the master. */
  readonly sentinel?: SentinelSettings;
  /** `redis+socket://`: the Redis server's Unix socket, instead of `hostname` and `port`. */
  readonly socketPath?: string;
}

export interface SentinelSettings {
  readonly sentinels: readonly { readonly host: string; readonly port: number }[];
  /** The monitored master's name (kombu's `master_name` transport option). */
  readonly masterName: string;
  /** Secret: the sentinels' own password (kombu's `sentinel_kwargs`), not the master's. */
  readonly password?: string;
}
