/**
 * Entry point of the worker thread that reads Celery's events from Redis pub/sub for
 * RedisEventSource: subscribe, keep what was read in a bounded buffer (RedisReadBuffer), and hand
 * it to the bridge's thread in batches when it asks. Nothing is decoded here (kombu's envelopes
 * are unwrapped on the bridge's thread): the less this thread does per byte, the faster it drains
 * the socket when it shares the CPU with the bridge's busy thread.
 *
 * Why a thread: Redis keeps nothing for a subscriber, and disconnects one that falls
 * `client-output-buffer-limit pubsub` (32 MB by default) behind, losing everything in flight
 * (https://redis.io/docs/latest/develop/reference/clients/#output-buffer-limits). Node reads a
 * socket only when its event loop is free; here the loop does nothing but read, whatever the
 * bridge's thread is busy with (a large batch, a GC pause, an export), so a burst waits in this
 * thread's buffer (`--redis-max-buffered-bytes`) instead of in Redis's.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Redis } from 'ioredis';
import { describeBrokerError } from '../brokerTlsOptions.js';
import { connectWithRetry } from '../connectWithRetry.js';
import { redisEventChannels, redisFanoutPrefixes } from './redisChannels.js';
import { redisConnectionOptions } from './redisConnectionOptions.js';
import { backoffDelayMs } from '../EventSource.js';
import { ReadBuffer } from '../ReadBuffer.js';
import type { ReadThreadStart } from '../ReadThread.js';
import type {
  RedisReadThreadData,
  RedisThreadEvent,
  RedisThreadRequest,
} from './redisThreadMessages.js';

const maybePort = parentPort;
if (maybePort === null) throw new Error('redisReadThread must run as a worker thread');
const port = maybePort;
const options = workerData as RedisReadThreadData;
const { broker } = options;
const send = (event: RedisThreadEvent | ReadThreadStart, transfer: ArrayBuffer[] = []): void =>
  port.postMessage(event, transfer);

const buffer = new ReadBuffer(
  {
    maxBufferedBytes: options.channels.maxBufferedBytes,
    chunkBytes: options.maxBatchBytes,
    gauge: new Float64Array(options.bufferedBytes),
  },
  send,
);
let stopping = false;
let everReady = false;
let lastConnectError: unknown;

const client = new Redis({
  ...redisConnectionOptions(broker),
  lazyConnect: true,
  enableOfflineQueue: true,
  autoResubscribe: true,
  maxRetriesPerRequest: null,
  retryStrategy: (times) => (stopping ? null : backoffDelayMs(times - 1)),
});

const channelSets = redisFanoutPrefixes(options.channels).map((prefixes) =>
  redisEventChannels(prefixes, options.exchange),
);
const patterns = channelSets.map((set) => set.pattern);
const plains = channelSets.map((set) => set.plain);
const pattern = patterns.join(' and ');
const plain = plains.join(' and ');

client.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, payload: Buffer) =>
  buffer.read(channel, payload),
);
client.on('messageBuffer', (channel: Buffer, payload: Buffer) => buffer.read(channel, payload));
client.on('error', (error: unknown) => {
  lastConnectError = error;
  if (everReady && !stopping) {
    send({
      type: 'log',
      msg: 'Redis connection error',
      fields: { error: describeBrokerError(error, broker) },
    });
  }
});
client.on('close', () => {
  if (everReady && !stopping) {
    send({
      type: 'connection',
      state: 'disconnected',
      detail: `lost the connection to ${broker.redactedUrl}`,
    });
  }
});
client.on('ready', () => {
  if (everReady && !stopping) {
    send({
      type: 'connection',
      state: 'connected',
      detail: `resubscribed to ${pattern} on ${broker.redactedUrl}`,
    });
  }
});

port.on('message', (request: RedisThreadRequest) => {
  if (request.type === 'pull') {
    buffer.pull();
    return;
  }
  stopping = true;
  void client
    .quit()
    .catch(() => client.disconnect())
    .finally(() => {
      // Everything read goes over before the thread ends: a stop loses nothing it holds.
      buffer.flush();
      port.close();
    });
});

async function connect(): Promise<void> {
  try {
    await connectWithRetry(
      broker,
      options.connectTimeoutMs,
      async () => {
        lastConnectError = undefined;
        try {
          await client.connect();
        } catch (rejection) {
          const error = lastConnectError ?? rejection;
          client.disconnect();
          throw error;
        }
      },
      (msg, fields) => send({ type: 'log', msg, fields }),
    );
  } catch (error) {
    send({ type: 'failed', setup: false, message: (error as Error).message });
    return;
  }
  await client.psubscribe(...patterns);
  await client.subscribe(...plains);
  everReady = true;
  send({
    type: 'started',
    detail: `subscribed to ${pattern} and ${plain} on ${broker.redactedUrl}`,
  });
}

connect().catch((error: unknown) => {
  send({
    type: 'failed',
    setup: false,
    message: `Redis subscription failed: ${describeBrokerError(error, broker)}`,
  });
});
