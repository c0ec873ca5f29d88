import { Redis } from 'ioredis';
import type { BrokerEndpoint } from '../BrokerOptions.js';
import type { QueueLengthReader } from '../QueueLengthReader.js';
import { redisConnectionOptions } from './redisConnectionOptions.js';

/**
 * Redis: kombu keeps a queue as a list, plus one list per priority step when priorities are used,
 * named `<queue>\x06\x16<priority>` (kombu/transport/redis.py `PRIORITY_STEPS = [0, 3, 6, 9]`,
 * `sep = '\x06\x16'`, `_q_for_pri`); all of them count, with the `global_keyprefix` in front.
 */
export class RedisQueueLengthReader implements QueueLengthReader {
  private client: Redis | undefined;

  constructor(
    private readonly broker: BrokerEndpoint,
    private readonly globalKeyPrefix: string,
  ) {}

  async read(
    queues: readonly string[],
    learned: ReadonlySet<string> = new Set(),
  ): Promise<Map<string, number>> {
    if (this.client === undefined) {
      this.client = new Redis({
        ...redisConnectionOptions(this.broker),
        maxRetriesPerRequest: 1,
        enableOfflineQueue: false,
        lazyConnect: false,
      });
      // Failures surface as rejected reads, which the poller logs once.
      this.client.on('error', () => undefined);
    }
    if (learned.size > 0) queues = await this.withoutUnbound(this.client, queues, learned);
    const pipeline = this.client.pipeline();
    for (const queue of queues) {
      const key = this.globalKeyPrefix + queue;
      pipeline.llen(key);
      for (const priority of [3, 6, 9]) pipeline.llen(`${key}\x06\x16${priority}`);
    }
    const results = (await pipeline.exec()) ?? [];
    const lengths = new Map<string, number>();
    queues.forEach((queue, index) => {
      let total = 0;
      for (let i = 0; i < 4; i++) {
        const [error, value] = results[index * 4 + i] ?? [null, 0];
        if (error === null && typeof value === 'number') total += value;
      }
      lengths.set(queue, total);
    });
    return lengths;
  }

  /**
   * Leaves out the learnt queues kombu does not know. An empty Redis list does not exist, so
   * existence is kombu's binding: a consumer declaring queue Q bound to exchange E adds
   * `<routing key>\x06\x16<pattern>\x06\x16Q` to the set `_kombu.binding.E`
   * (kombu/transport/redis.py `Channel._queue_bind`, `keyprefix_queue`, `sep`). Celery's
   * automatic queues, its default `celery` queue included, are bound to an exchange of their own
   * name (celery/app/amqp.py `Queues.add`), which is the binding checked: a learnt queue bound
   * only to another exchange is not polled (name it in --queues).
   */
  private async withoutUnbound(
    client: Redis,
    queues: readonly string[],
    learned: ReadonlySet<string>,
  ): Promise<string[]> {
    const pipeline = client.pipeline();
    const checked = queues.filter((queue) => learned.has(queue));
    for (const queue of checked)
      pipeline.smembers(`${this.globalKeyPrefix}_kombu.binding.${queue}`);
    const results = (await pipeline.exec()) ?? [];
    const unbound = new Set<string>();
    checked.forEach((queue, index) => {
      const [error, members] = results[index] ?? [null, []];
      const suffix = `\x06\x16${queue}`;
      const bound =
        error === null &&
        Array.isArray(members) &&
        members.some((member) => typeof member === 'string' && member.endsWith(suffix));
      if (!bound) unbound.add(queue);
    });
    return queues.filter((queue) => !unbound.has(queue));
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) await client.quit().catch(() => client.disconnect());
  }
}
