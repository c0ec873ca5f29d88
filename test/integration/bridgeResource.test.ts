// The bridge's own resource: its health metrics (celery_otel_bridge.*) go out over OTLP under the
// resource it detects for itself (service.name celery-otel-bridge, host, process, instance id, as
// @opentelemetry/sdk-node's detectors find them), the Celery metrics under the Celery resource
// (--service-name / OTEL_SERVICE_NAME), received by a real OTLP receiver; /metrics shows one
// target, whose target_info is the bridge's. Real Redis, a real Celery worker.
import { hostname } from 'node:os';
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
import { OtlpReceiver, taskSpansOf } from '../support/OtlpReceiver.js';
import { parsePrometheus } from '../support/prometheusText.js';
import { freePort, until } from '../support/testUtils.js';

describe("the bridge's own resource for its health metrics", () => {
  const queue = randomName('bridge-resource');
  let receiver: OtlpReceiver;
  let bridge: BridgeProcess | undefined;
  let worker: CeleryWorker | undefined;
  let httpPort: number;

  beforeAll(async () => {
    await requireBroker('redis');
    receiver = await OtlpReceiver.start();
    httpPort = await freePort();
    bridge = startBridge(
      ['--broker', REDIS_URL, '--http-host', '127.0.0.1', '--http-port', String(httpPort)],
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '200',
        OTEL_METRIC_EXPORT_INTERVAL: '500',
        OTEL_SERVICE_NAME: 'celery-app',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=it',
      },
    );
    await bridge.waitForLog(/"msg":"subscribed/);
    worker = await startCeleryWorker({ brokerUrl: REDIS_URL, queue });
    const id = (await produce(REDIS_URL, queue, 'add'))['add'] as string;
    await receiver.waitForSpans(() => taskSpansOf(receiver.spans, id).length === 1, 60_000);
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    const code = await bridge?.stop();
    await receiver?.close();
    await deleteTestQueue(REDIS_URL, queue).catch(() => undefined);
    expect(code).toBe(0);
  });

  it('pushes celery_otel_bridge.* under the bridge resource and celery.* under the Celery one', async () => {
    await until('metrics under both resources', () =>
      Promise.resolve(
        (receiver.metricsByService.get('celery-app')?.some((m) => m.name === 'celery.tasks') ??
          false) &&
          (receiver.metricsByService.get('celery-otel-bridge')?.length ?? 0) > 0,
      ),
    );
    const own = receiver.metricsByService.get('celery-otel-bridge') ?? [];
    const celery = receiver.metricsByService.get('celery-app') ?? [];
    const bridgeOwn = (name: string): boolean =>
      name.startsWith('celery_otel_bridge.') || name.startsWith('process.');
    expect(own.every((m) => bridgeOwn(m.name))).toBe(true);
    expect(celery.some((m) => bridgeOwn(m.name))).toBe(false);
    expect([...receiver.metricsByService.keys()].sort()).toEqual([
      'celery-app',
      'celery-otel-bridge',
    ]);

    const bridgeResource = receiver.metricResources.get('celery-otel-bridge') ?? {};
    expect(bridgeResource).toMatchObject({
      'host.name': hostname(),
      'process.runtime.name': 'nodejs',
      'deployment.environment': 'it',
      'telemetry.sdk.language': 'nodejs',
    });
    expect(Number(bridgeResource['process.pid'])).toBe(bridge?.child.pid);
    expect(String(bridgeResource['service.instance.id'])).toMatch(/^[0-9a-f-]{36}$/);
    const celeryResource = receiver.metricResources.get('celery-app') ?? {};
    expect(celeryResource['deployment.environment']).toBe('it');
    expect(celeryResource['process.pid']).toBeUndefined();
  });

  it("shows one target on /metrics, whose target_info is the bridge's resource", async () => {
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    const info = parsePrometheus(text).find((f) => f.name === 'target_info');
    expect(info?.metrics).toHaveLength(1);
    expect(info?.metrics[0]?.labels).toMatchObject({
      service_name: 'celery-otel-bridge',
      host_name: hostname(),
      process_pid: String(bridge?.child.pid),
    });
    // Both kinds of metric are on the same target.
    expect(text).toMatch(/^celery_otel_bridge_/m);
    expect(text).toMatch(/^celery_tasks/m);
  });
});
