/** Reads how many messages wait in each queue. Missing queues are left out of the result. */
export interface QueueLengthReader {
  /**
   * `learned`: the queues of `queues` only known from events, read only if they exist as a
   * Celery queue (configured ones are read as they are).
   */
  read(queues: readonly string[], learned?: ReadonlySet<string>): Promise<Map<string, number>>;
  close(): Promise<void>;
}
