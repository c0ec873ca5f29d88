import { afterAll, describe, expect, it } from 'vitest';
import { Bridge } from '../../src/Bridge.js';
import { parseConfig } from '../../src/config/parseConfig.js';
import { Logger } from '../../src/log/Logger.js';
import type { BridgeStats } from '../../src/telemetry/BridgeStats.js';
import { amqpFixtureMessages } from '../support/fixtures.js';

/** The bridge, not started (no broker): messages go straight to its handler, as a source hands them on. */
interface Internals {
  onMessage(message: ReturnType<typeof amqpFixtureMessages>[number]): void;
  assembler: { handle(...args: unknown[]): void };
  stats: BridgeStats;
  stop(): Promise<void>;
}

const lines: string[] = [];
const parsed = parseConfig(
  ['--broker', 'amqp://guest:guest@127.0.0.1:5672/', '--state-file', 'none', '--http-port', '0'],
  { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_METRICS_EXPORTER: 'none' },
);
if (parsed.command !== 'run') throw new Error('expected a run command');
const bridge = new Bridge(parsed.options, new Logger('info', (line) => lines.push(line)));
const internals = bridge as unknown as Internals;

afterAll(async () => {
  await bridge.stop().catch(() => undefined);
});

describe('a bug while handling a message', () => {
  it('is counted as an internal error with its stack, not as bad input, and costs only that message', () => {
    internals.assembler.handle = () => {
      throw new TypeError('a bug in the assembler');
    };
    const messages = amqpFixtureMessages();
    expect(() => {
      for (const message of messages) internals.onMessage(message);
    }).not.toThrow();
    expect(internals.stats.series('internalErrors').get('handle_message')).toBeGreaterThan(0);
    expect(internals.stats.series('eventsRejected').get('invalid_field') ?? 0).toBe(0);
    const logged = lines.filter((line) => line.includes('a bug in the assembler'));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain('bridgeInternalError.test.ts');
  });
});
