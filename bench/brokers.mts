// Broker side of the benchmark: an isolated RabbitMQ vhost, a redis-server of the bench's own, and
// publishers that put messages on the wire exactly as Celery does (RabbitMQ: a topic exchange, as
// `celeryev`; Redis: kombu's JSON envelope on pub/sub channel `/{db}.{exchange}/{routing_key}`).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import type { BenchMessage } from './stream.mjs';
import { type EventObject, pythonJson } from './shapes.mjs';

const run = promisify(execFile);
// Not `celery-otel-bench-`: an older bench deletes every vhost of that prefix when it starts,
// those of benches still running too.
const VHOST_PREFIX = 'bench-celery-otel-';

/** Whether a process of this machine is alive (EPERM: alive, another user's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A vhost of the bench's own, so its millions of events never reach another bridge or test bound
 * to `celeryev` on `/`. Named after the bench's pid: a vhost left by a bench that was killed (its
 * pid gone) is deleted, one of a bench still running is not (two benches may run at once while a
 * harness is being checked). Falls back to `/` when rabbitmqctl is not usable.
 */
export async function createVhost(): Promise<{ vhost: string; isolated: boolean }> {
  try {
    const { stdout } = await run('rabbitmqctl', ['-q', 'list_vhosts', 'name']);
    for (const name of stdout.split('\n').map((line) => line.trim())) {
      const owner = /^bench-celery-otel-(\d+)-[0-9a-f]{8}$/.exec(name)?.[1];
      if (owner !== undefined && !alive(Number(owner))) {
        await run('rabbitmqctl', ['-q', 'delete_vhost', name]);
      }
    }
    const vhost = `${VHOST_PREFIX}${process.pid}-${randomUUID().slice(0, 8)}`;
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
  /**
   * RabbitMQ: a durable queue bound to the exchange, to hold a backlog for the bare consumer as
   * the bridge's own queue holds one for the bridge.
   */
  declareQueue(queue: string): Promise<void>;
  deleteQueue(queue: string): Promise<void>;
  close(): Promise<void>;
}

export async function amqpPublisher(url: string, exchange: string): Promise<Publisher> {
  const connection = await amqp.connect(url);
  // Another session may restart RabbitMQ: report through failed operations, never crash.
  connection.on('error', () => undefined);
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  // Celery declares it so (celery/events/event.py): durable topic exchange.
  await channel.assertExchange(exchange, 'topic', { durable: true, autoDelete: false });
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
      const ok = channel.publish(exchange, message.routingKey, message.payload, {
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
    async declareQueue(queue) {
      await admin.assertQueue(queue, { durable: true, autoDelete: false });
      await admin.bindQueue(queue, exchange, '#');
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

/** Connections publishing at once, each with this many pipelines of this many messages in flight. */
const REDIS_CONNECTIONS = 4;
const REDIS_PIPELINES_IN_FLIGHT = 4;
const REDIS_PIPELINE_MESSAGES = 128;

/**
 * kombu's Redis transport: PUBLISH on `/{db}.{exchange}/{routing_key}` of a JSON envelope whose body
 * is the base64 event JSON (kombu/transport/virtual/base.py `Channel.prepare_message`), in the
 * captured envelope's field order and format. A fleet publishes from many connections: so does
 * this, one per publishing host at most (a host's messages stay in order), with pipelines in
 * flight, so that Redis, not the bench, is the limit of a burst.
 */
export async function redisPublisher(
  url: string,
  db: number,
  exchange: string,
  envelope: EventObject,
): Promise<Publisher> {
  const lanes = await Promise.all(
    Array.from({ length: REDIS_CONNECTIONS }, async () => {
      const client = new Redis(url, { lazyConnect: true, enableAutoPipelining: false });
      client.on('error', () => undefined);
      await client.connect();
      return {
        client,
        pipeline: client.pipeline(),
        queued: 0,
        inFlight: [] as Promise<unknown>[],
      };
    }),
  );
  type Lane = (typeof lanes)[number];
  const laneOf = new Map<string, Lane>();
  const properties = envelope['properties'] as EventObject;
  const send = (lane: Lane): Promise<unknown> => {
    const batch = lane.pipeline;
    lane.pipeline = lane.client.pipeline();
    lane.queued = 0;
    const done = batch.exec();
    lane.inFlight.push(done);
    const settled = (): void => void lane.inFlight.splice(lane.inFlight.indexOf(done), 1);
    done.then(settled, settled);
    return done;
  };
  const flushAll = async (): Promise<void> => {
    for (const lane of lanes) if (lane.queued > 0) void send(lane);
    await Promise.all(lanes.flatMap((lane) => lane.inFlight));
  };
  return {
    encode(message) {
      const payload = pythonJson({
        ...envelope,
        body: Buffer.from(message.body, 'utf8').toString('base64'),
        headers: { hostname: message.hostname },
        properties: {
          ...properties,
          delivery_info: { exchange, routing_key: message.routingKey },
          delivery_tag: randomUUID(),
        },
      });
      return {
        routingKey: `/${db}.${exchange}/${message.routingKey}`,
        hostname: message.hostname,
        payload: Buffer.from(payload, 'utf8'),
        events: message.events,
      };
    },
    publish(message) {
      let lane = laneOf.get(message.hostname);
      if (lane === undefined) {
        const next = lanes[laneOf.size % lanes.length];
        if (next === undefined) throw new Error('no Redis connection');
        lane = next;
        laneOf.set(message.hostname, lane);
      }
      lane.pipeline.publish(message.routingKey, message.payload);
      if (++lane.queued < REDIS_PIPELINE_MESSAGES) return undefined;
      void send(lane);
      // Redis's flow control here: at most a few pipelines unanswered per connection.
      const oldest = lane.inFlight[0];
      if (lane.inFlight.length < REDIS_PIPELINES_IN_FLIGHT || oldest === undefined)
        return undefined;
      return oldest.then(() => undefined);
    },
    flush: flushAll,
    queueDepth() {
      return Promise.resolve(undefined);
    },
    declareQueue() {
      return Promise.reject(new Error('Redis pub/sub has no queue to hold a backlog'));
    },
    deleteQueue() {
      // Pub/sub leaves nothing in Redis.
      return Promise.resolve();
    },
    async close() {
      await flushAll().catch(() => undefined);
      for (const lane of lanes) await lane.client.quit().catch(() => undefined);
    },
  };
}

/** Debian's redis.conf and Redis's default: a subscriber this far behind is disconnected. */
export const PUBSUB_OUTPUT_BUFFER_LIMIT = 'pubsub 32mb 8mb 60';

/**
 * A redis-server of the bench's own on a free port (no persistence, the pub/sub output buffer
 * limit set explicitly to its default), so the bursts never reach the shared Redis and the limit
 * measured is the one stated.
 */
export async function startOwnRedis(port: number): Promise<{ url: string; stop(): Promise<void> }> {
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--client-output-buffer-limit',
      PUBSUB_OUTPUT_BUFFER_LIMIT,
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  child.on('error', () => undefined);
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.ping();
      client.disconnect();
      break;
    } catch {
      client.disconnect();
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw new Error(
          'could not start redis-server for the benchmark (is the redis-server package installed?)',
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    url,
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Polls `CLIENT LIST TYPE pubsub` for the largest output buffer (omem) a subscriber reached: how
 * close it came to the limit.
 */
export async function watchSubscriberBuffers(url: string): Promise<{ stop(): Promise<number> }> {
  const client = new Redis(url, { lazyConnect: true });
  client.on('error', () => undefined);
  await client.connect();
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const list = (await client.call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string;
        for (const match of list.matchAll(/ omem=(\d+)/g)) peak = Math.max(peak, Number(match[1]));
      } catch {
        // Redis busy or gone: try again.
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      client.disconnect();
      return peak;
    },
  };
}
