/** The body of Celery's `app.control.enable_events()` (kombu/pidbox.py `Mailbox._publish`). */
export interface ControlCommand {
  readonly method: string;
  readonly arguments: Record<string, never>;
  readonly destination: null;
  readonly pattern: null;
  readonly matcher: null;
}

export function enableEventsCommand(): ControlCommand {
  return {
    method: 'enable_events',
    arguments: {},
    destination: null,
    pattern: null,
    matcher: null,
  };
}

/**
 * kombu's message headers for a broadcast: a Lamport `clock` (the worker only adjusts its own
 * clock with it) and `expires`, which kombu sets to now + the call's timeout (1 s for
 * `Control.broadcast`) and only reply collectors read.
 */
export function commandHeaders(clock: number, nowMs: number): { clock: number; expires: number } {
  return { clock, expires: nowMs / 1000 + 1 };
}

/**
 * Publishes a remote control command to every worker, the way kombu's pidbox broadcast does on
 * one broker (see EnableEventsBroadcaster for the wire format).
 */
export interface ControlPublisher {
  /** The mailbox exchange (`<control_exchange>.pidbox`), for logs. */
  readonly exchange: string;
  /** Resolves with how many subscribers received it where the broker tells (Redis), else undefined. */
  publish(
    command: ControlCommand,
    headers: { clock: number; expires: number },
  ): Promise<number | undefined>;
  /** Closes the connection; the next publish opens another. */
  close(): Promise<void>;
}
