import amqp from 'amqplib';
import type { AmqpQueueOptions } from '../BrokerOptions.js';
import type { BrokerEndpoint } from '../BrokerOptions.js';
import { BrokerSetupError } from '../../shared/errors.js';
import type { Logger } from '../../log/Logger.js';
import { describeBrokerError, warnIfTlsInsecure } from '../brokerTlsOptions.js';
import { connectWithRetry } from '../connectWithRetry.js';
import { describeError as describe } from '../../shared/describeError.js';
import { backoffDelayMs, type EventSource, type EventSourceHandlers } from '../EventSource.js';
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
 *
 * Nothing is acknowledged before it is safe (`handlers.checkpoint`): a `kill -9` at any moment
 * leaves every message whose spans the collector has not accepted, or whose in-flight tasks are
 * not in the state file, in the queue for the next bridge. Back-pressure needs no cancel (which
 * would hand the queue to a standby): while paused, deliveries wait here unhandled and
 * unacknowledged, and RabbitMQ stops sending once `--amqp-prefetch` are unacknowledged, so the
 * backlog stays in the queue, within its own bounds.
 * https://www.rabbitmq.com/docs/ttl https://www.rabbitmq.com/docs/maxlength
 * https://www.rabbitmq.com/docs/consumer-prefetch https://www.rabbitmq.com/docs/consumers#single-active-consumer
 */
export class AmqpEventSource implements EventSource {
  private connection: amqp.ChannelModel | undefined;
  private consumer: Consumer | undefined;
  private stopping = false;
  private paused = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private backlogTimer: NodeJS.Timeout | undefined;
  /** `handlers.activate` ran (or runs): once per process, before the first message. */
  private activation: Promise<void> | undefined;
  private active = false;
  private backlogMessages: number | undefined;
  private nearBoundWarned = false;
  private bytesHandled = 0;
  private messagesHandled = 0;

  constructor(
    private readonly options: AmqpEventSourceOptions,
    private readonly handlers: EventSourceHandlers,
    private readonly logger: Logger,
  ) {}

  /** Messages ready in the bridge's queue at the last reading (every few seconds). */
  get brokerBacklog(): number | undefined {
    return this.backlogMessages;
  }

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
    this.backlogTimer = setInterval(() => void this.readBacklog(), BACKLOG_INTERVAL_MS).unref();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    if (this.consumer !== undefined) this.drain(this.consumer);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.backlogTimer);
    const consumer = this.consumer;
    if (consumer !== undefined) {
      // Messages not handed on stay unacknowledged: RabbitMQ gives them to the next consumer.
      clearTimeout(consumer.ackTimer);
      await consumer.checkpointing;
      if (consumer.lastHandled !== undefined) await this.checkpoint(consumer);
    }
    this.consumer = undefined;
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
    let consumer: Consumer;
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
          { cause: error },
        );
      }
      await channel.bindQueue(queue.queueName, exchange, '#');
      await channel.prefetch(queue.prefetchCount);
      consumer = { channel, waiting: [], handledSinceAck: 0, closed: false, draining: false };
      await channel.consume(
        queue.queueName,
        (message) => {
          if (message === null) {
            // The broker cancelled the consumer (queue deleted): reconnect to redeclare it.
            this.handlers.connection('disconnected', 'RabbitMQ cancelled the consumer');
            void connection.close().catch(() => undefined);
            return;
          }
          consumer.waiting.push(message);
          this.drain(consumer);
        },
        { noAck: false },
      );
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw error;
    }
    this.connection = connection;
    this.consumer = consumer;
    connection.on('error', (error: unknown) => {
      this.logger.warn('RabbitMQ connection error', { error: describe(error) });
    });
    connection.on('close', () => {
      // Unacknowledged messages, handled or not, go back to the queue; the assembler and the
      // state file drop what they already saw (duplicates are counted, not exported twice).
      consumer.closed = true;
      clearTimeout(consumer.ackTimer);
      consumer.waiting.length = 0;
      if (this.stopping || this.connection !== connection) return;
      this.connection = undefined;
      this.consumer = undefined;
      this.handlers.connection('disconnected', `lost the connection to ${broker.redactedUrl}`);
      this.reconnect(0);
    });
    this.handlers.connection(
      'connected',
      `consuming ${exchange} on ${broker.redactedUrl} via queue ${queue.queueName}`,
    );
  }

  /** Hands waiting messages on, in slices, unless paused, activating or stopping. */
  private drain(consumer: Consumer): void {
    if (consumer.closed || this.stopping || this.paused || consumer.waiting.length === 0) return;
    if (!this.active) {
      // The first message this process gets: load what a previous active consumer saved.
      this.activation ??= this.handlers
        .activate()
        .catch((error: unknown) => {
          this.logger.warn('could not load the saved state on becoming the active consumer', {
            error: describe(error),
          });
        })
        .finally(() => {
          this.active = true;
          if (this.consumer !== undefined) this.drain(this.consumer);
        });
      return;
    }
    const waiting = consumer.waiting;
    // Usually one message waits (the one just delivered): the clock is read only for a backlog of
    // them (after a pause or the activation), which is handed on in slices.
    const sliced = waiting.length > 1;
    const deadline = sliced ? performance.now() + DRAIN_SLICE_MS : 0;
    let handled = 0;
    while (handled < waiting.length && !this.paused) {
      const message = waiting[handled++] as amqp.Message;
      this.handOn(message);
      consumer.lastHandled = message;
      consumer.handledSinceAck++;
      if (sliced && performance.now() >= deadline) break;
    }
    if (handled === waiting.length) waiting.length = 0;
    else waiting.splice(0, handled);
    if (waiting.length > 0 && !this.paused && !consumer.draining) {
      consumer.draining = true;
      setImmediate(() => {
        consumer.draining = false;
        this.drain(consumer);
      });
    }
    this.maybeCheckpoint(consumer);
  }

  private handOn(message: amqp.Message): void {
    const properties = message.properties as {
      contentType?: unknown;
      contentEncoding?: unknown;
      headers?: Record<string, unknown>;
    };
    const compression = properties.headers?.['compression'];
    this.bytesHandled += message.content.length;
    this.messagesHandled++;
    this.handlers.message({
      routingKey: message.fields.routingKey,
      contentType: typeof properties.contentType === 'string' ? properties.contentType : '',
      contentEncoding:
        typeof properties.contentEncoding === 'string' ? properties.contentEncoding : undefined,
      compression: typeof compression === 'string' ? compression : undefined,
      body: message.content,
    });
  }

  /**
   * Acknowledge in batches (multiple=true) once safe: a checkpoint for half the prefetch window,
   * or for what was handled within ACK_INTERVAL_MS. One checkpoint runs at a time; the other half
   * of the window keeps the broker sending while it waits for the collector.
   */
  private maybeCheckpoint(consumer: Consumer): void {
    if (consumer.checkpointing !== undefined || consumer.lastHandled === undefined) return;
    if (consumer.handledSinceAck >= Math.max(1, this.options.queue.prefetchCount >> 1)) {
      consumer.checkpointing = this.checkpoint(consumer);
    } else {
      consumer.ackTimer ??= setTimeout(() => {
        consumer.ackTimer = undefined;
        if (consumer.checkpointing === undefined && consumer.lastHandled !== undefined) {
          consumer.checkpointing = this.checkpoint(consumer);
        }
      }, ACK_INTERVAL_MS);
    }
  }

  private async checkpoint(consumer: Consumer): Promise<void> {
    clearTimeout(consumer.ackTimer);
    consumer.ackTimer = undefined;
    const upTo = consumer.lastHandled;
    consumer.lastHandled = undefined;
    consumer.handledSinceAck = 0;
    try {
      if (upTo !== undefined && (await this.handlers.checkpoint()) && !consumer.closed) {
        consumer.channel.ack(upTo, true);
      }
    } catch (error) {
      // The channel closed meanwhile: the broker redelivers these messages.
      this.logger.debug('acknowledgement not sent', { error: describe(error) });
    } finally {
      consumer.checkpointing = undefined;
      if (!this.stopping && !consumer.closed) this.maybeCheckpoint(consumer);
    }
  }

  /** Reads the queue's depth (passive declare) for the backlog gauge and the near-bound warning. */
  private async readBacklog(): Promise<void> {
    const consumer = this.consumer;
    if (consumer === undefined || consumer.closed) return;
    try {
      const { messageCount } = await consumer.channel.checkQueue(this.options.queue.queueName);
      this.backlogMessages = messageCount;
    } catch {
      return; // the connection is going: the reconnect reports it
    }
    // RabbitMQ's bound is in bytes; the mean size of what was handled estimates the backlog's.
    const meanBytes = this.messagesHandled > 0 ? this.bytesHandled / this.messagesHandled : 0;
    const estimate = this.backlogMessages * meanBytes;
    const bound = this.options.queue.queueMaxBytes;
    if (!this.nearBoundWarned && estimate >= NEAR_BOUND * bound) {
      this.nearBoundWarned = true;
      this.logger.warn(
        'the bridge queue is near its size bound: past it RabbitMQ drops the oldest events (raise --amqp-queue-max-bytes, or make the collector faster)',
        {
          queue: this.options.queue.queueName,
          messages: this.backlogMessages,
          estimatedBytes: Math.round(estimate),
          maxBytes: bound,
        },
      );
    } else if (this.nearBoundWarned && estimate < (NEAR_BOUND / 2) * bound) {
      this.nearBoundWarned = false;
    }
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

/** One channel's consumer: what it was given and what it has handed on but not acknowledged. */
interface Consumer {
  readonly channel: amqp.Channel;
  /** Delivered, not handed on yet (paused, activating, or a slice ended). */
  readonly waiting: amqp.Message[];
  /** The newest message handed on and not acknowledged; acking it acks all before it. */
  lastHandled?: amqp.Message;
  handledSinceAck: number;
  checkpointing?: Promise<void>;
  ackTimer?: NodeJS.Timeout;
  closed: boolean;
  draining: boolean;
}

/** Longest a handled message waits for more to share its checkpoint. */
const ACK_INTERVAL_MS = 50;
/** Handing messages on runs in slices of at most this long, so timers and exports run between. */
const DRAIN_SLICE_MS = 10;
const BACKLOG_INTERVAL_MS = 5000;
/** Warn when the queue's estimated size passes this share of `x-max-length-bytes`. */
const NEAR_BOUND = 0.8;
