import type { RedisChannelOptions } from '../BrokerOptions.js';
import type { BrokerEndpoint } from '../BrokerOptions.js';
import type { Logger } from '../../log/Logger.js';
import { workerScriptUrl } from '../../shared/workerScriptUrl.js';
import { warnIfTlsInsecure } from '../brokerTlsOptions.js';
import { decodeKombuEnvelope, isDecodeRejection } from './decodeKombuEnvelope.js';
import type { EventSource, EventSourceHandlers } from '../EventSource.js';
import { ReadThread } from '../ReadThread.js';
import { BatchQueue } from '../BatchQueue.js';
import type { ReadBatch } from '../ReadBuffer.js';
import type {
  RedisReadThreadData,
  RedisThreadEvent,
  RedisThreadRequest,
} from './redisThreadMessages.js';

export interface RedisEventSourceOptions {
  readonly broker: BrokerEndpoint;
  readonly exchange: string;
  readonly channels: RedisChannelOptions;
  readonly connectTimeoutMs: number;
}

/** Processing runs in slices of at most this long, so timers and exports run between them. */
const DRAIN_SLICE_MS = 2;

/** Bytes of messages per batch from the read thread; the rest waits there (bounded). */
const MAX_BATCH_BYTES = 1024 * 1024;

const SLASH = 0x2f;

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
 *
 * So the subscription is read on a worker thread (redisReadThread.ts) that does nothing else:
 * it keeps what it read, as read (at most `maxBufferedBytes`; overflow is dropped and counted as
 * `buffer_full`), until this thread pulls the next batch, and kombu's envelopes are unwrapped here. Batches are
 * processed here in slices of {@link DRAIN_SLICE_MS}, and the next one is pulled while the
 * current one is processed, so a burst waits in the bridge's memory instead of Redis's whatever
 * the bridge is busy with.
 */
export class RedisEventSource implements EventSource {
  private readonly thread: ReadThread<RedisReadThreadData, RedisThreadRequest, RedisThreadEvent>;
  /** Batches received and not handed on (at most two: the one in hand, one pulled ahead). */
  private readonly batches = new BatchQueue<ReadBatch>(DRAIN_SLICE_MS, {
    // Pulled ahead: the read thread readies the next batch while this one is processed.
    taken: (batch) => {
      if (!batch.final) this.pull();
    },
    message: (bytes, channel, payload, end) => this.handle(bytes, channel, payload, end),
    paused: () => this.paused,
  });
  private paused = false;
  /** Resolves the stop's wait for a resume (the export queue drained). */
  private resumed: (() => void) | undefined;
  private readonly bufferedGauge = new Float64Array(new SharedArrayBuffer(8));

  constructor(
    private readonly options: RedisEventSourceOptions,
    private readonly handlers: EventSourceHandlers,
    private readonly logger: Logger,
    threadUrl: URL = workerScriptUrl('redisReadThread.js', import.meta.url),
  ) {
    const { broker, exchange, channels, connectTimeoutMs } = options;
    this.thread = new ReadThread(
      'Redis',
      threadUrl,
      () => ({
        broker,
        exchange,
        channels,
        connectTimeoutMs,
        maxBatchBytes: MAX_BATCH_BYTES,
        bufferedBytes: this.bufferedGauge.buffer,
      }),
      {
        started: (event) => {
          this.handlers.connection('connected', event.detail);
          this.pull();
        },
        event: (event) => this.onEvent(event),
        // What it held and had not handed over is gone with it (pub/sub keeps nothing).
        exited: () => (this.bufferedGauge[0] = 0),
        lost: () => {
          // What it sent before exiting is handled as usual (its messages come before 'exit').
          this.batches.schedule();
          // Not asked to stop: events are being missed. Say so; a new thread is started.
          this.handlers.connection('disconnected', 'the Redis read thread stopped unexpectedly');
        },
      },
      logger,
    );
  }

  async start(): Promise<void> {
    warnIfTlsInsecure(this.options.broker, this.logger);
    // Pub/sub has no consumer to take over from: what was saved is loaded before subscribing.
    await this.handlers.activate();
    await this.thread.start();
  }

  /** Bytes of messages waiting in the read thread (bounded by `--redis-max-buffered-bytes`). */
  get bufferedBytes(): number {
    return this.bufferedGauge[0] ?? 0;
  }

  /**
   * Pub/sub cannot be paused: stop pulling from the read thread instead, whose bounded buffer
   * absorbs the burst (past its bound it drops, counted as `buffer_full`).
   */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.resumed?.();
    this.resumed = undefined;
    this.batches.schedule();
  }

  async stop(): Promise<void> {
    await this.thread.stop();
    await this.drainAll();
  }

  /** After a stop: hands on everything the thread handed over, still pausing while asked to. */
  private async drainAll(): Promise<void> {
    while (!this.batches.isEmpty) {
      if (this.paused) {
        await new Promise<void>((resolve) => (this.resumed = resolve));
        continue;
      }
      this.batches.drainSlice();
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  private onEvent(event: RedisThreadEvent): void {
    switch (event.type) {
      case 'batch':
        this.batches.push(event);
        if (event.dropped > 0) {
          this.handlers.rejected(
            {
              reason: 'buffer_full',
              detail:
                'Redis events arrive faster than the bridge processes them and its read buffer is full: messages are dropped until it drains (raise --redis-max-buffered-bytes for longer bursts)',
            },
            event.dropped,
          );
        }
        // After a stop's final batch, `stop` hands on the rest before the bridge flushes.
        return;
      case 'connection':
        this.handlers.connection(event.state, event.detail);
        return;
      case 'log':
        this.logger.warn(event.msg, event.fields);
        return;
      default:
        return;
    }
  }

  /**
   * One message as read, its channel name `bytes[channel, payload)` and its payload
   * `bytes[payload, end)`: kombu's envelope unwrapped (the routing key from the channel if need be).
   */
  private handle(bytes: Buffer, channel: number, payload: number, end: number): void {
    // Searched within the channel name only (a negative offset would count from the end).
    const slash = payload > channel ? bytes.lastIndexOf(SLASH, payload - 1) : -1;
    const message = decodeKombuEnvelope(
      bytes.subarray(payload, end),
      slash < channel ? '' : bytes.toString('utf8', slash + 1, payload),
    );
    if (isDecodeRejection(message)) this.handlers.rejected(message, 1);
    else this.handlers.message(message);
  }

  private pull(): void {
    this.thread.post({ type: 'pull' });
  }
}
