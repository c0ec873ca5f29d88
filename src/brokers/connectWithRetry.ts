import type { BrokerEndpoint } from './BrokerOptions.js';
import { BrokerSetupError, BrokerUnreachableError } from '../shared/errors.js';
import type { LogFields } from '../log/Logger.js';
import { describeBrokerError, isTlsFailure } from './brokerTlsOptions.js';
import { backoffDelayMs } from './EventSource.js';

const BROKER = {
  amqp: { name: 'RabbitMQ', check: 'credentials' },
  redis: { name: 'Redis', check: 'password' },
} as const;

/**
 * The first connection of an event source: calls `connect` until it resolves, waiting
 * {@link backoffDelayMs} between attempts and reporting each through `warn`. Rejects with a
 * BrokerUnreachableError that says what failed and what to check once the next attempt would
 * start after `connectTimeoutMs` (or when `stopping` says so); a BrokerSetupError (the broker
 * answered and refused) is not retried.
 */
export async function connectWithRetry(
  broker: BrokerEndpoint,
  connectTimeoutMs: number,
  connect: () => Promise<void>,
  warn: (msg: string, fields: LogFields) => void,
  stopping: () => boolean = () => false,
): Promise<void> {
  const { name, check } = BROKER[broker.kind];
  const deadline = Date.now() + connectTimeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      await connect();
      return;
    } catch (error) {
      if (error instanceof BrokerSetupError) throw error;
      const delay = backoffDelayMs(attempt);
      if (stopping() || Date.now() + delay > deadline) {
        throw new BrokerUnreachableError(
          `cannot reach ${name} at ${broker.redactedUrl}: ${describeBrokerError(error, broker)}; ` +
            `gave up after ${connectTimeoutMs} ms (--connect-timeout-ms).` +
            (isTlsFailure(error, broker)
              ? ''
              : ` Check the host, port, ${check} and that ${name} is running.`),
          { cause: error },
        );
      }
      warn(`${name} unreachable, retrying`, {
        broker: broker.redactedUrl,
        error: describeBrokerError(error, broker),
        retryInMs: delay,
      });
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
