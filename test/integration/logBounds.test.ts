import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BridgeProcess, startBridge } from '../support/bridgeProcess.js';
import { startOwnRedis } from '../support/ownRedis.js';
import { freePort, until } from '../support/testUtils.js';

const SECRET = 'card=4111111111111111';

/**
 * Rejected messages whose parts are huge or hold data: on a Redis of the test's own (so no other
 * bridge on the machine sees them), the built CLI logs each rejection once, as a line of a few
 * kilobytes whatever the routing key's size, never quoting the body, and goes on.
 */
describe('log lines of rejected Redis messages', () => {
  let port: number;
  let redis: ChildProcess;
  let client: Redis;
  let bridge: BridgeProcess;

  beforeAll(async () => {
    port = await freePort();
    redis = await startOwnRedis(port);
    client = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
    await client.connect();
    bridge = startBridge([], { CELERY_BROKER_URL: `redis://127.0.0.1:${port}/0` });
    await bridge.waitForLog(/"msg":"subscribed/);
  }, 60_000);

  afterAll(async () => {
    await bridge?.stop();
    client?.disconnect();
    redis?.kill('SIGKILL');
  });

  it('stay bounded with a 4 MB routing key and never quote the body', async () => {
    const envelope = (routingKey: string, body: string): string =>
      JSON.stringify({
        body: Buffer.from(body).toString('base64'),
        'content-encoding': 'utf-8',
        'content-type': 'application/json',
        headers: {},
        properties: {
          delivery_mode: 1,
          delivery_info: { exchange: 'celeryev', routing_key: routingKey },
          priority: 0,
          body_encoding: 'base64',
          delivery_tag: 'x',
        },
      });
    const huge = `task.${'k'.repeat(4 * 1024 * 1024)}`;
    await client.publish('/0.celeryev/task.multi', envelope(huge, `{"kwargs": "${SECRET}" oops`));
    await client.publish('/0.celeryev/task.multi', `{"body": "${SECRET}" oops`);
    await until(
      'both rejections logged',
      () =>
        Promise.resolve(
          bridge.logLines.some((line) => line.includes('"reason":"invalid_json"')) &&
            bridge.logLines.some((line) => line.includes('"reason":"invalid_envelope"')),
        ),
      30_000,
    );
    for (const line of bridge.logLines) {
      expect(line.length).toBeLessThan(5000);
      expect(line).not.toContain(SECRET);
    }
    const rejected = bridge.logLines.find((line) => line.includes('"reason":"invalid_json"'));
    expect(rejected).toMatch(/more characters\)/);
    expect(bridge.child.exitCode).toBeNull();
  }, 60_000);
});
