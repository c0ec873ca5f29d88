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

/** Processing runs in slices of at most this long, so the socket is read between slices. */
const DRAIN_SLICE_MS = 2;

/**
 * Consumes Celery's events from Redis pub/sub.
 *
 * On Redis, Celery makes the event exchange a fanout exchange (celery/events/event.py
 * `get_exchange`), which kombu publishes with PUBLISH on channel
 * `{global_keyprefix}{fanout_prefix}{exchange}/{routing_key}`, or without `/{routing_key}` when
 * `fanout_patterns` is off (kombu/transport/redis.py `_get_publish_topic`, `PrefixedRedisPubSub`).
 * The bridge subscribes to both forms. Pub/sub keeps nothing: events published while the bridge
 * is disconnected are lost, and Redis disconnects a subscriber whose output buffer passes
 * `client-output-buffer-limit pubsub` (32 MB by default,
 * https://redis.io/docs/latest/develop/reference/clients/#output-buffer-limits). Each disconnect
 * is reported; ioredis reconnects and resubscribes by itself.
 *
 * So the socket must be read as fast as Redis writes, whatever the bridge's processing rate. Node
 * reads a socket only when the event loop is free, and ioredis hands messages over synchronously
 * as it parses each chunk: processing there would make reading exactly as slow as processing,
 * and a burst would pile up in Redis until the limit. Messages are therefore only queued on
 * arrival (bounded by `maxBufferedBytes`, overflow dropped and counted as `buffer_full`) and
 * processed in slices of {@link DRAIN_SLICE_MS}, between which the event loop reads the socket
 * again. A burst then waits in the bridge's memory instead of Redis's.
 */
export class RedisEventSource implements EventSource {
  private client: Redis | undefined;
  private everReady = false;
  /** ioredis rejects connect() with "Connection is closed."; the cause came as an 'error' event. */
  private lastConnectError: unknown;
  /** Read, not yet processed: channel and payload pairs from `head` on (a FIFO without shift). */
  private pending: Buffer[] = [];
  private head = 0;
  private bufferedBytes = 0;
  private drainScheduled = false;

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
    // What was read is processed before the bridge flushes: stopping loses nothing it holds.
    this.processPending(Number.POSITIVE_INFINITY);
  }

  /** Bytes of payload read and not yet processed. */
  get bufferedPayloadBytes(): number {
    return this.bufferedBytes;
  }

  private deliver(channel: Buffer, payload: Buffer): void {
    if (this.bufferedBytes + payload.length > this.options.channels.maxBufferedBytes) {
      this.handlers.rejected({
        reason: 'buffer_full',
        detail:
          'Redis events arrive faster than the bridge processes them and its read buffer is full: messages are dropped until it drains (raise --redis-max-buffered-bytes for longer bursts)',
      });
      return;
    }
    this.pending.push(channel, payload);
    this.bufferedBytes += payload.length;
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      setImmediate(this.drain);
    }
  }

  /** Processes queued messages for one slice; reschedules itself behind pending I/O if more. */
  private readonly drain = (): void => {
    this.drainScheduled = false;
    const deadline = performance.now() + DRAIN_SLICE_MS;
    this.processPending(deadline);
    if (this.head < this.pending.length) {
      this.drainScheduled = true;
      setImmediate(this.drain);
    }
  };

  private processPending(deadline: number): void {
    const pending = this.pending;
    while (this.head < pending.length) {
      const channel = pending[this.head] as Buffer;
      const payload = pending[this.head + 1] as Buffer;
      pending[this.head] = pending[this.head + 1] = EMPTY;
      this.head += 2;
      this.bufferedBytes -= payload.length;
      this.process(channel, payload);
      if (performance.now() >= deadline) break;
    }
    if (this.head === pending.length) {
      this.pending = [];
      this.head = 0;
    } else if (this.head > 65_536 && this.head * 2 > pending.length) {
      // Drop the consumed front now and then, so the list does not grow for ever in a long burst.
      this.pending = pending.slice(this.head);
      this.head = 0;
    }
  }

  private process(channel: Buffer, payload: Buffer): void {
    const name = channel.toString('utf8');
    const slash = name.lastIndexOf('/');
    const decoded = decodeKombuEnvelope(payload, slash === -1 ? '' : name.slice(slash + 1));
    if (isDecodeRejection(decoded)) this.handlers.rejected(decoded);
    else this.handlers.message(decoded);
  }
}

const EMPTY = Buffer.alloc(0);

/** Redis PSUBSCRIBE patterns are globs: a prefix holding `*`, `?` or `[` must match literally. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
