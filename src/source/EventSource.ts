import type { DecodeRejection } from '../decode/DecodeRejection.js';
import type { RawEventMessage } from './RawEventMessage.js';

/** What a source reports to the bridge. Handlers are synchronous and never throw. */
export interface EventSourceHandlers {
  message(message: RawEventMessage): void;
  /** A broker message that is not even an event message (e.g. a broken kombu envelope). */
  rejected(rejection: DecodeRejection, count: number): void;
  /** Connection state changes, for logs and readiness; `detail` is safe to log. */
  connection(state: 'connected' | 'disconnected', detail: string): void;
}

/** A broker-specific consumer of Celery's event stream. */
export interface EventSource {
  /** Resolves once consuming; rejects (BrokerUnreachableError) if the broker stays unreachable. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Exponential backoff with a ceiling, for reconnect loops. */
export function backoffDelayMs(attempt: number, initialMs = 250, maxMs = 10_000): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 16));
}
