// Self-diagnosis end to end: a real Celery 5.2.6 worker started WITHOUT -E runs tasks; the bridge
// (its CLI, on the shared Redis) says once in its log that this worker sends no task events, and
// that its Celery version drops events with the thread/gevent pools, and shows both on /metrics.
// Assertions name this test's own worker: other engineers' workers share the broker.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BridgeProcess, startBridge } from '../support/bridgeProcess.js';
import {
  type CeleryWorker,
  REDIS_URL,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { parsePrometheus, sumOf } from '../support/prometheusText.js';
import { freePort, until } from '../support/testUtils.js';

describe('self-diagnosis of the event stream', () => {
  const queue = randomName('diagnosis');
  let bridge: BridgeProcess | undefined;
  let worker: CeleryWorker;
  let httpPort: number;

  const findings = async (finding: string): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    return sumOf(parsePrometheus(text), 'celery_otel_bridge_diagnosis_findings', {
      celery_otel_bridge_finding: finding,
      celery_worker_hostname: worker.hostname,
    });
  };

  beforeAll(async () => {
    await requireBroker('redis');
    httpPort = await freePort();
    bridge = startBridge(
      ['--broker', REDIS_URL, '--http-host', '127.0.0.1', '--http-port', String(httpPort)],
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_METRICS_EXPORTER: 'none' },
    );
    await bridge.waitForLog(/"msg":"subscribed/);
    worker = await startCeleryWorker({ brokerUrl: REDIS_URL, queue, sendEvents: false });
    await produce(REDIS_URL, queue, 'adds', ['2'], { CELERY_TASK_SEND_SENT_EVENT: '0' });
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    await bridge?.stop();
    await deleteTestQueue(REDIS_URL, queue).catch(() => undefined);
  });

  it('says once that a worker runs tasks without sending task events, and shows it', async () => {
    const line = await bridge?.waitForLog(
      new RegExp(`"finding":"no_task_events","worker":"${worker.hostname}"`),
      60_000,
    );
    expect(line).toContain('-E');
    expect(line).toContain('--enable-events');
    await until('the finding on /metrics', async () => (await findings('no_task_events')) === 1);
    const lines = bridge?.logLines.filter(
      (l) => l.includes('"no_task_events"') && l.includes(worker.hostname),
    );
    expect(lines).toHaveLength(1);
  }, 90_000);

  it("names the worker's Celery version when it is one that drops events", async () => {
    const line = await bridge?.waitForLog(
      new RegExp(`"finding":"lossy_version","worker":"${worker.hostname}"`),
    );
    expect(line).toContain('Celery 5.2.6');
    expect(await findings('lossy_version')).toBe(1);
  });
});
