import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
import {
  OtlpReceiver,
  type ReceivedSpan,
  SPAN_KIND_INTERNAL,
  STATUS_CODE_ERROR,
  taskSpansOf,
} from '../support/OtlpReceiver.js';
import { sleep } from '../support/testUtils.js';

const hasTasks = (spans: ReceivedSpan[], ids: string[]): boolean =>
  ids.every((id) => taskSpansOf(spans, id).length > 0);

/**
 * Faults on RabbitMQ that must not cost spans: a bridge restart with tasks in flight, a
 * collector outage, and the active bridge of a standby pair dying.
 */
describe('reliability on RabbitMQ', () => {
  const queue = randomName('rel');
  const bridgeQueue = randomName('bridge-rel');
  const stateDir = mkdtempSync(join(tmpdir(), 'bridge-state-'));
  const stateFile = join(stateDir, 'state.json');
  let receiver: OtlpReceiver;
  let worker: CeleryWorker;
  const bridges: BridgeProcess[] = [];

  const bridge = (env: Record<string, string> = {}): BridgeProcess => {
    const started = startBridge([], {
      CELERY_BROKER_URL: AMQP_URL,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
      ...env,
    });
    bridges.push(started);
    return started;
  };

  beforeAll(async () => {
    await requireBroker('amqp');
    receiver = await OtlpReceiver.start();
    worker = await startCeleryWorker({
      brokerUrl: AMQP_URL,
      queue,
      pool: 'prefork',
      concurrency: 2,
    });
  }, 60_000);

  afterAll(async () => {
    for (const b of bridges) await b.stop();
    await worker?.stop();
    await receiver?.close();
    await deleteTestQueue(AMQP_URL, queue).catch(() => undefined);
    await deleteBridgeQueue(AMQP_URL, bridgeQueue);
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('keeps a task that was running across a graceful restart: one complete span, right start', async () => {
    const first = bridge({ CELERY_OTEL_BRIDGE_STATE_FILE: stateFile });
    await first.waitForLog(/"msg":"consuming/);
    const sentAfterMs = Date.now();
    const { slow } = (await produce(AMQP_URL, queue, 'slow')) as { slow: string };
    await sleep(1500); // received and started, not finished (it runs 4 s)
    expect(await first.stop()).toBe(0);
    const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as { tasks: Array<{ id: string }> };
    expect(saved.tasks.map((t) => t.id)).toContain(slow);
    await sleep(4000); // the task finishes while no bridge runs; its events wait in the queue
    const second = bridge({ CELERY_OTEL_BRIDGE_STATE_FILE: stateFile });
    await second.waitForLog(/restored unfinished tasks/);
    const spans = await receiver.waitForSpans((all) => hasTasks(all, [slow]));
    await sleep(1000);
    const [span, ...more] = taskSpansOf(receiver.spans, slow);
    expect(more).toHaveLength(0);
    expect(span?.name).toBe('proj.slow');
    expect(span?.attributes['celery.task.state']).toBe('SUCCESS');
    expect(span?.attributes['celery.task.incomplete']).toBeUndefined();
    // Started at task-sent, before the restart, not when the second bridge first saw it.
    expect(Number((span?.startTimeUnixNano ?? 0n) / 1_000_000n)).toBeGreaterThanOrEqual(
      sentAfterMs - 1000,
    );
    expect(Number((span?.startTimeUnixNano ?? 0n) / 1_000_000n)).toBeLessThan(sentAfterMs + 1500);
    const attempts = spans.filter(
      (s) => s.kind === SPAN_KIND_INTERNAL && s.attributes['celery.task.id'] === slow,
    );
    expect(attempts.map((a) => a.attributes['celery.attempt.outcome'])).toEqual(['SUCCESS']);
    expect(await second.stop()).toBe(0);
  });

  it('keeps spans through a collector outage and delivers them when it is back', async () => {
    const running = bridge();
    await running.waitForLog(/"msg":"consuming/);
    receiver.setStatus(503);
    const { adds } = (await produce(AMQP_URL, queue, 'adds', ['20'])) as { adds: string[] };
    await running.waitForLog(/the collector is failing/, 30_000);
    await sleep(3000);
    expect(hasTasks(receiver.spans, adds)).toBe(false);
    receiver.setStatus(200);
    await receiver.waitForSpans((all) => hasTasks(all, adds), 60_000);
    await running.waitForLog(/the collector accepts spans again/);
    for (const id of adds) expect(taskSpansOf(receiver.spans, id)).toHaveLength(1);
    expect(
      running.logLines.filter((line) => line.includes('the collector is failing')),
    ).toHaveLength(1);
    expect(await running.stop()).toBe(0);
  });

  it('ends a task running on a worker killed with kill -9 as lost', async () => {
    const running = bridge();
    await running.waitForLog(/"msg":"consuming/);
    const lonelyQueue = randomName('rel-lost');
    const doomed = await startCeleryWorker({
      brokerUrl: AMQP_URL,
      queue: lonelyQueue,
      // Prefork: the main process keeps flushing events while the child runs the task (a solo
      // worker is blocked inside the task and would send task-started only afterwards).
      pool: 'prefork',
      concurrency: 1,
    });
    try {
      await sleep(2500); // a heartbeat or two, so the bridge knows the worker
      const { slow } = (await produce(AMQP_URL, lonelyQueue, 'slow')) as { slow: string };
      await sleep(1500);
      const killedAt = Date.now();
      doomed.kill9();
      await receiver
        .waitForSpans((all) => hasTasks(all, [slow]), 20_000)
        .catch((error: unknown) => {
          throw new Error(`${String(error)}\nbridge log:\n${running.logLines.join('\n')}`);
        });
      expect(Date.now() - killedAt).toBeLessThan(10_000);
      const [span] = taskSpansOf(receiver.spans, slow);
      expect(span?.attributes['celery.task.incomplete']).toBe('lost');
      expect(span?.attributes['celery.task.state']).toBe('STARTED');
      expect(span?.status.code).toBe(STATUS_CODE_ERROR);
      const attempt = receiver.spans.find(
        (s) => s.kind === SPAN_KIND_INTERNAL && s.attributes['celery.task.id'] === slow,
      );
      expect(attempt?.attributes['celery.attempt.outcome']).toBe('LOST');
      await running.waitForLog(/worker went offline with tasks running/);
    } finally {
      await doomed.stop();
      await deleteTestQueue(AMQP_URL, lonelyQueue).catch(() => undefined);
    }
    expect(await running.stop()).toBe(0);
  });

  it('moves consumption to the standby when the active bridge dies (single active consumer)', async () => {
    const active = bridge();
    await active.waitForLog(/"msg":"consuming/);
    const standby = bridge();
    await standby.waitForLog(/"msg":"consuming/);
    const before = (await produce(AMQP_URL, queue, 'adds', ['3'])) as { adds: string[] };
    await receiver.waitForSpans((all) => hasTasks(all, before.adds));
    active.child.kill('SIGKILL');
    await active.exited;
    const after = (await produce(AMQP_URL, queue, 'adds', ['3'])) as { adds: string[] };
    await receiver.waitForSpans((all) => hasTasks(all, after.adds), 30_000);
    expect(standby.child.exitCode).toBeNull();
  });
});
