import type { Logger } from '../log/Logger.js';
import { describeError } from '../source/describeError.js';
import type { QueueLengthReader } from './QueueLengthReader.js';

/** Queues learnt from events at most, so a flood of queue names cannot grow memory. */
const MAX_QUEUES = 256;

/**
 * Polls queue lengths on a timer for the configured queues and those named in `task-sent`
 * events; the latest answer is what the `celery.queue.length` gauge reports. A failing poll is
 * logged once per kind of error and retried at the next interval.
 */
export class QueueLengthPoller {
  private readonly queues: Set<string>;
  private lengths: ReadonlyMap<string, number> = new Map();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private lastError: string | undefined;

  constructor(
    private readonly reader: QueueLengthReader,
    configured: readonly string[],
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {
    this.queues = new Set(configured);
  }

  get latest(): ReadonlyMap<string, number> {
    return this.lengths;
  }

  noteQueue(queue: string): void {
    if (this.queues.size < MAX_QUEUES) this.queues.add(queue);
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
    if (this.polling || this.queues.size === 0) return;
    this.polling = true;
    try {
      this.lengths = await this.reader.read([...this.queues]);
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
