import amqp from 'amqplib';
import type { AmqpQueueOptions } from '../config/BridgeOptions.js';
import type { BrokerEndpoint } from '../config/brokerUrl.js';
import { BrokerSetupError } from '../errors.js';
import type { Logger } from '../log/Logger.js';
import { describeBrokerError, warnIfTlsInsecure } from './brokerTlsOptions.js';
import { connectWithRetry } from './connectWithRetry.js';
import { describeError as describe } from './describeError.js';
import { backoffDelayMs, type EventSource, type EventSourceHandlers } from './EventSource.js';
import { connectAmqp } from './connectAmqp.js';

export interface AmqpEventSourceOptions {
  readonly broker: BrokerEndpoint;
  readonly exchange: string;
  readonly queue: AmqpQueueOptions;
  readonly connectTimeoutMs: number;
}

/**
 * Consumes Celery's event exchange on RabbitMQ through a queue of the bridge's own.
 *
 * Celery's own receiver uses an auto-delete queue with a 5 s message TTL
 * (celery/events/receiver.py, `event_queue_ttl`), so events published while it is slow or
 * restarting are gone. The bridge's queue instead outlives the bridge: a durable, named queue
 * bound with `#` to the topic exchange, bounded in bytes (`x-max-length-bytes`, oldest dropped
 * first), in age (`x-message-ttl`) and in life (`x-expires`: deleted once no bridge has consumed
 * it for that long), and single-active-consumer so a second bridge waits as a standby.
 * https://www.rabbitmq.com/docs/ttl https://www.rabbitmq.com/docs/maxlength
 */
export class AmqpEventSource implements EventSource {
  private connection: amqp.ChannelModel | undefined;
  private stopping = false;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: AmqpEventSourceOptions,
    private readonly handlers: EventSourceHandlers,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    const { broker, connectTimeoutMs } = this.options;
    warnIfTlsInsecure(broker, this.logger);
    await connectWithRetry(
      broker,
      connectTimeoutMs,
      () => this.connectAndConsume(),
      (msg, fields) => this.logger.warn(msg, fields),
      () => this.stopping,
    );
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    const connection = this.connection;
    this.connection = undefined;
    if (connection !== undefined) {
      try {
        await connection.close();
      } catch {
        // Already closed: nothing to release.
      }
    }
  }

  private async connectAndConsume(): Promise<void> {
    const { broker, queue, exchange } = this.options;
    const connection = await connectAmqp(broker);
    try {
      const channel = await connection.createChannel();
      // Celery declares `celeryev` as a durable topic exchange (celery/events/event.py).
      await channel.assertExchange(exchange, 'topic', { durable: true, autoDelete: false });
      try {
        await channel.assertQueue(queue.queueName, {
          durable: true,
          arguments: {
            'x-max-length-bytes': queue.queueMaxBytes,
            'x-overflow': 'drop-head',
            'x-message-ttl': queue.queueMessageTtlMs,
            'x-expires': queue.queueExpiresMs,
            'x-single-active-consumer': true,
          },
        });
      } catch (error) {
        throw new BrokerSetupError(
          `RabbitMQ refused to declare queue ${JSON.stringify(queue.queueName)}: ${describe(error)}. ` +
            'If it exists with other arguments (an older bridge version or other --amqp-queue-* values), ' +
            'delete it (rabbitmqctl delete_queue NAME) or choose another name with --amqp-queue.',
        );
      }
      await channel.bindQueue(queue.queueName, exchange, '#');
      await channel.prefetch(queue.prefetchCount);
      let unacked: amqp.Message | undefined;
      let unackedCount = 0;
      let ackTimer: NodeJS.Timeout | undefined;
      const ackNow = (): void => {
        clearTimeout(ackTimer);
        ackTimer = undefined;
        const last = unacked;
        unacked = undefined;
        unackedCount = 0;
        if (last === undefined) return;
        try {
          channel.ack(last, true);
        } catch {
          // The channel closed meanwhile: the broker redelivers these messages, and the
          // assembler drops what it already saw (duplicates are counted, not exported twice).
        }
      };
      await channel.consume(
        queue.queueName,
        (message) => {
          if (message === null) {
            // The broker cancelled the consumer (queue deleted): reconnect to redeclare it.
            this.handlers.connection('disconnected', 'RabbitMQ cancelled the consumer');
            void connection.close().catch(() => undefined);
            return;
          }
          const properties = message.properties as {
            contentType?: unknown;
            contentEncoding?: unknown;
            headers?: Record<string, unknown>;
          };
          const compression = properties.headers?.['compression'];
          this.handlers.message({
            routingKey: message.fields.routingKey,
            contentType: typeof properties.contentType === 'string' ? properties.contentType : '',
            contentEncoding:
              typeof properties.contentEncoding === 'string'
                ? properties.contentEncoding
                : undefined,
            compression: typeof compression === 'string' ? compression : undefined,
            body: message.content,
          });
          // Acknowledge in batches (multiple=true): one frame for half the prefetch window, or
          // for what arrived within ACK_INTERVAL_MS. Every ack is a socket write, and acking
          // once per event-loop turn cost more than parsing the events (README "Benchmark").
          // Half the window keeps the broker sending while the ack is on its way.
          unacked = message;
          if (++unackedCount >= Math.max(1, queue.prefetchCount >> 1)) ackNow();
          else ackTimer ??= setTimeout(ackNow, ACK_INTERVAL_MS);
        },
        { noAck: false },
      );
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw error;
    }
    this.connection = connection;
    connection.on('error', (error: unknown) => {
      this.logger.warn('RabbitMQ connection error', { error: describe(error) });
    });
    connection.on('close', () => {
      if (this.stopping || this.connection !== connection) return;
      this.connection = undefined;
      this.handlers.connection('disconnected', `lost the connection to ${broker.redactedUrl}`);
      this.reconnect(0);
    });
    this.handlers.connection(
      'connected',
      `consuming ${exchange} on ${broker.redactedUrl} via queue ${queue.queueName}`,
    );
  }

  /** After a lost connection: retry for as long as the bridge runs. */
  private reconnect(attempt: number): void {
    if (this.stopping) return;
    const delay = backoffDelayMs(attempt);
    this.reconnectTimer = setTimeout(() => {
      this.connectAndConsume().catch((error: unknown) => {
        this.logger.warn('RabbitMQ reconnect failed, retrying', {
          broker: this.options.broker.redactedUrl,
          error: describeBrokerError(error, this.options.broker),
          retryInMs: backoffDelayMs(attempt + 1),
        });
        this.reconnect(attempt + 1);
      });
    }, delay);
  }
}

/** Longest an acknowledgement waits for more messages to share its frame. */
const ACK_INTERVAL_MS = 20;
