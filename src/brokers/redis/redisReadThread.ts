/**
 * Entry point of the worker thread that reads Celery's events from Redis pub/sub for
 * RedisEventSource: subscribe, unwrap kombu's envelopes, keep what was read in a bounded buffer,
 * and hand it to the bridge's thread in batches when it asks.
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
import { decodeKombuEnvelope, isDecodeRejection } from '../../decode/decodeKombuEnvelope.js';
import type { RawEventMessage } from '../../shared/RawEventMessage.js';
import { describeBrokerError } from '../brokerTlsOptions.js';
import { connectWithRetry } from '../connectWithRetry.js';
import { redisEventChannels, redisFanoutPrefixes } from './redisChannels.js';
import { redisConnectionOptions } from './redisConnectionOptions.js';
import { backoffDelayMs } from '../EventSource.js';
import type {
  RedisBatch,
  RedisReadThreadData,
  RedisThreadEvent,
  RedisThreadRequest,
} from './redisThreadMessages.js';

const maybePort = parentPort;
if (maybePort === null) throw new Error('redisReadThread must run as a worker thread');
const port = maybePort;
const options = workerData as RedisReadThreadData;
const { broker } = options;
const send = (event: RedisThreadEvent, transfer: ArrayBuffer[] = []): void =>
  port.postMessage(event, transfer);

/** Read, not yet handed over: a FIFO without shift (consumed entries are cleared). */
let pending: RawEventMessage[] = [];
let head = 0;
let bufferedBytes = 0;
/** Shared with the bridge's thread for its gauge. */
const bufferedGauge = new Float64Array(options.bufferedBytes);
let dropped = 0;
/** The bridge's thread asked for a batch and has none. */
let wanted = false;
let sendScheduled = false;
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
  read(channel, payload),
);
client.on('messageBuffer', (channel: Buffer, payload: Buffer) => read(channel, payload));
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

function read(channel: Buffer, payload: Buffer): void {
  if (bufferedBytes + payload.length > options.channels.maxBufferedBytes) {
    dropped++;
    return;
  }
  // kombu's envelope names the routing key; the channel's suffix is the fallback.
  const name = channel.toString('utf8');
  const slash = name.lastIndexOf('/');
  const message = decodeKombuEnvelope(payload, slash === -1 ? '' : name.slice(slash + 1));
  if (isDecodeRejection(message)) {
    send({ type: 'rejected', rejection: message });
    return;
  }
  pending.push(message);
  bufferedBytes += message.body.length;
  bufferedGauge[0] = bufferedBytes;
  if (wanted) scheduleSend();
}

/** A batch goes out on the next turn, so that what arrived in one socket read travels together. */
function scheduleSend(): void {
  if (sendScheduled) return;
  sendScheduled = true;
  setImmediate(() => {
    sendScheduled = false;
    if (wanted && (head < pending.length || dropped > 0)) sendBatch(false);
  });
}

function sendBatch(final: boolean): void {
  wanted = false;
  let end = head;
  let bytes = 0;
  while (end < pending.length && (final || bytes < options.maxBatchBytes)) {
    bytes += (pending[end] as RawEventMessage).body.length;
    end++;
  }
  const bodies = new ArrayBuffer(bytes);
  const view = new Uint8Array(bodies);
  const count = end - head;
  const offsets = new Uint32Array(count * 2);
  const batch: Omit<RedisBatch, 'bodies' | 'offsets'> = {
    type: 'batch',
    routingKeys: new Array<string>(count),
    contentTypes: new Array<string>(count),
    contentEncodings: new Array<string | undefined>(count),
    compressions: new Array<string | undefined>(count),
    dropped,
    final,
  };
  let at = 0;
  for (let i = 0; i < count; i++) {
    const message = pending[head + i] as RawEventMessage;
    view.set(message.body, at);
    offsets[2 * i] = at;
    at += message.body.length;
    offsets[2 * i + 1] = at;
    batch.routingKeys[i] = message.routingKey;
    batch.contentTypes[i] = message.contentType;
    batch.contentEncodings[i] = message.contentEncoding;
    batch.compressions[i] = message.compression;
  }
  dropped = 0;
  bufferedBytes -= bytes;
  bufferedGauge[0] = bufferedBytes;
  head = end;
  if (head === pending.length) {
    pending = [];
    head = 0;
  } else if (head > 65_536 && head * 2 > pending.length) {
    pending = pending.slice(head);
    head = 0;
  } else {
    pending.fill(DONE, head - count, head);
  }
  send({ ...batch, bodies, offsets }, [bodies, offsets.buffer]);
}

const DONE: RawEventMessage = { routingKey: '', contentType: '', body: Buffer.alloc(0) };

port.on('message', (request: RedisThreadRequest) => {
  if (request.type === 'pull') {
    wanted = true;
    if (head < pending.length || dropped > 0) scheduleSend();
    return;
  }
  stopping = true;
  void client
    .quit()
    .catch(() => client.disconnect())
    .finally(() => {
      // Everything read goes over before the thread ends: a stop loses nothing it holds.
      sendBatch(true);
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
    send({ type: 'failed', message: (error as Error).message });
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
    message: `Redis subscription failed: ${describeBrokerError(error, broker)}`,
  });
});
