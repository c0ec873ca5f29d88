import { type ChildProcess, execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type HttpBridgeProcess,
  deleteBridgeQueue,
  startBridgeWithHttp,
} from '../support/bridgeProcess.js';
import {
  AMQP_URL,
  type CeleryWorker,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { OtlpReceiver, taskSpansOf } from '../support/OtlpReceiver.js';
import { parsePrometheus, sumOf } from '../support/prometheusText.js';
import { startOwnRedis } from '../support/ownRedis.js';
import { freePort, sleep, until } from '../support/testUtils.js';

async function readiness(base: string): Promise<number> {
  try {
    return (await fetch(`${base}/readyz`)).status;
  } catch {
    return 0;
  }
}

/** A Redis server of the test's own, so restarting it disturbs nothing else. */
class OwnRedis {
  private child: ChildProcess | undefined;
  constructor(readonly port: number) {}
  async start(): Promise<void> {
    this.child = await startOwnRedis(this.port);
  }
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
}

interface Outage {
  readonly name: string;
  readonly brokerUrl: (port: number) => string;
  setUp(): Promise<number>;
  down(): Promise<void>;
  up(): Promise<void>;
  tearDown(): Promise<void>;
}

let ownRedis: OwnRedis | undefined;
const outages: Outage[] = [
  {
    name: 'Redis killed and restarted',
    brokerUrl: (port) => `redis://127.0.0.1:${port}/0`,
    async setUp() {
      ownRedis = new OwnRedis(await freePort());
      await ownRedis.start();
      return ownRedis.port;
    },
    down: () => ownRedis?.stop() ?? Promise.resolve(),
    up: () => ownRedis?.start() ?? Promise.resolve(),
    tearDown: () => ownRedis?.stop() ?? Promise.resolve(),
  },
  {
    // The shared RabbitMQ: test files run one at a time, so nothing else uses it meanwhile.
    name: 'RabbitMQ stop_app / start_app',
    brokerUrl: () => AMQP_URL,
    async setUp() {
      await requireBroker('amqp');
      return 5672;
    },
    down: () => {
      execFileSync('rabbitmqctl', ['stop_app'], { stdio: 'pipe' });
      return Promise.resolve();
    },
    up: () => {
      execFileSync('rabbitmqctl', ['start_app'], { stdio: 'pipe' });
      execFileSync('rabbitmqctl', ['await_startup'], { stdio: 'pipe' });
      return Promise.resolve();
    },
    tearDown: () => {
      // Whatever happened, leave RabbitMQ running for the next test file.
      execFileSync('rabbitmqctl', ['start_app'], { stdio: 'pipe' });
      return Promise.resolve();
    },
  },
];

describe.each(outages)('broker outage: $name', (outage) => {
  let receiver: OtlpReceiver;
  let worker: CeleryWorker | undefined;
  let bridge: HttpBridgeProcess | undefined;
  let url = '';
  const queue = randomName('outage');
  const bridgeQueue = randomName('bridge-outage');

  afterAll(async () => {
    await outage.tearDown();
    await worker?.stop();
    await bridge?.stop();
    await receiver?.close();
    await deleteTestQueue(url, queue).catch(() => undefined);
    await deleteBridgeQueue(url, bridgeQueue);
  });

  it('reconnects, reports the outage on /readyz, and keeps exporting', async () => {
    const port = await outage.setUp();
    url = outage.brokerUrl(port);
    receiver = await OtlpReceiver.start();
    bridge = await startBridgeWithHttp([], {
      CELERY_BROKER_URL: url,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
      CELERY_OTEL_BRIDGE_OUTAGE_GRACE_MS: '5000',
    });
    const base = bridge.httpUrl;
    await bridge.waitForLog(/"msg":"(consuming|subscribed)/);
    worker = await startCeleryWorker({ brokerUrl: url, queue, pool: 'prefork', concurrency: 1 });
    const { slow } = (await produce(url, queue, 'slow')) as { slow: string };
    await sleep(1000);

    await outage.down();
    await until(
      '/readyz to report the outage',
      async () => (await readiness(base)) === 503,
      20_000,
    );
    await sleep(1500);
    await outage.up();
    await until('/readyz to recover', async () => (await readiness(base)) === 200, 60_000);

    // The task that ran across the outage still gets exactly one span from what arrived.
    await receiver
      .waitForSpans((all) => taskSpansOf(all, slow).length > 0, 60_000)
      .catch((error: unknown) => {
        throw new Error(
          `${String(error)}\n--- bridge ---\n${bridge?.logLines.join('\n')}\n--- worker ---\n${worker?.logTail()}`,
        );
      });
    // And new tasks are traced as before.
    const { adds } = (await produce(url, queue, 'adds', ['3'])) as { adds: string[] };
    await receiver.waitForSpans(
      (all) => adds.every((id) => taskSpansOf(all, id).length === 1),
      60_000,
    );
    // One span of its own; if the outage made it look lost and its real outcome came after that
    // span went out, that outcome is a continuation span under it (docs/task-lifecycle.md).
    const slowSpans = taskSpansOf(receiver.spans, slow);
    expect(
      slowSpans.filter((s) => s.attributes['celery.task.delivery'] === undefined),
    ).toHaveLength(1);
    expect(slowSpans.length).toBeLessThanOrEqual(2);
    // Said once, not at every failed attempt.
    expect(bridge.logLines.filter((line) => line.includes('reconnecting'))).toHaveLength(1);
    expect(bridge.logLines.some((line) => / after \d+\.\d s away/.test(line))).toBe(true);
    // The outage is counted once (for alerting on a flapping connection), however many
    // reconnect attempts failed during it.
    const families = parsePrometheus(await (await fetch(`${base}/metrics`)).text());
    expect(sumOf(families, 'celery_otel_bridge_broker_disconnects_total')).toBe(1);
    expect(bridge.child.exitCode).toBeNull();
  }, 240_000);
});
