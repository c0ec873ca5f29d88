import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { Redis } from 'ioredis';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseBrokerUrl } from '../../src/config/brokerUrl.js';
import type { DecodeRejection } from '../../src/shared/DecodeRejection.js';
import { Logger } from '../../src/log/Logger.js';
import { RedisEventSource } from '../../src/brokers/redis/RedisEventSource.js';
import { randomName, requireBroker } from '../support/celeryWorker.js';
import { until } from '../support/testUtils.js';

const URL = 'redis://127.0.0.1:6379/0';
const quiet = new Logger('error', () => undefined);

/** A kombu envelope (as Celery's Redis transport publishes it) of one event list, ~`size` bytes. */
function envelope(index: number, size: number): Buffer {
  const body = JSON.stringify([
    { type: 'task-received', uuid: `t-${index}`, timestamp: 1, pad: 'x'.repeat(size) },
  ]);
  return Buffer.from(
    JSON.stringify({
      body: Buffer.from(body).toString('base64'),
      'content-encoding': 'utf-8',
      'content-type': 'application/json',
      headers: {},
      properties: { body_encoding: 'base64', delivery_info: { routing_key: 'task.multi' } },
    }),
  );
}

/** Blocks the event loop, like a bridge busy with a large batch. */
function busyMs(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

/**
 * The Redis source reads the subscription on its own thread into a bounded buffer, so a burst
 * faster than processing waits in the bridge rather than in Redis's pub/sub output buffer (which
 * disconnects the subscriber past its limit). Uses the local Redis and the compiled read thread
 * (dist/, built before the tests); the output-buffer limit is lowered for the test and restored.
 */
describe('Redis read buffer', () => {
  let admin: Redis;
  let source: RedisEventSource | undefined;
  let savedLimit: string | undefined;

  beforeAll(async () => {
    await requireBroker('redis');
    admin = new Redis(URL);
    const config = (await admin.config('GET', 'client-output-buffer-limit')) as string[];
    savedLimit = config[1];
    return async () => {
      if (savedLimit !== undefined)
        await admin.config('SET', 'client-output-buffer-limit', savedLimit);
      await admin.quit();
    };
  });

  afterEach(async () => {
    await source?.stop();
    source = undefined;
  });

  function startSource(prefix: string, maxBufferedBytes: number, costMs: number) {
    const processed: string[] = [];
    const rejected: DecodeRejection[] = [];
    const connection: string[] = [];
    source = new RedisEventSource(
      {
        broker: parseBrokerUrl(URL),
        exchange: 'celeryev',
        channels: { globalKeyPrefix: prefix, fanoutPrefix: '/0.', maxBufferedBytes },
        connectTimeoutMs: 5000,
      },
      {
        checkpoint: () => Promise.resolve(true),
        activate: () => Promise.resolve(),
        message: (message) => {
          busyMs(costMs);
          processed.push(
            (JSON.parse(message.body.toString('utf8')) as { uuid: string }[])[0]?.uuid ?? '',
          );
        },
        rejected: (rejection, count) => {
          for (let i = 0; i < count; i++) rejected.push(rejection);
        },
        connection: (state) => connection.push(state),
      },
      quiet,
    );
    return { processed, rejected, connection, channel: `${prefix}/0.celeryev/task.multi` };
  }

  /**
   * Publishes from another process, as Celery's workers do (a publisher on the test's own event
   * loop would be slowed down by the very processing under test), in pipelines of 100 messages
   * every 8 ms: about 65 MB/s of 8 KB messages, which Redis delivers to a subscriber that reads
   * promptly (faster, Redis's own write pacing lets the backlog pass the limit whatever the
   * client does).
   */
  async function publish(channel: string, count: number, size: number): Promise<void> {
    const script = `
      const { Redis } = require('ioredis');
      const client = new Redis(${JSON.stringify(URL)});
      const payloads = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
      (async () => {
        for (let i = 0; i < payloads.length; i += 100) {
          const pipeline = client.pipeline();
          for (const p of payloads.slice(i, i + 100)) pipeline.publish(${JSON.stringify(channel)}, p);
          await pipeline.exec();
          await new Promise((resolve) => setTimeout(resolve, 8));
        }
        await client.quit();
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const payloads = Array.from({ length: count }, (_, i) => envelope(i, size).toString());
    const child = spawn(process.execPath, ['-e', script], {
      stdio: ['pipe', 'inherit', 'inherit'],
    });
    child.stdin.end(JSON.stringify(payloads));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
  }

  it('keeps up with a burst that processing cannot, instead of being disconnected', async () => {
    // Redis drops a subscriber 8 MB behind; the burst is 32 MB at ~65 MB/s, and processing
    // (0.3 ms for an ~11 KB envelope: 36 MB/s) is slower, so processing while reading would fall
    // more than 8 MB behind within the burst.
    await admin.config('SET', 'client-output-buffer-limit', 'pubsub 8mb 8mb 0');
    const seen = startSource(randomName('buf'), 64 * 1024 * 1024, 0.3);
    await source?.start();
    await publish(seen.channel, 4000, 8 * 1024);
    await until(
      'all 4000 messages processed',
      () => Promise.resolve(seen.processed.length === 4000),
      20_000,
    );
    expect(seen.connection.filter((s) => s === 'disconnected')).toEqual([]);
    expect(seen.rejected).toEqual([]);
    // In the order published.
    expect(seen.processed.slice(0, 3)).toEqual(['t-0', 't-1', 't-2']);
    expect(seen.processed.at(-1)).toBe('t-3999');
  });

  it('drops and counts what does not fit its bound, and keeps the rest', async () => {
    const seen = startSource(randomName('buf'), 1024 * 1024, 1);
    await source?.start();
    await publish(seen.channel, 600, 8 * 1024);
    await until(
      'every message processed or rejected',
      () => Promise.resolve(seen.processed.length + seen.rejected.length === 600),
      20_000,
    );
    expect(seen.rejected.length).toBeGreaterThan(0);
    expect(new Set(seen.rejected.map((r) => r.reason))).toEqual(new Set(['buffer_full']));
    // At least a full buffer's worth (1 MiB of ~11 KB envelopes) was kept and processed.
    expect(seen.processed.length).toBeGreaterThanOrEqual(90);
    expect(seen.processed[0]).toBe('t-0');
  });

  it('processes everything it read before a stop resolves', async () => {
    const seen = startSource(randomName('buf'), 64 * 1024 * 1024, 0.5);
    await source?.start();
    await publish(seen.channel, 800, 8 * 1024);
    // Every PUBLISH was answered, so Redis has queued every message to the subscriber.
    await source?.stop();
    source = undefined;
    expect(seen.processed).toHaveLength(800);
    expect(seen.processed.at(-1)).toBe('t-799');
  });

  it('starts a new read thread when its thread dies, and says so', async () => {
    const seen = startSource(randomName('buf'), 64 * 1024 * 1024, 0);
    await source?.start();
    // The source's read thread, reached into: nothing outside the process can kill it alone.
    await (source as unknown as { thread: { worker: Worker } }).thread.worker.terminate();
    await until('a new thread subscribed', () =>
      Promise.resolve(seen.connection.join(',') === 'connected,disconnected,connected'),
    );
    await publish(seen.channel, 10, 100);
    await until('the messages after the restart processed', () =>
      Promise.resolve(seen.processed.length === 10),
    );
  });
});
