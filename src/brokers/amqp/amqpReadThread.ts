/**
 * Entry point of the worker thread that consumes the bridge's RabbitMQ queue for AmqpEventSource:
 * connect, declare, consume, keep each delivery as read (ReadBuffer: routing key and properties as
 * a few bytes, the body, the delivery tag) and hand them to the bridge's thread in batches when it
 * asks; acknowledge when it says so; reconnect when the connection is lost.
 *
 * Why a thread: amqplib's frame parsing, its property and header decoding and the socket reads
 * were the largest share of the bridge's main thread after decoding and assembling
 * (bench/README.md), on the one thread every event passes through. Here they run beside it.
 *
 * What it holds is bounded by the prefetch window: RabbitMQ sends no more than `--amqp-prefetch`
 * unacknowledged deliveries (https://www.rabbitmq.com/docs/consumer-prefetch), and nothing is
 * acknowledged before the bridge's thread made it safe, so while that thread is paused the backlog
 * stays in the queue. Nothing is dropped here.
 */
import { parentPort, workerData } from 'node:worker_threads';
import amqp from 'amqplib';
import { BrokerSetupError } from '../../shared/errors.js';
import type { LogFields } from '../../log/Logger.js';
import { describeError as describe } from '../../shared/describeError.js';
import { describeBrokerError } from '../brokerTlsOptions.js';
import { connectWithRetry } from '../connectWithRetry.js';
import { backoffDelayMs } from '../EventSource.js';
import { ReadBuffer } from '../ReadBuffer.js';
import type { ReadThreadStart } from '../ReadThread.js';
import { connectAmqp } from './connectAmqp.js';
import { MAX_META_BYTES, writeAmqpMeta } from './amqpMessageMeta.js';
import type {
  AmqpReadThreadData,
  AmqpThreadEvent,
  AmqpThreadRequest,
} from './amqpThreadMessages.js';

const maybePort = parentPort;
if (maybePort === null) throw new Error('amqpReadThread must run as a worker thread');
const port = maybePort;
const options = workerData as AmqpReadThreadData;
const { broker, exchange, queue } = options;
const send = (event: AmqpThreadEvent | ReadThreadStart, transfer: ArrayBuffer[] = []): void =>
  port.postMessage(event, transfer);
/** A line for the bridge's log (this thread writes none itself). */
const log = (level: 'warn' | 'debug', msg: string, fields: LogFields): void =>
  send({ type: 'log', level, msg, fields });

/** The open channel and its number; undefined while disconnected. */
let current: { readonly channel: amqp.Channel; readonly generation: number } | undefined;
let connection: amqp.ChannelModel | undefined;
let nextGeneration = options.firstGeneration;
let stopping = false;
let reconnectTimer: NodeJS.Timeout | undefined;
const scratch = Buffer.alloc(MAX_META_BYTES);

const buffer = new ReadBuffer(
  // Bounded by the prefetch window, not by bytes: see above.
  {
    maxBufferedBytes: Infinity,
    chunkBytes: options.maxBatchBytes,
    tagged: true,
    gauge: new Float64Array(options.bufferedBytes),
  },
  (batch, transfer) => {
    if (current !== undefined) send({ ...batch, generation: current.generation }, transfer);
  },
);

async function connectAndConsume(): Promise<string> {
  const opened = await connectAmqp(broker);
  // Watched from the start, so that no close goes unseen; it reconnects only once consuming.
  const generation = nextGeneration++;
  watch(opened, generation);
  try {
    const channel = await opened.createChannel();
    // A channel the broker closes (an error of this channel only) leaves the connection open and
    // the consumer gone: close the connection too, so that the reconnect below starts over.
    channel.on('error', (error: unknown) => {
      log('warn', 'RabbitMQ channel error', { error: describe(error) });
    });
    channel.on('close', () => {
      if (!stopping) void opened.close().catch(() => undefined);
    });
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
    current = { channel, generation };
    await channel.consume(
      queue.queueName,
      (message) => {
        if (message === null) {
          // The broker cancelled the consumer (queue deleted): reconnect to redeclare it.
          send({
            type: 'connection',
            state: 'disconnected',
            generation,
            detail: 'RabbitMQ cancelled the consumer',
          });
          void opened.close().catch(() => undefined);
          return;
        }
        read(message);
      },
      { noAck: false },
    );
    connection = opened;
    return `consuming ${exchange} on ${broker.redactedUrl} via queue ${queue.queueName}`;
  } catch (error) {
    current = undefined;
    await opened.close().catch(() => undefined);
    throw error;
  }
}

function read(message: amqp.Message): void {
  const properties = message.properties as {
    contentType?: unknown;
    contentEncoding?: unknown;
    headers?: Record<string, unknown>;
  };
  const compression = properties.headers?.['compression'];
  const meta = writeAmqpMeta(
    {
      routingKey: message.fields.routingKey,
      contentType: typeof properties.contentType === 'string' ? properties.contentType : '',
      contentEncoding:
        typeof properties.contentEncoding === 'string' ? properties.contentEncoding : undefined,
      compression: typeof compression === 'string' ? compression : undefined,
    },
    scratch,
  );
  buffer.read(meta, message.content, message.fields.deliveryTag);
}

function watch(opened: amqp.ChannelModel, generation: number): void {
  opened.on('error', (error: unknown) => {
    log('warn', 'RabbitMQ connection error', { error: describe(error) });
  });
  opened.on('close', () => {
    // Unacknowledged messages, handed over or not, go back to the queue; the bridge drops what it
    // already saw (duplicates are counted, not exported twice).
    if (current?.generation === generation) current = undefined;
    buffer.discard();
    if (stopping || connection !== opened) return;
    connection = undefined;
    send({
      type: 'connection',
      state: 'disconnected',
      generation,
      detail: `lost the connection to ${broker.redactedUrl}`,
    });
    reconnect(0);
  });
}

/** After a lost connection: retry for as long as the bridge runs. */
function reconnect(attempt: number): void {
  if (stopping) return;
  const delay = backoffDelayMs(attempt);
  reconnectTimer = setTimeout(() => {
    connectAndConsume().then(
      (detail) => {
        if (current !== undefined) {
          send({ type: 'connection', state: 'connected', generation: current.generation, detail });
        }
      },
      (error: unknown) => {
        log('warn', 'RabbitMQ reconnect failed, retrying', {
          broker: broker.redactedUrl,
          error: describeBrokerError(error, broker),
          retryInMs: backoffDelayMs(attempt + 1),
        });
        reconnect(attempt + 1);
      },
    );
  }, delay);
}

/** Reads the queue's depth (passive declare) for the backlog gauge and the near-bound warning. */
async function readBacklog(): Promise<void> {
  const open = current;
  if (open === undefined) return;
  try {
    const { messageCount } = await open.channel.checkQueue(queue.queueName);
    send({ type: 'backlog', messages: messageCount });
  } catch {
    // The connection is going: the reconnect reports it.
  }
}

port.on('message', (request: AmqpThreadRequest) => {
  switch (request.type) {
    case 'pull':
      buffer.pull();
      return;
    case 'ack':
      if (current?.generation !== request.generation) return;
      try {
        current.channel.ack({ fields: { deliveryTag: request.tag } } as amqp.Message, true);
      } catch (error) {
        // The channel closed meanwhile: the broker redelivers these messages.
        log('debug', 'acknowledgement not sent', { error: describe(error) });
      }
      return;
    case 'stop':
      stopping = true;
      clearTimeout(reconnectTimer);
      clearInterval(backlogTimer);
      // What was not handed over stays unacknowledged: RabbitMQ gives it to the next consumer.
      void (connection?.close() ?? Promise.resolve())
        .catch(() => undefined)
        .finally(() => port.close());
      return;
  }
});

let backlogTimer: NodeJS.Timeout | undefined;

connectWithRetry(
  broker,
  options.connectTimeoutMs,
  async () => {
    const detail = await connectAndConsume();
    send({ type: 'started', detail });
  },
  (msg, fields) => log('warn', msg, fields),
  () => stopping,
).then(
  () => {
    backlogTimer = setInterval(() => void readBacklog(), options.backlogIntervalMs);
  },
  (error: unknown) => {
    send({
      type: 'failed',
      setup: error instanceof BrokerSetupError,
      message: error instanceof Error ? error.message : String(error),
    });
  },
);
