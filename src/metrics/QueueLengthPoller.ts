import type { Logger } from '../log/Logger.js';
import { describeError } from '../shared/describeError.js';
import type { QueueLengthReader } from '../brokers/QueueLengthReader.js';

/** Queues learnt from events at most, so a flood of queue names cannot grow memory. */
const MAX_QUEUES = 256;

/** A queue learnt from events is polled until no `task-sent` named it for this long. */
export const LEARNED_QUEUE_MEMORY_MS = 60 * 60_000;

/**
 * Polls queue lengths on a timer for the configured queues and those named in `task-sent`
 * events; the latest answer is what the `celery.queue.length` gauge reports. A failing poll is
 * logged once per kind of error and retried at the next interval.
 *
 * Anyone who can publish to `celeryev` can name any queue in a `task-sent`, so learnt queues
 * are limited: only those named in the last LEARNED_QUEUE_MEMORY_MS, at most MAX_QUEUES of them
 * (the least recently named forgotten first, so real queues seen after a flood of made-up names
 * are polled), and only those that exist on the broker (the reader leaves out missing ones; on
 * Redis a learnt queue must have kombu's binding, see RedisQueueLengthReader).
 */
export class QueueLengthPoller {
  private readonly queues: Set<string>;
  /** Queue -> when a `task-sent` last named it (ms); least recently named first. */
  private readonly learned = new Map<string, number>();
  private lengths: ReadonlyMap<string, number> = new Map();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private lastError: string | undefined;

  constructor(
    private readonly reader: QueueLengthReader,
    configured: readonly string[],
    private readonly intervalMs: number,
    private readonly logger: Logger,
    private readonly nowMs: () => number = () => Date.now(),
  ) {
    this.queues = new Set(configured);
  }

  get latest(): ReadonlyMap<string, number> {
    return this.lengths;
  }

  noteQueue(queue: string): void {
    if (this.queues.has(queue)) return;
    const now = this.nowMs();
    const last = this.learned.get(queue);
    // Moved to the end at most once a second: a Map delete and set per task-sent is waste.
    if (last !== undefined && now - last < 1000) return;
    this.learned.delete(queue);
    this.learned.set(queue, now);
    if (this.learned.size > MAX_QUEUES) {
      const oldest = this.learned.keys().next().value;
      if (oldest !== undefined) this.learned.delete(oldest);
    }
  }

  start(): void {
    this.timer = setInterval(() => void this.poll(), this.intervalMs).unref();
    void this.poll();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.reader.close();
  }

  /** One poll now; resolves when its answer is in `latest`. */
  async poll(): Promise<void> {
    const cutoff = this.nowMs() - LEARNED_QUEUE_MEMORY_MS;
    for (const [queue, last] of this.learned) {
      if (last >= cutoff) break;
      this.learned.delete(queue);
    }
    if (this.polling || (this.queues.size === 0 && this.learned.size === 0)) return;
    this.polling = true;
    try {
      const learned = new Set(this.learned.keys());
      this.lengths = await this.reader.read([...this.queues, ...learned], learned);
      this.lastError = undefined;
    } catch (error) {
      const message = describeError(error);
      if (message !== this.lastError) {
        this.logger.warn('cannot read queue lengths from the broker; retrying', { error: message });
        this.lastError = message;
      }
    } finally {
      this.polling = false;
    }
  }
}
