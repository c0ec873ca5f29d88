import { createServer, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { OPTION_SPECS } from '../../src/config/optionSpecs.js';
import { startBridge } from '../support/bridgeProcess.js';

/** The CLI edge as a user meets it: help, bad configuration, an unreachable broker. */
describe('the celery-otel-bridge command', () => {
  it('describes the common options with --help, every one with --help-all, and exits 0', async () => {
    const short = startBridge(['--help'], {});
    expect(await short.exited).toBe(0);
    expect(short.stdout()).toContain('CELERY_BROKER_URL');
    expect(short.stdout()).toContain('OTEL_EXPORTER_OTLP_ENDPOINT');
    expect(short.stdout()).toContain('--help-all');
    expect(short.stdout()).not.toContain('CELERY_OTEL_BRIDGE_AMQP_QUEUE_MAX_BYTES');
    const all = startBridge(['--help-all'], {});
    expect(await all.exited).toBe(0);
    for (const spec of OPTION_SPECS) {
      expect(all.stdout()).toContain(`--${spec.flag}`);
      expect(all.stdout()).toContain(`env ${spec.env}`);
    }
  });

  it('prints its version', async () => {
    const bridge = startBridge(['--version'], {});
    expect(await bridge.exited).toBe(0);
    expect(bridge.stdout().trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it.each([
    [['--no-such-flag'], {}, "Unknown option '--no-such-flag'"],
    [[], { CELERY_BROKER_URL: 'sqs://key:topsecret@region' }, 'scheme "sqs" is not supported'],
    [['--broker', 'not a url'], {}, 'is not a URL'],
    [[], { OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318' }, 'http://'],
    [['--max-in-flight-tasks', 'lots'], {}, '--max-in-flight-tasks'],
  ])(
    'exits 2 with one clear message for invalid configuration %j %j',
    async (args, env, message) => {
      const bridge = startBridge(args, env);
      expect(await bridge.exited).toBe(2);
      const log = bridge.logLines.join('\n');
      expect(log).toContain(message);
      expect(bridge.logLines.filter((line) => line.trim() !== '')).toHaveLength(1);
      expect(log).not.toContain('topsecret');
    },
  );

  it('exits 1 with one clear message when the HTTP port is taken', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const bridge = startBridge(['--http-host', '127.0.0.1', '--http-port', String(port)], {});
      expect(await bridge.exited).toBe(1);
      expect(bridge.logLines.join('\n')).toContain(
        `cannot serve /metrics on 127.0.0.1:${port}: EADDRINUSE`,
      );
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it.each([
    ['amqp://admin:hunter2@127.0.0.1:1//', 'RabbitMQ'],
    ['redis://:hunter2@127.0.0.1:1/0', 'Redis'],
  ])('retries an unreachable broker %s with backoff, says so, then exits 1', async (url, name) => {
    const bridge = startBridge(['--connect-timeout-ms', '1500'], { CELERY_BROKER_URL: url });
    expect(await bridge.exited).toBe(1);
    const log = bridge.logLines.join('\n');
    expect(log).toContain(`${name} unreachable, retrying`);
    expect(log).toContain(`cannot reach ${name}`);
    expect(log).toContain('***');
    expect(log).not.toContain('hunter2');
  });
});
