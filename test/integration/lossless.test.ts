import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  deleteBridgeQueue,
  type HttpBridgeProcess,
  startBridgeWithHttp,
} from '../support/bridgeProcess.js';
import { AMQP_URL, randomName, REDIS_URL, requireBroker } from '../support/celeryWorker.js';
import { OtlpReceiver, type ReceivedSpan, SPAN_KIND_CONSUMER } from '../support/OtlpReceiver.js';
import { parsePrometheus, sumOf } from '../support/prometheusText.js';
import {
  deleteExchange,
  publishAmqp,
  publishRedis,
  syntheticTasks,
} from '../support/syntheticTasks.js';
import { sleep, until } from '../support/testUtils.js';

/**
 * Nothing lost, end to end (docs/reliability.md "Nothing lost"): a collector slower than the event stream, a
 * backlog drained at full speed, a collector down for minutes, `kill -9` mid-stream and a standby
 * taking over. Each publishes real-format Celery task events to a private events exchange (no
 * other test's events reach these bridges) and asserts that every task id reaches the receiver,
 * once, or (after a kill -9, which makes delivery at-least-once) at least once with its one
 * deterministic span id.
 */

/** How many task spans each task id got, and how many distinct span ids among them. */
function tally(spans: readonly ReceivedSpan[], ids: readonly string[]) {
  const wanted = new Set(ids);
  const spansOf = new Map<string, Set<string>>();
  let total = 0;
  for (const span of spans) {
    const id = span.attributes['celery.task.id'];
    if (span.kind !== SPAN_KIND_CONSUMER || typeof id !== 'string' || !wanted.has(id)) continue;
    total++;
    const set = spansOf.get(id) ?? new Set<string>();
    set.add(span.spanId);
    spansOf.set(id, set);
  }
  const missing = ids.filter((id) => !spansOf.has(id));
  const distinctIds = [...spansOf.values()].every((set) => set.size === 1);
  return { missing, total, duplicates: total - spansOf.size, distinctIds };
}

async function metric(bridge: HttpBridgeProcess, name: string, labels = {}): Promise<number> {
  const response = await fetch(`${bridge.httpUrl}/metrics`);
  return sumOf(parsePrometheus(await response.text()), name, labels);
}

const everyTask = (receiver: OtlpReceiver, ids: readonly string[]) => () =>
  tally(receiver.spans, ids).missing.length === 0;

describe('nothing lost on RabbitMQ', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'bridge-lossless-'));
  let receiver: OtlpReceiver;
  let exchange: string;
  let bridgeQueue: string;
  const bridges: HttpBridgeProcess[] = [];

  const bridge = async (env: Record<string, string> = {}): Promise<HttpBridgeProcess> => {
    const started = await startBridgeWithHttp(
      ['--events-exchange', exchange, '--amqp-queue', bridgeQueue],
      {
        CELERY_BROKER_URL: AMQP_URL,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '200',
        ...env,
      },
    );
    bridges.push(started);
    await started.waitForLog(/consuming/);
    return started;
  };

  beforeAll(async () => {
    await requireBroker('amqp');
  });

  afterEach(async () => {
    await Promise.all(bridges.splice(0).map((b) => b.stop()));
    await receiver.close();
    await deleteBridgeQueue(AMQP_URL, bridgeQueue);
    await deleteExchange(AMQP_URL, exchange);
  });

  afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

  const fresh = async () => {
    receiver = await OtlpReceiver.start();
    exchange = randomName('ev-lossless');
    bridgeQueue = randomName('bridge-lossless');
  };

  it('drains a backlog into a slow collector without dropping a span', async () => {
    await fresh();
    // The bridge's queue exists (a first start declared it); the bridge is down while 6,000
    // tasks' events pile up in it, as after a deploy.
    const first = await bridge();
    await first.stop();
    const tasks = syntheticTasks(6000);
    await publishAmqp(AMQP_URL, exchange, tasks.bodies);
    // A collector that takes 3,000 spans/s and an export queue of 1,024 spans: without flow
    // control most of the burst would be dropped at the export queue.
    receiver.limitSpansPerSecond(3000);
    const restarted = await bridge({ OTEL_BSP_MAX_QUEUE_SIZE: '1024' });
    await receiver.waitForSpans(everyTask(receiver, tasks.ids), 120_000);
    const result = tally(receiver.spans, tasks.ids);
    expect(result.duplicates).toBe(0);
    expect(await metric(restarted, 'celery_otel_bridge_spans_dropped_total')).toBe(0);
    // The bridge did slow down: it was paused while the collector caught up.
    expect(await metric(restarted, 'celery_otel_bridge_intake_paused_time_total')).toBeGreaterThan(
      0,
    );
  }, 240_000);

  it('drops at the export queue only as the last resort, counting every span', async () => {
    await fresh();
    // One message that finishes 300 tasks, into an export queue of 100 spans: flow control
    // pauses after the message, too late for it, so the bound cuts and counts.
    const active = await bridge({ OTEL_BSP_MAX_QUEUE_SIZE: '100' });
    receiver.limitSpansPerSecond(500);
    const tasks = syntheticTasks(300, { perMessage: 900 });
    expect(tasks.bodies).toHaveLength(1);
    await publishAmqp(AMQP_URL, exchange, tasks.bodies);
    const dropped = await until(
      'spans dropped and counted',
      async () =>
        (await metric(active, 'celery_otel_bridge_spans_dropped_total', {
          reason: 'queue_full',
        })) || undefined,
      60_000,
    );
    // Every span the bridge built is either received or counted as dropped: none vanishes.
    const ours = () =>
      receiver.spans.filter((span) =>
        tasks.ids.includes(span.attributes['celery.task.id'] as string),
      );
    const exported = await until(
      'the rest exported',
      async () => {
        const count = await metric(active, 'celery_otel_bridge_spans_exported_total');
        return count > 0 && ours().length === count ? count : undefined;
      },
      60_000,
    );
    expect(dropped).toBeGreaterThan(0);
    expect(exported).toBe(ours().length);
    // Two spans a task (the task and its attempt): what is missing is what was counted.
    expect(exported + dropped).toBe(2 * tasks.ids.length);
    expect(tally(receiver.spans, tasks.ids).duplicates).toBe(0);
  }, 240_000);

  it('keeps a steady stream in the broker while the collector is down for two minutes', async () => {
    await fresh();
    // A prefetch window smaller than the stream, so the backlog visibly stays in the queue.
    const active = await bridge({
      OTEL_BSP_MAX_QUEUE_SIZE: '1024',
      CELERY_OTEL_BRIDGE_AMQP_PREFETCH: '100',
    });
    receiver.setStatus(503);
    const tasks = syntheticTasks(6000);
    // 6,000 tasks over the outage, at an even pace; the export queue holds 1,024 spans.
    const publishing = publishAmqp(AMQP_URL, exchange, tasks.bodies, { perSecond: 5 });
    await sleep(120_000);
    await publishing;
    expect(await metric(active, 'celery_otel_bridge_broker_backlog')).toBeGreaterThan(0);
    receiver.setStatus(200);
    await receiver.waitForSpans(everyTask(receiver, tasks.ids), 180_000);
    expect(tally(receiver.spans, tasks.ids).duplicates).toBe(0);
    expect(await metric(active, 'celery_otel_bridge_spans_dropped_total')).toBe(0);
  }, 400_000);

  it('loses no task when the bridge is killed with kill -9 mid-stream and restarted', async () => {
    await fresh();
    const stateFile = join(stateDir, `${bridgeQueue}.json`);
    const env = { CELERY_OTEL_BRIDGE_STATE_FILE: stateFile };
    const first = await bridge(env);
    const tasks = syntheticTasks(8000);
    const publishing = publishAmqp(AMQP_URL, exchange, tasks.bodies, { perSecond: 150 });
    await until('half the spans', () => Promise.resolve(receiver.spans.length >= 4000), 60_000);
    first.child.kill('SIGKILL');
    await first.exited;
    await bridge(env);
    await publishing;
    await receiver.waitForSpans(everyTask(receiver, tasks.ids), 120_000);
    const result = tally(receiver.spans, tasks.ids);
    // At-least-once across a kill: spans accepted just before it may come again, same span id.
    expect(result.distinctIds).toBe(true);
    console.log(`kill -9: ${tasks.ids.length} tasks, ${result.duplicates} spans sent twice`);
  }, 240_000);

  it('stops gracefully while the collector is down, leaving what is not safe in the broker', async () => {
    await fresh();
    const stateFile = join(stateDir, `${bridgeQueue}.json`);
    const env = { CELERY_OTEL_BRIDGE_STATE_FILE: stateFile };
    const first = await bridge(env);
    receiver.setStatus(503);
    const tasks = syntheticTasks(2000);
    await publishAmqp(AMQP_URL, exchange, tasks.bodies);
    await until(
      'the events handled',
      async () => (await metric(first, 'celery_otel_bridge_events_total')) >= 6000,
      60_000,
    );
    // SIGTERM: the bridge cannot make its checkpoint, gives up after a bounded wait and exits.
    expect(await first.stop()).toBe(0);
    expect(first.logLines.join('\n')).toContain('did not accept the last spans in time');
    receiver.setStatus(200);
    await bridge(env);
    await receiver.waitForSpans(everyTask(receiver, tasks.ids), 120_000);
    expect(tally(receiver.spans, tasks.ids).distinctIds).toBe(true);
  }, 240_000);

  it('loses no task when the active bridge is killed and the standby takes over', async () => {
    await fresh();
    const stateFile = join(stateDir, `${bridgeQueue}.json`);
    const env = { CELERY_OTEL_BRIDGE_STATE_FILE: stateFile };
    const active = await bridge(env);
    // Single-active-consumer: the second bridge waits, consuming nothing.
    const standby = await bridge(env);
    const tasks = syntheticTasks(8000);
    const publishing = publishAmqp(AMQP_URL, exchange, tasks.bodies, { perSecond: 150 });
    await until('half the spans', () => Promise.resolve(receiver.spans.length >= 4000), 60_000);
    expect(await metric(standby, 'celery_otel_bridge_events_total')).toBe(0);
    active.child.kill('SIGKILL');
    await active.exited;
    await publishing;
    await receiver.waitForSpans(everyTask(receiver, tasks.ids), 120_000);
    expect(tally(receiver.spans, tasks.ids).distinctIds).toBe(true);
    await standby.waitForLog(/restored unfinished tasks from the state file/);
    expect(await metric(standby, 'celery_otel_bridge_events_total')).toBeGreaterThan(0);
  }, 240_000);
});

describe('nothing lost on Redis', () => {
  let receiver: OtlpReceiver;
  const bridges: HttpBridgeProcess[] = [];

  beforeAll(async () => {
    await requireBroker('redis');
  });

  afterEach(async () => {
    await Promise.all(bridges.splice(0).map((b) => b.stop()));
    await receiver.close();
  });

  it('absorbs a burst into a slow collector in its read buffer, dropping nothing', async () => {
    receiver = await OtlpReceiver.start();
    const exchange = randomName('ev-lossless');
    const bridge = await startBridgeWithHttp(['--events-exchange', exchange], {
      CELERY_BROKER_URL: REDIS_URL,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '200',
      OTEL_BSP_MAX_QUEUE_SIZE: '1024',
    });
    bridges.push(bridge);
    await bridge.waitForLog(/subscribed|consuming/);
    receiver.limitSpansPerSecond(3000);
    const tasks = syntheticTasks(6000);
    await publishRedis(REDIS_URL, exchange, tasks.bodies);
    await receiver.waitForSpans(everyTask(receiver, tasks.ids), 120_000);
    expect(tally(receiver.spans, tasks.ids).duplicates).toBe(0);
    expect(await metric(bridge, 'celery_otel_bridge_spans_dropped_total')).toBe(0);
    expect(
      await metric(bridge, 'celery_otel_bridge_events_rejected_total', { reason: 'buffer_full' }),
    ).toBe(0);
    expect(await metric(bridge, 'celery_otel_bridge_intake_paused_time_total')).toBeGreaterThan(0);
  }, 240_000);
});
