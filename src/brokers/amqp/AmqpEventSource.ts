import type { AmqpQueueOptions } from '../BrokerOptions.js';
import type { BrokerEndpoint } from '../BrokerOptions.js';
import type { Logger } from '../../log/Logger.js';
import { workerScriptUrl } from '../../shared/workerScriptUrl.js';
import { warnIfTlsInsecure } from '../brokerTlsOptions.js';
import { describeError as describe } from '../../shared/describeError.js';
import type { EventSource, EventSourceHandlers } from '../EventSource.js';
import { BatchQueue } from '../BatchQueue.js';
import { ReadThread } from '../ReadThread.js';
import { AmqpMetaReader } from './amqpMessageMeta.js';
import type {
  AmqpBatch,
  AmqpReadThreadData,
  AmqpThreadEvent,
  AmqpThreadRequest,
} from './amqpThreadMessages.js';

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
 * The connection lives on a worker thread (amqpReadThread.ts), which hands deliveries over in
 * batches when this thread asks, as the Redis source's does; they are handed on here in slices.
 * Nothing is acknowledged before it is safe (`handlers.checkpoint`): a `kill -9` at any moment
 * leaves every message whose spans the collector has not accepted, or whose in-flight tasks are
 * not in the state file, in the queue for the next bridge. Back-pressure needs no cancel (which
 * would hand the queue to a standby): while paused, no batch is taken, deliveries wait in the
 * thread unacknowledged, and RabbitMQ stops sending once `--amqp-prefetch` are unacknowledged, so
 * the backlog stays in the queue, within its own bounds.
 * https://www.rabbitmq.com/docs/ttl https://www.rabbitmq.com/docs/maxlength
 * https://www.rabbitmq.com/docs/consumer-prefetch https://www.rabbitmq.com/docs/consumers#single-active-consumer
 */
export class AmqpEventSource implements EventSource {
  private readonly thread: ReadThread<AmqpReadThreadData, AmqpThreadRequest, AmqpThreadEvent>;
  /** Channels numbered below this are closed: an acknowledgement for them is not sent. */
  private liveFrom = 0;
  /** The next thread's first channel number (numbers are never reused). */
  private nextGeneration = 1;
  /** Batches received and not handed on (at most two: the one in hand, one pulled ahead). */
  private readonly batches = new BatchQueue<AmqpBatch>(
    DRAIN_SLICE_MS,
    {
      // Pulled ahead: the read thread readies the next batch while this one is handed on.
      taken: () => this.thread.post({ type: 'pull' }),
      message: (bytes, meta, payload, end, batch, index) => {
        this.handOn(bytes, meta, payload, end);
        this.lastGeneration = batch.generation;
        this.lastTag = batch.tags?.[index] ?? 0;
        this.handledSinceAck++;
      },
      paused: () => this.paused,
    },
    () => this.drain(),
  );
  private readonly metas = new AmqpMetaReader();
  /** Bytes of deliveries the read thread holds, written by that thread (ReadBuffer's gauge). */
  private readonly bufferedGauge = new Float64Array(new SharedArrayBuffer(8));
  private stopping = false;
  private paused = false;
  /** `handlers.activate` ran (or runs): once per process, before the first message. */
  private activation: Promise<void> | undefined;
  private active = false;
  /**
   * The newest message handed on, on channel `lastGeneration`; acknowledging it acknowledges all
   * before it. Not acknowledged yet while `handledSinceAck` > 0.
   */
  private lastGeneration = 0;
  private lastTag = 0;
  private handledSinceAck = 0;
  private checkpointing: Promise<void> | undefined;
  private ackTimer: NodeJS.Timeout | undefined;
  private backlogMessages: number | undefined;
  private nearBoundWarned = false;
  private bytesHandled = 0;
  private messagesHandled = 0;

  constructor(
    private readonly options: AmqpEventSourceOptions,
    private readonly handlers: EventSourceHandlers,
    private readonly logger: Logger,
    threadUrl: URL = workerScriptUrl('amqpReadThread.js', import.meta.url),
  ) {
    const { broker, exchange, queue, connectTimeoutMs } = options;
    this.thread = new ReadThread(
      'RabbitMQ',
      threadUrl,
      () => ({
        broker,
        exchange,
        queue,
        connectTimeoutMs,
        maxBatchBytes: MAX_BATCH_BYTES,
        backlogIntervalMs: BACKLOG_INTERVAL_MS,
        firstGeneration: this.nextGeneration,
        bufferedBytes: this.bufferedGauge.buffer,
      }),
      {
        started: (event) => this.connected(event.detail),
        event: (event) => this.onEvent(event),
        // Whatever that thread delivered can no longer be acknowledged: RabbitMQ delivers it
        // again. Its channels' numbers, seen or not, are never given to the next thread.
        exited: () => {
          this.liveFrom = ++this.nextGeneration;
          this.batches.clear();
          // What it held is delivered again, to the next thread.
          this.bufferedGauge[0] = 0;
        },
        lost: () =>
          this.handlers.connection('disconnected', 'the RabbitMQ read thread stopped unexpectedly'),
      },
      logger,
      // The thread keeps almost nothing alive between deliveries (they leave as batches), so a
      // small young generation costs it no time and spares the RSS of node's default one: about
      // 50 MB in the benchmark's in-flight run (bench/README.md).
      { maxYoungGenerationSizeMb: READ_THREAD_YOUNG_GENERATION_MB },
    );
  }

  /**
   * Bytes of deliveries waiting in the read thread, not handed on yet: at most `--amqp-prefetch`
   * messages (RabbitMQ sends no more unacknowledged).
   */
  get bufferedBytes(): number {
    return this.bufferedGauge[0] ?? 0;
  }

  /** Messages ready in the bridge's queue at the last reading (every few seconds). */
  get brokerBacklog(): number | undefined {
    return this.backlogMessages;
  }

  async start(): Promise<void> {
    warnIfTlsInsecure(this.options.broker, this.logger);
    await this.thread.start();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.batches.schedule();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    // Messages not handed on stay unacknowledged: RabbitMQ gives them to the next consumer.
    this.batches.clear();
    clearTimeout(this.ackTimer);
    await this.checkpointing;
    if (this.handledSinceAck > 0) await this.checkpoint();
    // The thread sends the acknowledgements it was given, then closes the connection.
    await this.thread.stop();
  }

  private connected(detail: string): void {
    this.handlers.connection('connected', detail);
    this.thread.post({ type: 'pull' });
  }

  private onEvent(event: AmqpThreadEvent): void {
    switch (event.type) {
      case 'batch':
        this.nextGeneration = Math.max(this.nextGeneration, event.generation + 1);
        if (!this.stopping) this.batches.push(event);
        return;
      case 'connection':
        this.nextGeneration = Math.max(this.nextGeneration, event.generation + 1);
        if (event.state === 'connected') {
          this.connected(event.detail);
          return;
        }
        // Unacknowledged messages, handed on or not, go back to the queue; the assembler and
        // the state file drop what they already saw (duplicates are counted, not exported twice).
        // Every batch waiting came on that channel: the thread sends the next channel's only
        // after this.
        this.liveFrom = Math.max(this.liveFrom, event.generation + 1);
        this.batches.clear();
        this.handlers.connection('disconnected', event.detail);
        return;
      case 'backlog':
        this.onBacklog(event.messages);
        return;
      case 'log':
        if (event.level === 'debug') this.logger.debug(event.msg, event.fields);
        else this.logger.warn(event.msg, event.fields);
        return;
      default:
        return;
    }
  }

  /** One slice of handing on, unless paused, activating or stopping; then maybe a checkpoint. */
  private drain(): void {
    if (this.stopping || this.paused || this.batches.isEmpty) return;
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
          this.batches.schedule();
        });
      return;
    }
    this.batches.drainSlice();
    this.maybeCheckpoint();
  }

  private handOn(bytes: Buffer, meta: number, payload: number, end: number): void {
    const { routingKey, contentType, contentEncoding, compression } = this.metas.read(
      bytes,
      meta,
      payload,
    );
    this.bytesHandled += end - payload;
    this.messagesHandled++;
    const body = bytes.subarray(payload, end);
    this.handlers.message({ routingKey, contentType, contentEncoding, compression, body });
  }

  /**
   * Acknowledge in batches (multiple=true) once safe: a checkpoint for half the prefetch window,
   * or for what was handled within ACK_INTERVAL_MS. One checkpoint runs at a time; the other half
   * of the window keeps the broker sending while it waits for the collector.
   */
  private maybeCheckpoint(): void {
    if (this.checkpointing !== undefined || this.handledSinceAck === 0) return;
    if (this.handledSinceAck >= Math.max(1, this.options.queue.prefetchCount >> 1)) {
      this.checkpointing = this.checkpoint();
    } else {
      this.ackTimer ??= setTimeout(() => {
        this.ackTimer = undefined;
        if (this.checkpointing === undefined && this.handledSinceAck > 0) {
          this.checkpointing = this.checkpoint();
        }
      }, ACK_INTERVAL_MS);
    }
  }

  private async checkpoint(): Promise<void> {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const generation = this.lastGeneration;
    const tag = this.lastTag;
    const handled = this.handledSinceAck;
    this.handledSinceAck = 0;
    try {
      if (handled > 0 && (await this.handlers.checkpoint())) {
        // The thread also ignores an acknowledgement for a channel that closed meanwhile.
        if (generation >= this.liveFrom) this.thread.post({ type: 'ack', generation, tag });
      }
    } finally {
      this.checkpointing = undefined;
      if (!this.stopping) this.maybeCheckpoint();
    }
  }

  /** The queue's depth, for the backlog gauge and the near-bound warning. */
  private onBacklog(messages: number): void {
    this.backlogMessages = messages;
    // RabbitMQ's bound is in bytes; the mean size of what was handled estimates the backlog's.
    const meanBytes = this.messagesHandled > 0 ? this.bytesHandled / this.messagesHandled : 0;
    const estimate = messages * meanBytes;
    const bound = this.options.queue.queueMaxBytes;
    if (!this.nearBoundWarned && estimate >= NEAR_BOUND * bound) {
      this.nearBoundWarned = true;
      this.logger.warn(
        'the bridge queue is near its size bound: past it RabbitMQ drops the oldest events (raise --amqp-queue-max-bytes, or make the collector faster)',
        {
          queue: this.options.queue.queueName,
          messages,
          estimatedBytes: Math.round(estimate),
          maxBytes: bound,
        },
      );
    } else if (this.nearBoundWarned && estimate < (NEAR_BOUND / 2) * bound) {
      this.nearBoundWarned = false;
    }
  }
}

/** Longest a handled message waits for more to share its checkpoint. */
const ACK_INTERVAL_MS = 50;
/** Handing messages on runs in slices of at most this long, so timers and exports run between. */
const DRAIN_SLICE_MS = 10;
/** Bytes of deliveries per batch from the read thread; the rest waits there (within the prefetch window). */
const MAX_BATCH_BYTES = 1024 * 1024;
const BACKLOG_INTERVAL_MS = 5000;
/** The read thread's young generation (`resourceLimits.maxYoungGenerationSizeMb`). */
const READ_THREAD_YOUNG_GENERATION_MB = 4;
/** Warn when the queue's estimated size passes this share of `x-max-length-bytes`. */
const NEAR_BOUND = 0.8;
