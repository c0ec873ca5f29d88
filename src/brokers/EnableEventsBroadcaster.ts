import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { redisFanoutChannel, redisFanoutPrefixes } from './redis/redisChannels.js';
import { redisConnectionOptions } from './redis/redisConnectionOptions.js';
import type { RedisChannelOptions } from './BrokerOptions.js';
import type { BrokerEndpoint } from './BrokerOptions.js';
import type { Logger } from '../log/Logger.js';
import { describeError } from '../shared/describeError.js';
import { backoffDelayMs } from './EventSource.js';
import { connectAmqp } from './amqp/connectAmqp.js';

export interface EnableEventsBroadcasterOptions {
  readonly broker: BrokerEndpoint;
  /** Celery's `control_exchange` (`celery`); the mailbox exchange is `<name>.pidbox`. */
  readonly controlExchange: string;
  readonly intervalMs: number;
  /** Redis only: the same key and channel prefixes kombu uses for the event channels. */
  // Only the channel naming: the broadcaster publishes, it reads nothing.
  readonly redis: Pick<
    RedisChannelOptions,
    'globalKeyPrefix' | 'fanoutPrefix' | 'unformattedFanoutPrefix'
  >;
}

/** The body of Celery's `app.control.enable_events()` (kombu/pidbox.py `Mailbox._publish`). */
export interface ControlCommand {
  readonly method: string;
  readonly arguments: Record<string, never>;
  readonly destination: null;
  readonly pattern: null;
  readonly matcher: null;
}

export function enableEventsCommand(): ControlCommand {
  return {
    method: 'enable_events',
    arguments: {},
    destination: null,
    pattern: null,
    matcher: null,
  };
}

/**
 * kombu's message headers for a broadcast: a Lamport `clock` (the worker only adjusts its own
 * clock with it) and `expires`, which kombu sets to now + the call's timeout (1 s for
 * `Control.broadcast`) and only reply collectors read.
 */
export function commandHeaders(clock: number, nowMs: number): { clock: number; expires: number } {
  return { clock, expires: nowMs / 1000 + 1 };
}

/**
 * The JSON envelope kombu's Redis transport publishes on the fanout channel: the body base64
 * encoded, content type and encoding, headers, and `properties` with the delivery info
 * (kombu/transport/virtual/base.py `Channel.prepare_message` / `_inplace_augment_message`,
 * kombu/transport/redis.py `Channel._put_fanout`).
 */
export function redisControlEnvelope(
  exchange: string,
  command: ControlCommand,
  headers: { clock: number; expires: number },
  deliveryTag: string,
): string {
  return JSON.stringify({
    body: Buffer.from(JSON.stringify(command), 'utf8').toString('base64'),
    'content-encoding': 'utf-8',
    'content-type': 'application/json',
    headers,
    properties: {
      delivery_mode: 2,
      delivery_info: { exchange, routing_key: '' },
      priority: 0,
      body_encoding: 'base64',
      delivery_tag: deliveryTag,
    },
  });
}

/**
 * `--enable-events`: broadcasts Celery's `enable_events` remote control command now and every
 * `intervalMs`, as Flower does, so workers started without `-E` (and workers that start later)
 * switch their task events on. A worker that receives it adds the `task` group to its event
 * dispatcher (celery/worker/control.py `enable_events`) and logs "Events of group {task} enabled
 * by remote."
 *
 * The wire format is exactly what `app.control.enable_events()` sends (celery/app/control.py
 * `Control.broadcast` -> kombu/pidbox.py `Mailbox._broadcast` / `_publish`): body
 * `{"method": "enable_events", "arguments": {}, "destination": null, "pattern": null,
 * "matcher": null}` as JSON, no `ticket` / `reply_to` since no reply is wanted, published to the
 * fanout exchange `<control_exchange>.pidbox` (non-durable) with an empty routing key.
 *   - RabbitMQ: a message on that exchange (declared as Celery declares it, type fanout, not
 *     durable, not auto-delete); every worker's `<node>.celery.pidbox` queue is bound to it.
 *   - Redis: kombu turns a fanout exchange into pub/sub: PUBLISH on
 *     `{global_keyprefix}/{db}.<control_exchange>.pidbox` (no `/routing_key` suffix: the routing
 *     key is empty) of kombu's JSON envelope with the body base64-encoded.
 * Failures are logged and retried at the next interval; they never stop the bridge.
 */
export class EnableEventsBroadcaster {
  private timer: NodeJS.Timeout | undefined;
  private clock = 0;
  private broadcasts = 0;
  private failing = false;
  private amqpConnection: amqp.ChannelModel | undefined;
  private amqpChannel: amqp.ConfirmChannel | undefined;
  private redis: Redis | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly options: EnableEventsBroadcasterOptions,
    private readonly logger: Logger,
  ) {}

  /** `<control_exchange>.pidbox` (kombu/pidbox.py `Mailbox.exchange_fmt`). */
  get exchange(): string {
    return `${this.options.controlExchange}.pidbox`;
  }

  /** Redis: the pub/sub channel the command is published on. */
  get redisChannel(): string {
    return redisFanoutChannel(this.options.redis, this.exchange);
  }

  /** Broadcasts sent successfully so far. */
  get sent(): number {
    return this.broadcasts;
  }

  start(): void {
    this.stopped = false;
    this.tick();
    this.timer = setInterval(() => this.tick(), this.options.intervalMs).unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    await this.closeConnections();
  }

  /** One broadcast; resolves true when the broker took it. Never rejects. */
  async broadcastOnce(): Promise<boolean> {
    const headers = commandHeaders(++this.clock, Date.now());
    try {
      let receivers: number | undefined;
      if (this.options.broker.kind === 'amqp') await this.publishAmqp(headers);
      else receivers = await this.publishRedis(headers);
      this.broadcasts++;
      const fields = {
        exchange: this.exchange,
        broker: this.options.broker.redactedUrl,
        receivers,
        nextInMs: this.options.intervalMs,
      };
      if (this.broadcasts === 1 || this.failing) {
        this.logger.info('broadcast enable_events to the Celery workers', fields);
      } else this.logger.debug('broadcast enable_events', fields);
      this.failing = false;
      return true;
    } catch (error) {
      if (!this.failing) {
        this.logger.warn('could not broadcast enable_events; retrying at the next interval', {
          exchange: this.exchange,
          broker: this.options.broker.redactedUrl,
          error: describeError(error),
          retryInMs: this.options.intervalMs,
        });
      }
      this.failing = true;
      await this.closeConnections();
      return false;
    }
  }

  private tick(): void {
    if (this.running !== undefined || this.stopped) return;
    this.running = this.broadcastOnce().then(() => {
      this.running = undefined;
    });
  }

  private async publishAmqp(headers: { clock: number; expires: number }): Promise<void> {
    const channel = this.amqpChannel ?? (await this.openAmqp());
    const body = Buffer.from(JSON.stringify(enableEventsCommand()), 'utf8');
    await new Promise<void>((resolve, reject) => {
      channel.publish(
        this.exchange,
        '',
        body,
        {
          contentType: 'application/json',
          contentEncoding: 'utf-8',
          headers,
          deliveryMode: 2,
          priority: 0,
        },
        (error: unknown) => (error == null ? resolve() : reject(asError(error))),
      );
    });
  }

  private async openAmqp(): Promise<amqp.ConfirmChannel> {
    const { broker } = this.options;
    const connection = await connectAmqp(broker);
    connection.on('error', (error: unknown) => {
      this.logger.debug('RabbitMQ connection error (enable_events)', {
        error: describeError(error),
      });
    });
    connection.on('close', () => {
      if (this.amqpConnection === connection) {
        this.amqpConnection = undefined;
        this.amqpChannel = undefined;
      }
    });
    this.amqpConnection = connection;
    try {
      const channel = await connection.createConfirmChannel();
      channel.on('error', () => undefined);
      channel.on('close', () => {
        if (this.amqpChannel === channel) this.amqpChannel = undefined;
      });
      // As kombu declares it (kombu/pidbox.py `Mailbox._get_exchange`): redeclaring with the same
      // arguments is a no-op, and publishing to a missing exchange would close the channel.
      await channel.assertExchange(this.exchange, 'fanout', { durable: false, autoDelete: false });
      this.amqpChannel = channel;
      return channel;
    } catch (error) {
      await this.closeConnections();
      throw error;
    }
  }

  private async publishRedis(headers: { clock: number; expires: number }): Promise<number> {
    let client = this.redis;
    if (client === undefined) {
      const { broker } = this.options;
      client = new Redis({
        ...redisConnectionOptions(broker),
        lazyConnect: true,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        retryStrategy: (times) => backoffDelayMs(times - 1),
      });
      client.on('error', (error: unknown) => {
        this.logger.debug('Redis connection error (enable_events)', {
          error: describeError(error),
        });
      });
      this.redis = client;
      await client.connect();
    }
    const envelope = redisControlEnvelope(
      this.exchange,
      enableEventsCommand(),
      headers,
      randomUUID(),
    );
    let receivers = 0;
    for (const prefixes of redisFanoutPrefixes(this.options.redis)) {
      receivers += await client.publish(redisFanoutChannel(prefixes, this.exchange), envelope);
    }
    return receivers;
  }

  private async closeConnections(): Promise<void> {
    const connection = this.amqpConnection;
    this.amqpConnection = undefined;
    this.amqpChannel = undefined;
    if (connection !== undefined) await connection.close().catch(() => undefined);
    const redis = this.redis;
    this.redis = undefined;
    if (redis !== undefined) {
      await redis.quit().catch(() => redis.disconnect());
    }
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
