import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { type BridgeProcess, deleteBridgeQueue, startBridge } from '../support/bridgeProcess.js';
import {
  AMQP_URL,
  type CeleryWorker,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { OtlpReceiver, type ReceivedSpan, SPAN_KIND_CONSUMER } from '../support/OtlpReceiver.js';
import { startOwnRedis } from '../support/ownRedis.js';
import { freePort, peakRssMiB, sleep } from '../support/testUtils.js';

/**
 * The reliability report: each fault injected against a real Celery worker and a real broker,
 * with the bridge as its CLI and a real OTLP receiver. Prints a table (and writes
 * reliability-report.json): tasks run, task spans expected and received, lost, peak RSS.
 */
interface Row {
  fault: string;
  tasksRun: number;
  spansExpected: number;
  spansReceived: number;
  lost: number;
  incomplete: number;
  peakRssMiB: number;
}

const rows: Row[] = [];

/** One scenario's moving parts, torn down whatever happens. */
class Scenario {
  readonly queue = randomName('rel-suite');
  readonly bridgeQueue = randomName('bridge-suite');
  receiver!: OtlpReceiver;
  receiverPort = 0;
  worker: CeleryWorker | undefined;
  bridges: BridgeProcess[] = [];
  peak = 0;
  private sampler: NodeJS.Timeout | undefined;

  constructor(readonly url: string) {}

  async start(workerPool: 'prefork' | 'solo' = 'prefork'): Promise<void> {
    this.receiverPort = await freePort();
    this.receiver = await OtlpReceiver.start({ port: this.receiverPort });
    this.sampler = setInterval(() => {
      for (const bridge of this.bridges)
        this.peak = Math.max(this.peak, peakRssMiB(bridge.child.pid));
    }, 200);
    await this.bridge();
    this.worker = await startCeleryWorker({
      brokerUrl: this.url,
      queue: this.queue,
      pool: workerPool,
      concurrency: 2,
    });
  }

  async bridge(extra: Record<string, string> = {}): Promise<BridgeProcess> {
    const bridge = startBridge([], {
      CELERY_BROKER_URL: this.url,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${this.receiverPort}`,
      OTEL_BSP_SCHEDULE_DELAY: '200',
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: this.bridgeQueue,
      CELERY_OTEL_BRIDGE_OUTAGE_GRACE_MS: '5000',
      CELERY_OTEL_BRIDGE_STATE_SNAPSHOT_INTERVAL_MS: '2000',
      ...extra,
    });
    this.bridges.push(bridge);
    await bridge.waitForLog(/"msg":"(consuming|subscribed)/, 60_000);
    return bridge;
  }

  async adds(n: number): Promise<string[]> {
    return ((await produce(this.url, this.queue, 'adds', [String(n)])) as { adds: string[] }).adds;
  }

  /** Waits until every task has a span or the time is up; records the row. */
  async report(fault: string, ids: string[], waitMs = 60_000): Promise<Row> {
    const wanted = new Set(ids);
    const seen = (): Map<string, ReceivedSpan> => {
      const found = new Map<string, ReceivedSpan>();
      for (const span of this.receiver.spans) {
        const id = span.attributes['celery.task.id'];
        if (span.kind === SPAN_KIND_CONSUMER && typeof id === 'string' && wanted.has(id))
          found.set(id, span);
      }
      return found;
    };
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline && seen().size < wanted.size) await sleep(250);
    await sleep(1000);
    const found = seen();
    const row: Row = {
      fault,
      tasksRun: ids.length,
      spansExpected: ids.length,
      spansReceived: found.size,
      lost: ids.length - found.size,
      incomplete: [...found.values()].filter(
        (s) => s.attributes['celery.task.incomplete'] !== undefined,
      ).length,
      peakRssMiB: Math.round(this.peak),
    };
    rows.push(row);
    return row;
  }

  async stop(): Promise<void> {
    clearInterval(this.sampler);
    for (const bridge of this.bridges) await bridge.stop();
    await this.worker?.stop();
    await this.receiver?.close();
    await deleteTestQueue(this.url, this.queue).catch(() => undefined);
    await deleteBridgeQueue(this.url, this.bridgeQueue);
  }
}

async function run(
  url: string,
  body: (s: Scenario) => Promise<void>,
  pool: 'prefork' | 'solo' = 'prefork',
): Promise<void> {
  const scenario = new Scenario(url);
  try {
    await scenario.start(pool);
    await body(scenario);
  } finally {
    await scenario.stop();
  }
}

describe('reliability report', () => {
  afterAll(() => {
    const header = [
      'fault',
      'tasks run',
      'spans expected',
      'received',
      'lost',
      'of which incomplete',
      'peak RSS MiB',
    ];
    const lines = [
      `| ${header.join(' | ')} |`,
      `| ${header.map(() => '---').join(' | ')} |`,
      ...rows.map(
        (r) =>
          `| ${r.fault} | ${r.tasksRun} | ${r.spansExpected} | ${r.spansReceived} | ${r.lost} | ${r.incomplete} | ${r.peakRssMiB} |`,
      ),
    ];
    process.stdout.write(`\n${lines.join('\n')}\n`);
    writeFileSync('reliability-report.json', `${JSON.stringify(rows, null, 2)}\n`);
  });

  it('no fault (RabbitMQ)', async () => {
    await requireBroker('amqp');
    await run(AMQP_URL, async (s) => {
      const row = await s.report('none (RabbitMQ)', await s.adds(200));
      expect(row.lost).toBe(0);
    });
  });

  it('bridge SIGTERM and restart while tasks run (RabbitMQ)', async () => {
    await run(AMQP_URL, async (s) => {
      const first = await s.adds(100);
      await sleep(300);
      const bridge = s.bridges[0];
      await bridge?.stop();
      const whileDown = await s.adds(100);
      await sleep(2000);
      await s.bridge();
      const row = await s.report('bridge SIGTERM + restart (RabbitMQ)', [...first, ...whileDown]);
      expect(row.lost).toBe(0);
    });
  });

  it('bridge kill -9 and restart while tasks run (RabbitMQ)', async () => {
    await run(AMQP_URL, async (s) => {
      const first = await s.adds(100);
      await sleep(300);
      const bridge = s.bridges[0];
      bridge?.child.kill('SIGKILL');
      await bridge?.exited;
      const whileDown = await s.adds(100);
      await sleep(2000);
      await s.bridge();
      await s.report('bridge kill -9 + restart (RabbitMQ)', [...first, ...whileDown]);
    });
  });

  it('collector answering 503 for 10 s (RabbitMQ)', async () => {
    await run(AMQP_URL, async (s) => {
      s.receiver.setStatus(503);
      const ids = await s.adds(200);
      await sleep(10_000);
      s.receiver.setStatus(200);
      const row = await s.report('collector 503 for 10 s (RabbitMQ)', ids);
      expect(row.lost).toBe(0);
    });
  });

  it('collector down (connection refused) for 10 s (RabbitMQ)', async () => {
    await run(AMQP_URL, async (s) => {
      const port = s.receiverPort;
      await s.receiver.close();
      const ids = await s.adds(200);
      await sleep(10_000);
      s.receiver = await OtlpReceiver.start({ port });
      const row = await s.report('collector down for 10 s (RabbitMQ)', ids, 90_000);
      expect(row.lost).toBe(0);
    });
  });

  it('worker kill -9 with a task running (RabbitMQ)', async () => {
    await run(AMQP_URL, async (s) => {
      const ids = await s.adds(50);
      const { slow } = (await produce(s.url, s.queue, 'slow')) as { slow: string };
      await sleep(2500);
      s.worker?.kill9();
      await s.report('worker kill -9 mid-task (RabbitMQ)', [...ids, slow]);
    });
  });

  it('RabbitMQ stop_app / start_app while tasks run', async () => {
    await run(AMQP_URL, async (s) => {
      const before = await s.adds(100);
      const { slow } = (await produce(s.url, s.queue, 'slow')) as { slow: string };
      await sleep(1000);
      try {
        execFileSync('rabbitmqctl', ['stop_app'], { stdio: 'pipe' });
        await sleep(2000);
      } finally {
        execFileSync('rabbitmqctl', ['start_app'], { stdio: 'pipe' });
        execFileSync('rabbitmqctl', ['await_startup'], { stdio: 'pipe' });
      }
      await sleep(5000);
      const after = await s.adds(100);
      await s.report('RabbitMQ stop_app/start_app', [...before, slow, ...after], 90_000);
    });
  });

  it('no fault (Redis)', async () => {
    await requireBroker('redis');
    await run('redis://127.0.0.1:6379/0', async (s) => {
      const row = await s.report('none (Redis)', await s.adds(200));
      expect(row.lost).toBe(0);
    });
  });

  it('Redis killed and restarted while tasks run', async () => {
    const port = await freePort();
    let redis = await startOwnRedis(port);
    try {
      await run(`redis://127.0.0.1:${port}/0`, async (s) => {
        const before = await s.adds(100);
        const { slow } = (await produce(s.url, s.queue, 'slow')) as { slow: string };
        await sleep(1000);
        redis.kill('SIGKILL');
        await sleep(2000);
        redis = await startOwnRedis(port);
        await sleep(5000);
        const after = await s.adds(100);
        await s.report('Redis killed + restarted', [...before, slow, ...after], 90_000);
      });
    } finally {
      redis.kill('SIGKILL');
    }
  });
});
