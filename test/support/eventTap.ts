// Records the raw Celery events on a broker, independently of the bridge, so a test can SEE what
// Celery really emitted (and compare it with the bridge's spans).
import amqp from 'amqplib';
import { Redis } from 'ioredis';

export type RawCeleryEvent = Record<string, unknown>;

/** One broker message as published: its routing key and the events in it. */
export interface RawEventBatch {
  readonly routingKey: string;
  readonly events: RawCeleryEvent[];
}

export interface EventTap {
  /** Every event seen so far, in arrival order (`task.multi` batches flattened). */
  readonly events: RawCeleryEvent[];
  /** The same events per message, with the routing key (`task.multi` for a worker's batch). */
  readonly batches: RawEventBatch[];
  /** Messages that could not be decoded (the tap never throws on bad input). */
  readonly errors: string[];
  /** Resolves with the first event (already seen or future) matching `predicate`. */
  waitFor(
    predicate: (event: RawCeleryEvent) => boolean,
    timeoutMs?: number,
    what?: string,
  ): Promise<RawCeleryEvent>;
  close(): Promise<void>;
}

interface Waiter {
  predicate: (event: RawCeleryEvent) => boolean;
  resolve: (event: RawCeleryEvent) => void;
}

function createTap(closeTransport: () => Promise<void>): {
  tap: EventTap;
  accept: (decoded: unknown, routingKey?: string) => void;
  fail: (why: string) => void;
} {
  const events: RawCeleryEvent[] = [];
  const batches: RawEventBatch[] = [];
  const errors: string[] = [];
  const waiters = new Set<Waiter>();

  const accept = (decoded: unknown, routingKey = ''): void => {
    const batch: RawEventBatch = { routingKey, events: [] };
    batches.push(batch);
    // The worker buffers task events and sends them as one JSON list under routing key
    // `task.multi` (celery/events/dispatcher.py `flush`: `_publish(events, ..., '%s.multi' % group)`).
    for (const item of Array.isArray(decoded) ? decoded : [decoded]) {
      if (typeof item !== 'object' || item === null || Array.isArray(item)) {
        errors.push(`not an event object: ${JSON.stringify(item)}`);
        continue;
      }
      const event = item as RawCeleryEvent;
      events.push(event);
      batch.events.push(event);
      for (const waiter of waiters) {
        if (waiter.predicate(event)) {
          waiters.delete(waiter);
          waiter.resolve(event);
        }
      }
    }
  };

  const tap: EventTap = {
    events,
    batches,
    errors,
    waitFor: (predicate, timeoutMs = 20_000, what = 'a matching Celery event') => {
      const seen = events.find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<RawCeleryEvent>((resolve, reject) => {
        const waiter: Waiter = {
          predicate,
          resolve: (event) => {
            clearTimeout(timer);
            resolve(event);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(
            new Error(
              `timed out after ${timeoutMs} ms waiting for ${what} (${events.length} events seen)`,
            ),
          );
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    close: closeTransport,
  };
  return { tap, accept, fail: (why) => errors.push(why) };
}

/**
 * Taps RabbitMQ: an exclusive, auto-delete, server-named queue bound to the `celeryev` topic
 * exchange with `#`, like `celery events` does (celery/events/receiver.py).
 */
export async function tapAmqpEvents(url: string): Promise<EventTap> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    // Same declaration as Celery (celery/events/event.py `event_exchange`: Exchange('celeryev',
    // type='topic'), kombu's default durable=True); a different one would fail with
    // PRECONDITION_FAILED.
    await channel.assertExchange('celeryev', 'topic', { durable: true, autoDelete: false });
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    let closed = false;
    const { tap, accept, fail } = createTap(async () => {
      if (closed) return;
      closed = true;
      await connection.close();
    });
    await channel.bindQueue(queue, 'celeryev', '#');
    await channel.consume(
      queue,
      (message) => {
        if (message === null) return;
        try {
          accept(JSON.parse(message.content.toString('utf8')), message.fields.routingKey);
        } catch (err) {
          fail(`${message.fields.routingKey}: ${(err as Error).message}`);
        }
      },
      { noAck: true },
    );
    return tap;
  } catch (err) {
    await connection.close().catch(() => undefined);
    throw err;
  }
}

/**
 * Taps Redis: kombu's redis transport turns the `celeryev` exchange into pub/sub on channels
 * `/<db>.celeryev/<routing key>` (kombu/transport/redis.py `keyprefix_fanout` with
 * fanout_patterns), each message a JSON envelope whose `body` is base64 (properties.body_encoding).
 */
export async function tapRedisEvents(url: string): Promise<EventTap> {
  const db = new URL(url).pathname.replace(/^\//, '') || '0';
  const redis = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    // Survive a short Redis restart, but do not retry forever in a test process.
    retryStrategy: (times) => (times > 50 ? null : 200),
  });
  let closed = false;
  const { tap, accept, fail } = createTap(async () => {
    if (closed) return;
    closed = true;
    await redis.quit().catch(() => redis.disconnect());
  });
  redis.on('error', (err: Error) => fail(`redis: ${err.message}`));
  redis.on('pmessage', (_pattern: string, channel: string, message: string) => {
    try {
      const envelope = JSON.parse(message) as {
        body?: unknown;
        properties?: { body_encoding?: unknown };
      };
      if (typeof envelope.body !== 'string') throw new Error('envelope has no string body');
      const body =
        envelope.properties?.body_encoding === 'base64'
          ? Buffer.from(envelope.body, 'base64').toString('utf8')
          : envelope.body;
      // Channel `/<db>.celeryev/<routing key>`.
      accept(JSON.parse(body), channel.slice(channel.indexOf('celeryev/') + 'celeryev/'.length));
    } catch (err) {
      fail(`${channel}: ${(err as Error).message}`);
    }
  });
  try {
    await redis.connect();
    await redis.psubscribe(`/${db}.celeryev/*`);
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  return tap;
}
