import type { Worker } from 'node:worker_threads';
import amqp from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseBrokerUrl } from '../../src/config/brokerUrl.js';
import { Logger } from '../../src/log/Logger.js';
import { AmqpEventSource } from '../../src/brokers/amqp/AmqpEventSource.js';
import { MAX_META_BYTES } from '../../src/brokers/amqp/amqpMessageMeta.js';
import type { RawEventMessage } from '../../src/shared/RawEventMessage.js';
import { AMQP_URL, randomName, requireBroker } from '../support/celeryWorker.js';
import { sleep, until } from '../support/testUtils.js';

const quiet = new Logger('error', () => undefined);

/** What the source handed on, as the decoder sees it. */
interface Seen {
  readonly routingKey: string;
  readonly contentType: string;
  readonly contentEncoding: string | undefined;
  readonly compression: string | undefined;
  readonly body: string;
}

/**
 * The RabbitMQ source reads the bridge's queue on its own thread and hands deliveries over in
 * batches. These run it in this process on the local RabbitMQ (the compiled thread from dist/),
 * on an exchange and queue of their own, with checkpoints the test holds and releases.
 */
describe('RabbitMQ read thread', () => {
  let admin: amqp.ChannelModel;
  let channel: amqp.Channel;
  let source: AmqpEventSource | undefined;
  const exchanges: string[] = [];
  const queues: string[] = [];

  beforeAll(async () => {
    await requireBroker('amqp');
    admin = await amqp.connect(AMQP_URL);
    channel = await admin.createChannel();
  });

  afterEach(async () => {
    await source?.stop();
    source = undefined;
  });

  afterAll(async () => {
    for (const queue of queues) await channel.deleteQueue(queue).catch(() => undefined);
    for (const exchange of exchanges) await channel.deleteExchange(exchange).catch(() => undefined);
    await admin.close();
  });

  /** A source on a new exchange and queue; checkpoints wait until `release()`, then pass. */
  function startSource(prefetchCount: number) {
    const exchange = randomName('rt-ex');
    const queueName = randomName('rt-q');
    exchanges.push(exchange);
    queues.push(queueName);
    const seen: Seen[] = [];
    const connection: string[] = [];
    // Checkpoints pass while open; while held they wait for the next release.
    let gate: Promise<void> = Promise.resolve();
    let release: () => void = () => undefined;
    const hold = (): void => {
      gate = new Promise<void>((resolve) => (release = resolve));
    };
    hold();
    let checkpoints = 0;
    source = new AmqpEventSource(
      {
        broker: parseBrokerUrl(AMQP_URL),
        exchange,
        queue: {
          queueName,
          queueMaxBytes: 64 * 1024 * 1024,
          queueMessageTtlMs: 600_000,
          queueExpiresMs: 600_000,
          prefetchCount,
        },
        connectTimeoutMs: 5000,
      },
      {
        message: (message: RawEventMessage) =>
          seen.push({
            routingKey: message.routingKey,
            contentType: message.contentType,
            contentEncoding: message.contentEncoding,
            compression: message.compression,
            body: message.body.toString(),
          }),
        rejected: () => undefined,
        connection: (state) => connection.push(state),
        checkpoint: async () => {
          checkpoints++;
          await gate;
          return true;
        },
        activate: () => Promise.resolve(),
      },
      quiet,
    );
    return {
      exchange,
      queueName,
      seen,
      connection,
      hold,
      release: () => release(),
      checkpoints: () => checkpoints,
    };
  }

  /** Messages ready in the queue plus those delivered and not acknowledged, read from outside. */
  async function readyCount(queue: string): Promise<number> {
    return (await channel.checkQueue(queue)).messageCount;
  }

  it('hands every delivery on in order with its routing key and properties; RabbitMQ waits at the window until a checkpoint acknowledges', async () => {
    const run = startSource(50);
    await source?.start();
    const published: Seen[] = [];
    for (let i = 0; i < 200; i++) {
      const routingKey = i % 7 === 0 ? 'worker.heartbeat' : 'task.multi';
      const contentEncoding = i % 5 === 0 ? undefined : 'utf-8';
      const compression = i % 11 === 0 ? 'application/x-gzip' : undefined;
      const body = JSON.stringify({ i, pad: 'é'.repeat(i) });
      published.push({
        routingKey,
        contentType: 'application/json',
        contentEncoding,
        compression,
        body,
      });
      channel.publish(run.exchange, routingKey, Buffer.from(body), {
        contentType: 'application/json',
        ...(contentEncoding === undefined ? {} : { contentEncoding }),
        headers: compression === undefined ? {} : { compression },
      });
    }
    // Nothing acknowledged while the first checkpoint waits: RabbitMQ stops at the window.
    await until('the window delivered', () => Promise.resolve(run.seen.length === 50));
    await sleep(500);
    expect(run.seen).toHaveLength(50);
    expect(run.checkpoints()).toBe(1);
    expect(await readyCount(run.queueName)).toBe(150);
    run.release();
    await until('every delivery handed on', () => Promise.resolve(run.seen.length === 200));
    expect(run.seen).toEqual(published);
    await until('everything acknowledged', async () => {
      await source?.stop();
      source = undefined;
      return (await readyCount(run.queueName)) === 0;
    });
  });

  it('while paused, what RabbitMQ sent waits in the thread and its bytes are the read buffer gauge; resumed, it is all handed on and the gauge is 0', async () => {
    const window = 40;
    const run = startSource(window);
    run.release();
    await source?.start();
    source?.pause();
    const body = 'x'.repeat(1000);
    for (let i = 0; i < 100; i++) {
      channel.publish(run.exchange, 'task.multi', Buffer.from(body), {
        contentType: 'application/json',
      });
    }
    // RabbitMQ stops at the window; one batch of it may already be on the main thread (pulled
    // at connect), the rest waits in the read thread.
    await until('the window delivered', async () => (await readyCount(run.queueName)) === 60);
    await until('the read thread holds some', () =>
      Promise.resolve((source?.bufferedBytes ?? 0) >= body.length),
    );
    await sleep(300);
    const held = source?.bufferedBytes ?? 0;
    expect(held).toBeGreaterThanOrEqual(body.length);
    expect(held).toBeLessThanOrEqual(window * (body.length + MAX_META_BYTES));
    expect(run.seen).toHaveLength(0);
    source?.resume();
    await until('every delivery handed on', () => Promise.resolve(run.seen.length === 100));
    await until('nothing held', () => Promise.resolve(source?.bufferedBytes === 0));
  });

  it('starts a new thread when its thread dies: says so, and what was not acknowledged comes again and is acknowledged on the new channel only', async () => {
    const run = startSource(100);
    await source?.start();
    const publish = (from: number, count: number): void => {
      for (let i = from; i < from + count; i++) {
        channel.publish(run.exchange, 'task.multi', Buffer.from(`m${i}`), {
          contentType: 'application/json',
        });
      }
    };
    // Ten acknowledged (tags 1-10 of the first channel), ten more handed on under a held checkpoint.
    run.release();
    publish(0, 10);
    await until(
      'the first ten acknowledged',
      async () => (await readyCount(run.queueName)) === 0 && run.seen.length === 10,
    );
    await until('their checkpoint done', () => Promise.resolve(run.checkpoints() >= 1));
    await sleep(200);
    run.hold();
    publish(10, 10);
    await until('ten more handed on', () => Promise.resolve(run.seen.length === 20));
    await until('their checkpoint held', () => Promise.resolve(run.checkpoints() >= 2));
    // Kill the thread under it.
    await (source as unknown as { thread: { worker: Worker } }).thread.worker.terminate();
    await until('a new thread consumes', () =>
      Promise.resolve(run.connection.join(',') === 'connected,disconnected,connected'),
    );
    // Not acknowledged, so RabbitMQ delivers them again, as tags 1-10 of the new channel.
    await until('those ten again', () => Promise.resolve(run.seen.length === 30));
    // The held checkpoint now passes. Its acknowledgement (up to tag 20 of the dead thread's
    // channel) must not reach the new channel, where tag 20 is unknown: RabbitMQ would close the
    // channel (PRECONDITION_FAILED), the source would reconnect and everything unacknowledged
    // would come a third time.
    run.release();
    publish(20, 10);
    await until('the later messages', () => Promise.resolve(run.seen.length === 40));
    await sleep(500);
    expect(run.connection.join(',')).toBe('connected,disconnected,connected');
    expect(run.seen.map((m) => m.body)).toEqual([
      ...Array.from({ length: 20 }, (_, i) => `m${i}`),
      ...Array.from({ length: 20 }, (_, i) => `m${i + 10}`),
    ]);
    await source?.stop();
    source = undefined;
    expect(await readyCount(run.queueName)).toBe(0);
  });
});
