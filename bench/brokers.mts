// Broker side of the benchmark: an isolated RabbitMQ vhost, and publishers that put messages on
// the wire exactly as Celery does (RabbitMQ: topic exchange `celeryev`; Redis: kombu's JSON
// envelope on pub/sub channel `/{db}.celeryev/{routing_key}`).
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import type { BenchMessage } from './stream.mjs';
import { type EventObject, pythonJson } from './shapes.mjs';

const run = promisify(execFile);
export const EXCHANGE = 'celeryev';
const VHOST_PREFIX = 'celery-otel-bench-';

/**
 * A vhost of the bench's own, so its millions of events never reach another bridge or test bound
 * to `celeryev` on `/`. Falls back to `/` when rabbitmqctl is not usable.
 */
export async function createVhost(): Promise<{ vhost: string; isolated: boolean }> {
  try {
    // Left behind by a bench that was killed: nothing else uses this prefix.
    const { stdout } = await run('rabbitmqctl', ['-q', 'list_vhosts', 'name']);
    for (const name of stdout.split('\n').map((line) => line.trim())) {
      if (name.startsWith(VHOST_PREFIX)) await run('rabbitmqctl', ['-q', 'delete_vhost', name]);
    }
    const vhost = `${VHOST_PREFIX}${randomUUID().slice(0, 8)}`;
    await run('rabbitmqctl', ['-q', 'add_vhost', vhost]);
    await run('rabbitmqctl', ['-q', 'set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*']);
    return { vhost, isolated: true };
  } catch {
    return { vhost: '/', isolated: false };
  }
}

export async function deleteVhost(vhost: string): Promise<void> {
  if (vhost === '/') return;
  await run('rabbitmqctl', ['-q', 'delete_vhost', vhost]).catch(() => undefined);
}

export function amqpUrl(host: string, vhost: string): string {
  return `amqp://guest:guest@${host}:5672/${encodeURIComponent(vhost)}`;
}

/** A message ready for the wire. */
export interface WireMessage {
  readonly routingKey: string;
  readonly hostname: string;
  readonly payload: Buffer;
  readonly events: number;
}

export interface Publisher {
  publish(message: WireMessage): Promise<void> | undefined;
  encode(message: BenchMessage): WireMessage;
  /** Sends whatever is still buffered on the bench side. */
  flush(): Promise<void>;
  /** Messages ready in a queue (RabbitMQ; undefined on Redis), for drain detection. */
  queueDepth(queue: string): Promise<number | undefined>;
  deleteQueue(queue: string): Promise<void>;
  close(): Promise<void>;
}

export async function amqpPublisher(url: string): Promise<Publisher> {
  const connection = await amqp.connect(url);
  // Another session may restart RabbitMQ: report through failed operations, never crash.
  connection.on('error', () => undefined);
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  // Celery declares it so (celery/events/event.py): durable topic exchange.
  await channel.assertExchange(EXCHANGE, 'topic', { durable: true, autoDelete: false });
  const admin = await connection.createChannel();
  admin.on('error', () => undefined);
  let blocked: Promise<void> | undefined;
  return {
    encode: (message) => ({
      routingKey: message.routingKey,
      hostname: message.hostname,
      payload: Buffer.from(message.body, 'utf8'),
      events: message.events,
    }),
    publish(message) {
      const ok = channel.publish(EXCHANGE, message.routingKey, message.payload, {
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        headers: { hostname: message.hostname },
        deliveryMode: 1,
        priority: 0,
      });
      if (ok) return undefined;
      // Resumes on 'drain', or on 'close' (then the next publish throws instead of hanging).
      blocked ??= new Promise<void>((resolve) => {
        const resume = (): void => {
          channel.off('drain', resume);
          channel.off('close', resume);
          blocked = undefined;
          resolve();
        };
        channel.on('drain', resume);
        channel.on('close', resume);
      });
      return blocked;
    },
    async flush() {
      if (blocked !== undefined) await blocked;
    },
    async queueDepth(queue) {
      try {
        const { messageCount } = await admin.checkQueue(queue);
        return messageCount;
      } catch {
        return undefined;
      }
    },
    async deleteQueue(queue) {
      const cleanup = await connection.createChannel();
      cleanup.on('error', () => undefined);
      await cleanup.deleteQueue(queue).catch(() => undefined);
      await cleanup.close().catch(() => undefined);
    },
    async close() {
      await connection.close().catch(() => undefined);
    },
  };
}

/**
 * kombu's Redis transport: PUBLISH on `/{db}.celeryev/{routing_key}` of a JSON envelope whose body
 * is the base64 event JSON (kombu/transport/virtual/base.py `Channel.prepare_message`), in the
 * captured envelope's field order and format.
 */
export async function redisPublisher(
  url: string,
  db: number,
  envelope: EventObject,
): Promise<Publisher> {
  const client = new Redis(url, { lazyConnect: true, enableAutoPipelining: false });
  client.on('error', () => undefined);
  await client.connect();
  const properties = envelope['properties'] as EventObject;
  let pipeline = client.pipeline();
  let queued = 0;
  const flush = async (): Promise<void> => {
    const batch = pipeline;
    pipeline = client.pipeline();
    queued = 0;
    await batch.exec();
  };
  return {
    encode(message) {
      const payload = pythonJson({
        ...envelope,
        body: Buffer.from(message.body, 'utf8').toString('base64'),
        headers: { hostname: message.hostname },
        properties: {
          ...properties,
          delivery_info: { exchange: EXCHANGE, routing_key: message.routingKey },
          delivery_tag: randomUUID(),
        },
      });
      return {
        routingKey: `/${db}.${EXCHANGE}/${message.routingKey}`,
        hostname: message.hostname,
        payload: Buffer.from(payload, 'utf8'),
        events: message.events,
      };
    },
    publish(message) {
      pipeline.publish(message.routingKey, message.payload);
      // Pipelined in groups: one round trip per 64 messages is Redis's flow control here.
      if (++queued >= 64) return flush();
      return undefined;
    },
    async flush() {
      if (queued > 0) await flush();
    },
    queueDepth() {
      return Promise.resolve(undefined);
    },
    deleteQueue() {
      // Pub/sub leaves nothing in Redis.
      return Promise.resolve();
    },
    async close() {
      if (queued > 0) await flush();
      await client.quit().catch(() => undefined);
    },
  };
}
