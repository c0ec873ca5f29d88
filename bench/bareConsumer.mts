// The ceiling: a bare consumer of the same stream that parses and counts, nothing else. Run as its
// own process (like the bridge) so neither steals the other's event loop.
//   node bareConsumer.mjs '{"kind":"amqp","url":"amqp://...","exchange":"celeryev","prefetch":500}'
//   node bareConsumer.mjs '{"kind":"amqp","url":"amqp://...","queue":"backlog-queue","prefetch":500}'
//   node bareConsumer.mjs '{"kind":"redis","url":"redis://...","pattern":"/13.celeryev/*"}'
import amqp from 'amqplib';
import { Redis } from 'ioredis';

export interface BareConfig {
  readonly kind: 'amqp' | 'redis';
  readonly url: string;
  readonly exchange?: string;
  /** Consume this existing queue (a backlog published before the start) instead of a new one. */
  readonly queue?: string;
  readonly prefetch?: number;
  readonly pattern?: string;
}

/** What the bare consumer reports to the bench over IPC. */
export interface BareReport {
  readonly type: 'ready' | 'progress';
  readonly events: number;
  readonly messages: number;
  /** Epoch ms of the first and latest message. */
  readonly firstAt: number;
  readonly lastAt: number;
  readonly errors: number;
  /** Epoch ms at which it was consuming (subscribed). */
  readonly readyAt: number;
  /** Times the broker connection closed (Redis: a subscriber past its output buffer limit). */
  readonly disconnects: number;
}

let events = 0;
let messages = 0;
let firstAt = 0;
let lastAt = 0;
let errors = 0;
let readyAt = 0;
let disconnects = 0;

function count(body: string): void {
  const now = Date.now();
  if (firstAt === 0) firstAt = now;
  lastAt = now;
  messages++;
  try {
    const parsed: unknown = JSON.parse(body);
    events += Array.isArray(parsed) ? parsed.length : 1;
  } catch {
    errors++;
  }
}

function report(type: BareReport['type']): void {
  const message: BareReport = {
    type,
    events,
    messages,
    firstAt,
    lastAt,
    errors,
    readyAt,
    disconnects,
  };
  process.send?.(message);
}

async function main(config: BareConfig): Promise<() => Promise<void>> {
  if (config.kind === 'amqp') {
    const connection = await amqp.connect(config.url);
    // A broker restart mid-run: stop counting, never crash (the bench reports what was counted).
    connection.on('error', () => undefined);
    connection.on('close', () => disconnects++);
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    const ack = (message: amqp.Message): void => {
      try {
        channel.ack(message, true);
      } catch {
        errors++;
      }
    };
    let queue = config.queue;
    if (queue === undefined) {
      await channel.assertExchange(config.exchange ?? 'celeryev', 'topic', {
        durable: true,
        autoDelete: false,
      });
      ({ queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true }));
      await channel.bindQueue(queue, config.exchange ?? 'celeryev', '#');
    }
    const prefetch = config.prefetch ?? 500;
    await channel.prefetch(prefetch);
    let unacked: amqp.Message | undefined;
    let pending = 0;
    await channel.consume(queue, (message) => {
      if (message === null) return;
      count(message.content.toString('utf8'));
      // Acknowledge in batches, as the bridge does.
      unacked = message;
      if (++pending >= prefetch >> 1) {
        ack(message);
        unacked = undefined;
        pending = 0;
      } else if (pending === 1) {
        setImmediate(() => {
          if (unacked !== undefined) ack(unacked);
          unacked = undefined;
          pending = 0;
        });
      }
    });
    readyAt = Date.now();
    return async () => {
      await connection.close().catch(() => undefined);
    };
  }
  const client = new Redis(config.url, { lazyConnect: true });
  client.on('error', () => undefined);
  await client.connect();
  // Redis closes a subscriber that fell `client-output-buffer-limit pubsub` behind; ioredis then
  // reconnects and subscribes again, and what was published meanwhile is gone for it.
  client.on('close', () => disconnects++);
  client.on('pmessageBuffer', (_pattern: Buffer, _channel: Buffer, payload: Buffer) => {
    // kombu's envelope: JSON with a base64 body, which is the event JSON.
    try {
      const envelope = JSON.parse(payload.toString('utf8')) as { body?: unknown };
      if (typeof envelope.body !== 'string') throw new Error('no body');
      count(Buffer.from(envelope.body, 'base64').toString('utf8'));
    } catch {
      errors++;
    }
  });
  await client.psubscribe(config.pattern ?? '/0.celeryev/*');
  readyAt = Date.now();
  return async () => {
    await client.quit();
  };
}

const config = JSON.parse(process.argv[2] ?? '{}') as BareConfig;
main(config).then(
  (close) => {
    report('ready');
    const timer = setInterval(() => report('progress'), 50);
    process.on('message', (message) => {
      if (message !== 'stop') return;
      clearInterval(timer);
      report('progress');
      close().then(
        () => process.exit(0),
        () => process.exit(0),
      );
    });
    process.on('disconnect', () => process.exit(0));
  },
  (error: unknown) => {
    process.stderr.write(`bare consumer failed: ${String(error)}\n`);
    process.exit(1);
  },
);
