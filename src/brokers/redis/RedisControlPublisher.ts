import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from '../../log/Logger.js';
import { describeError } from '../../shared/describeError.js';
import type { BrokerEndpoint, RedisChannelOptions } from '../BrokerOptions.js';
import type { ControlCommand, ControlPublisher } from '../ControlPublisher.js';
import { backoffDelayMs } from '../EventSource.js';
import { redisFanoutChannel, redisFanoutPrefixes } from './redisChannels.js';
import { redisConnectionOptions } from './redisConnectionOptions.js';

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
 * Redis: kombu turns a fanout exchange into pub/sub: PUBLISH on
 * `{global_keyprefix}/{db}.<control_exchange>.pidbox` (no `/routing_key` suffix: the routing key
 * is empty) of kombu's JSON envelope, on every channel prefix the workers may use.
 */
export class RedisControlPublisher implements ControlPublisher {
  private client: Redis | undefined;
  readonly exchange: string;

  constructor(
    private readonly broker: BrokerEndpoint,
    /** Celery's `control_exchange` (`celery`). */
    controlExchange: string,
    /** The same key and channel prefixes kombu uses for the event channels (naming only). */
    private readonly channels: Pick<
      RedisChannelOptions,
      'globalKeyPrefix' | 'fanoutPrefix' | 'unformattedFanoutPrefix'
    >,
    private readonly logger: Logger,
  ) {
    // kombu/pidbox.py `Mailbox.exchange_fmt`.
    this.exchange = `${controlExchange}.pidbox`;
  }

  /** The pub/sub channel the command is published on. */
  get channel(): string {
    return redisFanoutChannel(this.channels, this.exchange);
  }

  async publish(
    command: ControlCommand,
    headers: { clock: number; expires: number },
  ): Promise<number> {
    let client = this.client;
    if (client === undefined) {
      client = new Redis({
        ...redisConnectionOptions(this.broker),
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
      this.client = client;
      await client.connect();
    }
    const envelope = redisControlEnvelope(this.exchange, command, headers, randomUUID());
    let receivers = 0;
    for (const prefixes of redisFanoutPrefixes(this.channels)) {
      receivers += await client.publish(redisFanoutChannel(prefixes, this.exchange), envelope);
    }
    return receivers;
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) await client.quit().catch(() => client.disconnect());
  }
}
