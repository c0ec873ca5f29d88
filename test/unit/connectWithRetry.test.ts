import { describe, expect, it } from 'vitest';
import { parseBrokerUrl } from '../../src/config/brokerUrl.js';
import { BrokerSetupError, BrokerUnreachableError } from '../../src/shared/errors.js';
import type { LogFields } from '../../src/log/Logger.js';
import { connectWithRetry } from '../../src/brokers/connectWithRetry.js';

const refused = (): Promise<void> => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1'));

describe('connectWithRetry', () => {
  it('retries with backoff, reports each retry, then gives up naming the broker and the fix', async () => {
    const warnings: [string, LogFields][] = [];
    let attempts = 0;
    const failing = connectWithRetry(
      parseBrokerUrl('redis://:secret@localhost:1/0'),
      300,
      () => (attempts++, refused()),
      (msg, fields) => warnings.push([msg, fields]),
    );
    await expect(failing).rejects.toThrow(BrokerUnreachableError);
    await expect(failing).rejects.toThrow(
      'cannot reach Redis at redis://:***@localhost:1/0: connect ECONNREFUSED 127.0.0.1:1; ' +
        'gave up after 300 ms (--connect-timeout-ms). Check the host, port, password and that ' +
        'Redis is running.',
    );
    expect(attempts).toBe(2);
    expect(warnings).toEqual([
      [
        'Redis unreachable, retrying',
        {
          broker: 'redis://:***@localhost:1/0',
          error: 'connect ECONNREFUSED 127.0.0.1:1',
          retryInMs: 250,
        },
      ],
    ]);
  });

  it('resolves once connected, and does not retry a broker that refused the setup', async () => {
    const broker = parseBrokerUrl('amqp://guest:guest@localhost:1//');
    let attempts = 0;
    await connectWithRetry(
      broker,
      1000,
      () => (++attempts === 1 ? refused() : Promise.resolve()),
      () => undefined,
    );
    expect(attempts).toBe(2);
    const setup = new BrokerSetupError('queue arguments differ');
    await expect(
      connectWithRetry(
        broker,
        60_000,
        () => Promise.reject(setup),
        () => undefined,
      ),
    ).rejects.toBe(setup);
  });

  it('gives up at once when stopping, with the RabbitMQ advice', async () => {
    await expect(
      connectWithRetry(
        parseBrokerUrl('amqp://localhost:1//'),
        60_000,
        refused,
        () => undefined,
        () => true,
      ),
    ).rejects.toThrow(
      /^cannot reach RabbitMQ .* Check the host, port, credentials and that RabbitMQ is running\.$/,
    );
  });
});
