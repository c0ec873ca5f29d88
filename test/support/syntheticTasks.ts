// Celery task events in the wire format real workers send (the captured streams in
// test/fixtures/), generated in bulk and published as fast as the broker takes them: a burst, or
// the backlog that waits for a bridge after downtime. Each task is received, started and
// succeeded, its three events spread over several `task.multi` messages, as a worker's buffered
// dispatcher interleaves tasks (celery/events/dispatcher.py `EventDispatcher.publish`, `flush`).
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { Redis } from 'ioredis';

export interface SyntheticTasks {
  readonly ids: string[];
  /** `task.multi` bodies: JSON lists of events, as Python's json.dumps writes them. */
  readonly bodies: string[];
}

/**
 * `count` tasks of name `name`, in `task.multi` lists of `perMessage` events. Events of one task
 * land in different messages (a task is received in one, started in the next, finished later).
 */
export function syntheticTasks(
  count: number,
  options: { name?: string; hostname?: string; perMessage?: number; startAt?: number } = {},
): SyntheticTasks {
  const name = options.name ?? 'proj.add';
  const hostname = options.hostname ?? 'synthetic@test';
  const perMessage = options.perMessage ?? 30;
  let t = options.startAt ?? Date.now() / 1000;
  let clock = 0;
  const ids = Array.from({ length: count }, () => randomUUID());
  const base = (type: string, id: string) => ({
    hostname,
    utcoffset: 0,
    pid: 4242,
    clock: ++clock,
    uuid: id,
    timestamp: (t += 0.0001),
    type,
  });
  // A sliding window: task i is received at step i, started at i + lag, succeeded at i + 2 lag.
  const lag = Math.max(1, Math.floor(perMessage / 3));
  const events: object[] = [];
  for (let step = 0; step < count + 2 * lag; step++) {
    const received = ids[step];
    if (received !== undefined) {
      events.push({
        ...base('task-received', received),
        name,
        args: '(1, 2)',
        kwargs: '{}',
        root_id: received,
        parent_id: null,
        retries: 0,
        eta: null,
        expires: null,
      });
    }
    const started = ids[step - lag];
    if (started !== undefined) events.push(base('task-started', started));
    const succeeded = ids[step - 2 * lag];
    if (succeeded !== undefined) {
      events.push({ ...base('task-succeeded', succeeded), result: '3', runtime: 0.01 });
    }
  }
  const bodies: string[] = [];
  for (let i = 0; i < events.length; i += perMessage) {
    bodies.push(JSON.stringify(events.slice(i, i + perMessage)));
  }
  return { ids, bodies };
}

/** With `perSecond`, waits until `sent` messages are due since `startedMs` at that rate. */
async function pace(startedMs: number, sent: number, perSecond: number | undefined): Promise<void> {
  if (perSecond === undefined) return;
  const wait = startedMs + (sent * 1000) / perSecond - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}

/** Publishes each body as Celery's worker does, on `exchange` (topic), waiting for confirms. */
export async function publishAmqp(
  url: string,
  exchange: string,
  bodies: readonly string[],
  options: { perSecond?: number } = {},
): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertExchange(exchange, 'topic', { durable: true, autoDelete: false });
    const started = Date.now();
    for (let i = 0; i < bodies.length; i++) {
      const ok = channel.publish(exchange, 'task.multi', Buffer.from(bodies[i] as string), {
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        headers: { hostname: 'synthetic@test' },
        deliveryMode: 1,
      });
      if (!ok) await new Promise((resolve) => channel.once('drain', resolve));
      await pace(started, i + 1, options.perSecond);
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

/** Publishes each body in kombu's Redis envelope on Celery's event channel for `exchange`. */
export async function publishRedis(
  url: string,
  exchange: string,
  bodies: readonly string[],
  options: { perSecond?: number; db?: number } = {},
): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 3 });
  await client.connect();
  try {
    const db = options.db ?? 0;
    const started = Date.now();
    for (let i = 0; i < bodies.length; i++) {
      // kombu/transport/redis.py `Channel._put_fanout`: the message as kombu's JSON envelope.
      const envelope = JSON.stringify({
        body: Buffer.from(bodies[i] as string).toString('base64'),
        'content-encoding': 'utf-8',
        'content-type': 'application/json',
        headers: { hostname: 'synthetic@test' },
        properties: {
          delivery_mode: 1,
          delivery_info: { exchange, routing_key: 'task.multi' },
          priority: 0,
          body_encoding: 'base64',
          delivery_tag: randomUUID(),
        },
      });
      await client.publish(`/${db}.${exchange}/task.multi`, envelope);
      await pace(started, i + 1, options.perSecond);
    }
  } finally {
    client.disconnect();
  }
}

/** Deletes a test's private events exchange. */
export async function deleteExchange(url: string, exchange: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    await (await connection.createChannel()).deleteExchange(exchange);
  } finally {
    await connection.close();
  }
}
