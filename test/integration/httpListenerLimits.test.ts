import { createConnection, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type HttpBridgeProcess,
  deleteBridgeQueue,
  startBridgeWithHttp,
} from '../support/bridgeProcess.js';
import { AMQP_URL, randomName, requireBroker } from '../support/celeryWorker.js';
import { OtlpReceiver } from '../support/OtlpReceiver.js';
import { parsePrometheus } from '../support/prometheusText.js';
import { until } from '../support/testUtils.js';

function connect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
    socket.resume(); // read, so that the bridge closing it is seen
  });
}

/**
 * Slow and idle clients against the built CLI's HTTP listener: while they hold connections the
 * health endpoints keep answering, the bridge drops them on its own within its timeouts, and a
 * burst of concurrent scrapes is served one build at a time (or told to come back), never
 * failing the process.
 */
describe('HTTP listener under slow clients, with the CLI on RabbitMQ', () => {
  const bridgeQueue = randomName('bridge-http');
  let receiver: OtlpReceiver;
  let bridge: HttpBridgeProcess;

  beforeAll(async () => {
    await requireBroker('amqp');
    receiver = await OtlpReceiver.start();
    bridge = await startBridgeWithHttp([], {
      CELERY_BROKER_URL: AMQP_URL,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
    });
    await bridge.waitForLog(/"msg":"consuming/);
  }, 60_000);

  afterAll(async () => {
    await bridge?.stop();
    await receiver?.close();
    await deleteBridgeQueue(AMQP_URL, bridgeQueue);
  });

  it('answers /healthz and /readyz while slow clients hold connections, then drops them', async () => {
    const port = Number(new URL(bridge.httpUrl).port);
    const held: Socket[] = [];
    const closedAt = new Map<Socket, number>();
    // Slowloris: headers a byte at a time, never finished; and connections that send nothing.
    for (let i = 0; i < 10; i++) {
      const socket = await connect(port);
      socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
      held.push(socket);
    }
    for (let i = 0; i < 10; i++) held.push(await connect(port));
    for (const socket of held) socket.once('close', () => closedAt.set(socket, Date.now()));
    const drip = setInterval(() => {
      for (const socket of held.slice(0, 10)) if (!socket.destroyed) socket.write('X');
    }, 500);
    try {
      for (let i = 0; i < 5; i++) {
        const health = await fetch(`${bridge.httpUrl}/healthz`);
        expect(await health.text()).toBe('ok\n');
        const ready = await fetch(`${bridge.httpUrl}/readyz`);
        expect(ready.status).toBe(200);
      }
      // The bridge drops every one of them by itself (header and request timeouts).
      await until(
        'the bridge to drop every slow client',
        () => Promise.resolve(closedAt.size === held.length),
        60_000,
      );
    } finally {
      clearInterval(drip);
      for (const socket of held) socket.destroy();
    }
    expect(await (await fetch(`${bridge.httpUrl}/healthz`)).text()).toBe('ok\n');
  }, 90_000);

  it('serves a burst of concurrent scrapes one build at a time, every answer whole or 503', async () => {
    // 24 at once: under the 32 connections allowed per address, over the 1 + 16 a build lets in.
    const answers = await Promise.all(
      Array.from({ length: 24 }, async () => {
        const response = await fetch(`${bridge.httpUrl}/metrics`);
        return { status: response.status, text: await response.text() };
      }),
    );
    const served = answers.filter((answer) => answer.status === 200);
    expect(served.length).toBeGreaterThan(0);
    for (const answer of answers) expect([200, 503]).toContain(answer.status);
    for (const answer of served) {
      expect(
        parsePrometheus(answer.text).some((s) => s.name.startsWith('celery_otel_bridge_')),
      ).toBe(true);
    }
    expect(bridge.child.exitCode).toBeNull();
    expect(bridge.logLines.join('\n')).not.toMatch(/internal error/);
  }, 60_000);
});
