import type { DecodeRejection } from '../shared/DecodeRejection.js';
import type { RawEventMessage } from '../shared/RawEventMessage.js';

/** What a source reports to the bridge. Handlers are synchronous and never throw, but for the two promises. */
export interface EventSourceHandlers {
  message(message: RawEventMessage): void;
  /** A broker message that is not even an event message (e.g. a broken kombu envelope). */
  rejected(rejection: DecodeRejection, count: number): void;
  /**
   * Connection state changes, for logs and readiness; `detail` is safe to log. `disconnected`
   * may come several times in one outage (ioredis closes again at each failed reconnect; a
   * cancelled RabbitMQ consumer is followed by the connection's close): the bridge counts and
   * logs the first.
   */
  connection(state: 'connected' | 'disconnected', detail: string): void;
  /**
   * Resolves true once everything the messages handled so far contributed is safe (their
   * finished spans accepted by the collector, the tasks they left in flight in the state file):
   * a broker that redelivers may now forget them. False when that cannot be had (a stop while
   * the collector fails): they stay unacknowledged and the broker redelivers them.
   */
  checkpoint(): Promise<boolean>;
  /**
   * Before the first message a consumer gets (at start, or when a standby becomes the active
   * consumer of a single-active-consumer queue): loads what the previous consumer saved.
   * Messages wait until it resolves.
   */
  activate(): Promise<void>;
}

/** A broker-specific consumer of Celery's event stream. */
export interface EventSource {
  /** Resolves once consuming; rejects (BrokerUnreachableError) if the broker stays unreachable. */
  start(): Promise<void>;
  /**
   * Stops taking messages, hands on what was already taken, makes it safe (a last checkpoint)
   * and disconnects.
   */
  stop(): Promise<void>;
  /** Stop handing messages on (the export queue is full); the broker or a buffer keeps them. */
  pause(): void;
  resume(): void;
}

/** Exponential backoff with a ceiling, for reconnect loops. */
export function backoffDelayMs(attempt: number, initialMs = 250, maxMs = 10_000): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 16));
}
