import { Redis } from 'ioredis';
import type { RedisChannelOptions } from '../config/BridgeOptions.js';
import type { BrokerEndpoint } from '../config/brokerUrl.js';
import { decodeKombuEnvelope, isDecodeRejection } from '../decode/decodeKombuEnvelope.js';
import { BrokerUnreachableError } from '../errors.js';
import type { Logger } from '../log/Logger.js';
import {
  brokerTlsOptions,
  describeBrokerError,
  isTlsFailure,
  warnIfTlsInsecure,
} from './brokerTlsOptions.js';
import { backoffDelayMs, type EventSource, type EventSourceHandlers } from './EventSource.js';

export interface RedisEventSourceOptions {
  readonly broker: BrokerEndpoint;
  readonly exchange: string;
  readonly channels: RedisChannelOptions;
  readonly connectTimeoutMs: number;
}

/**
 * Consumes Celery's events from Redis pub/sub.
 *
 * On Redis, Celery makes the event exchange a fanout exchange (celery/events/event.py
 * `get_exchange`), which kombu publishes with PUBLISH on channel
 * `{global_keyprefix}{fanout_prefix}{exchange}/{routing_key}`, or without `/{routing_key}` when
 * `fanout_patterns` is off (kombu/transport/redis.py `_get_publish_topic`, `PrefixedRedisPubSub`).
 * The bridge subscribes to both forms. Pub/sub keeps nothing: events published while the bridge
 * is disconnected are lost, and Redis disconnects a subscriber whose output buffer passes
 * `client-output-buffer-limit pubsub` (32 MB by default). Each disconnect is reported;
 * ioredis reconnects and resubscribes by itself.
 */
export class RedisEventSource implements EventSource {
  private client: Redis | undefined;
  private everReady = false;
  /** ioredis rejects connect() with "Connection is closed."; the cause came as an 'error' event. */
  private lastConnectError: unknown;

  constructor(
    private readonly options: RedisEventSourceOptions,
    private readonly handlers: EventSourceHandlers,
    private readonly logger: Logger,
  ) {}

  /** The channel names, for logs and tests. */
  get channels(): { pattern: string; plain: string } {
    const { globalKeyPrefix, fanoutPrefix } = this.options.channels;
    const plain = `${globalKeyPrefix}${fanoutPrefix}${this.options.exchange}`;
    return { pattern: `${escapeGlob(plain)}/*`, plain };
  }

  async start(): Promise<void> {
    const { broker } = this.options;
    warnIfTlsInsecure(broker, this.logger);
    const client = new Redis({
      host: broker.hostname,
      port: broker.port,
      username: broker.username,
      password: broker.password,
      db: broker.db,
      tls: brokerTlsOptions(broker),
      lazyConnect: true,
      // Subscribed connections must not queue commands while down; resubscribing is automatic.
      enableOfflineQueue: true,
      autoResubscribe: true,
      maxRetriesPerRequest: null,
      retryStrategy: (times) => backoffDelayMs(times - 1),
    });
    this.client = client;
    const { pattern, plain } = this.channels;
    client.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, payload: Buffer) => {
      this.deliver(channel, payload);
    });
    client.on('messageBuffer', (channel: Buffer, payload: Buffer) => {
      this.deliver(channel, payload);
    });
    client.on('error', (error: unknown) => {
      this.lastConnectError = error;
      if (this.everReady) {
        this.logger.warn('Redis connection error', { error: describeBrokerError(error, broker) });
      }
    });
    client.on('close', () => {
      if (this.everReady) {
        this.handlers.connection('disconnected', `lost the connection to ${broker.redactedUrl}`);
      }
    });
    client.on('ready', () => {
      if (this.everReady) {
        this.handlers.connection(
          'connected',
          `resubscribed to ${pattern} on ${broker.redactedUrl}`,
        );
      }
    });

    const deadline = Date.now() + this.options.connectTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      this.lastConnectError = undefined;
      try {
        await client.connect();
        break;
      } catch (rejection) {
        const error = this.lastConnectError ?? rejection;
        const delay = backoffDelayMs(attempt);
        if (Date.now() + delay > deadline) {
          client.disconnect();
          throw new BrokerUnreachableError(
            `cannot reach Redis at ${broker.redactedUrl}: ${describeBrokerError(error, broker)}; ` +
              `gave up after ${this.options.connectTimeoutMs} ms (--connect-timeout-ms).` +
              (isTlsFailure(error, broker)
                ? ''
                : ' Check the host, port, password and that Redis is running.'),
          );
        }
        this.logger.warn('Redis unreachable, retrying', {
          broker: broker.redactedUrl,
          error: describeBrokerError(error, broker),
          retryInMs: delay,
        });
        client.disconnect();
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
    await client.psubscribe(pattern);
    await client.subscribe(plain);
    this.everReady = true;
    this.handlers.connection(
      'connected',
      `subscribed to ${pattern} and ${plain} on ${broker.redactedUrl}`,
    );
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.everReady = false;
    if (client !== undefined) {
      try {
        await client.quit();
      } catch {
        client.disconnect();
      }
    }
  }

  private deliver(channel: Buffer, payload: Buffer): void {
    const name = channel.toString('utf8');
    const slash = name.lastIndexOf('/');
    const decoded = decodeKombuEnvelope(payload, slash === -1 ? '' : name.slice(slash + 1));
    if (isDecodeRejection(decoded)) this.handlers.rejected(decoded);
    else this.handlers.message(decoded);
  }
}

/** Redis PSUBSCRIBE patterns are globs: a prefix holding `*`, `?` or `[` must match literally. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
