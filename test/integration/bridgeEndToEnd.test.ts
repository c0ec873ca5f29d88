import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BridgeProcess, deleteBridgeQueue, startBridge } from '../support/bridgeProcess.js';
import {
  AMQP_URL,
  type CeleryWorker,
  type ProducedAll,
  REDIS_URL,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import {
  OtlpReceiver,
  type ReceivedSpan,
  SPAN_KIND_CONSUMER,
  SPAN_KIND_INTERNAL,
  STATUS_CODE_ERROR,
  taskIdsWithSpans,
  taskSpansOf,
} from '../support/OtlpReceiver.js';

/**
 * The whole product against the real thing: a real Celery 5 worker on a real broker runs chains,
 * groups, chords, failures, retries, revokes, rejects and tasks that spawn tasks; the bridge runs
 * as its CLI; a real OTLP/HTTP receiver decodes what it exports; the trace shape is asserted.
 */
const cases = [
  {
    broker: 'amqp' as const,
    url: AMQP_URL,
    protocol: 'http/protobuf',
    compression: 'gzip',
    system: 'rabbitmq',
  },
  {
    broker: 'redis' as const,
    url: REDIS_URL,
    protocol: 'http/json',
    compression: 'none',
    system: 'redis',
  },
];

describe.each(cases)(
  'bridge on $broker exporting $protocol',
  ({ broker, url, protocol, compression, system }) => {
    const queue = randomName(`e2e-${broker}`);
    const bridgeQueue = randomName('bridge-e2e');
    let receiver: OtlpReceiver;
    let worker: CeleryWorker | undefined;
    let bridge: BridgeProcess | undefined;
    let sent: ProducedAll;
    let spans: ReceivedSpan[];

    const taskSpan = (id: string): ReceivedSpan => {
      const found = taskSpansOf(spans, id);
      expect(found, `task span of ${id}`).toHaveLength(1);
      return found[0] as ReceivedSpan;
    };
    const attempts = (id: string): ReceivedSpan[] =>
      spans
        .filter((s) => s.kind === SPAN_KIND_INTERNAL && s.attributes['celery.task.id'] === id)
        .sort(
          (a, b) => Number(a.attributes['celery.attempt']) - Number(b.attributes['celery.attempt']),
        );

    beforeAll(async () => {
      await requireBroker(broker);
      receiver = await OtlpReceiver.start();
      bridge = startBridge([], {
        CELERY_BROKER_URL: url,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
        OTEL_EXPORTER_OTLP_COMPRESSION: compression,
        OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20s3cret-token',
        OTEL_BSP_SCHEDULE_DELAY: '200',
        OTEL_SERVICE_NAME: 'e2e-workers',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test',
        CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
        CELERY_OTEL_BRIDGE_CONNECT_TIMEOUT_MS: '10000',
      });
      await bridge.waitForLog(/"msg":"(consuming|subscribed)/);
      worker = await startCeleryWorker({
        brokerUrl: url,
        queue,
        pool: 'prefork',
        concurrency: 2,
      });
      sent = (await produce(url, queue, 'all')) as unknown as ProducedAll;
      const expected = [
        ...sent.chain,
        ...sent.group,
        ...sent.chord.header,
        sent.chord.callback,
        sent.fail,
        sent.flaky,
        sent.spawn,
        sent.revoked,
        sent.rejected,
        sent.terminated,
        ...sent.adds,
      ];
      spans = await receiver.waitForSpans((all) => {
        const ids = taskIdsWithSpans(all);
        const spawned = all.filter(
          (s) =>
            s.attributes['celery.task.parent_id'] === sent.spawn && s.kind === SPAN_KIND_CONSUMER,
        );
        return expected.every((id) => ids.has(id)) && spawned.length === 2;
      }, 60_000);
      // Anything late (a second span for the same task) would arrive within a few export cycles.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      spans = [...receiver.spans];
    }, 150_000);

    afterAll(async () => {
      await worker?.stop();
      const code = await bridge?.stop();
      await receiver?.close();
      await deleteTestQueue(url, queue).catch(() => undefined);
      await deleteBridgeQueue(url, bridgeQueue);
      expect(code).toBe(0);
    });

    it('exports in the configured protocol, with resource and headers', () => {
      const traceRequests = receiver.requests.filter((r) => r.path === '/v1/traces');
      expect(traceRequests.length).toBeGreaterThan(0);
      for (const request of traceRequests) {
        expect(request.contentType).toBe(
          protocol === 'http/json' ? 'application/json' : 'application/x-protobuf',
        );
        expect(request.contentEncoding).toBe(compression === 'gzip' ? 'gzip' : 'identity');
        expect(request.headers['authorization']).toBe('Bearer s3cret-token');
      }
      expect(receiver.errors).toEqual([]);
      expect(spans[0]?.resource).toMatchObject({
        'service.name': 'e2e-workers',
        'deployment.environment': 'test',
      });
      expect(spans[0]?.scope.name).toBe('celery-otel-bridge');
    });

    it('makes exactly one task span per task, named after the task', () => {
      const consumer = spans.filter((s) => s.kind === SPAN_KIND_CONSUMER);
      const ids = consumer.map((s) => String(s.attributes['celery.task.id']));
      expect(new Set(ids).size).toBe(ids.length);
      expect(taskSpan(sent.adds[0] as string).name).toBe('proj.add');
      expect(taskSpan(sent.adds[0] as string).attributes).toMatchObject({
        'celery.task.state': 'SUCCESS',
        'messaging.system': system,
        'messaging.destination.name': queue,
        'messaging.message.id': sent.adds[0],
        'celery.worker.hostname': worker?.hostname,
        'celery.task.retries': 0,
      });
    });

    it('nests a chain in one trace, each step under the previous one', () => {
      const [first, second, third] = sent.chain.map(taskSpan) as [
        ReceivedSpan,
        ReceivedSpan,
        ReceivedSpan,
      ];
      expect(first.traceId).toBe((sent.chain[0] as string).replace(/-/g, ''));
      expect(second.traceId).toBe(first.traceId);
      expect(third.traceId).toBe(first.traceId);
      expect(first.parentSpanId).toBe('');
      expect(second.parentSpanId).toBe(first.spanId);
      expect(third.parentSpanId).toBe(second.spanId);
      expect([first.name, second.name, third.name]).toEqual(['proj.add', 'proj.mul', 'proj.add']);
    });

    it('nests tasks spawned with .delay() under the spawning task', () => {
      const parent = taskSpan(sent.spawn);
      const children = spans.filter(
        (s) =>
          s.kind === SPAN_KIND_CONSUMER && s.attributes['celery.task.parent_id'] === sent.spawn,
      );
      expect(children).toHaveLength(2);
      for (const child of children) {
        expect(child.parentSpanId).toBe(parent.spanId);
        expect(child.traceId).toBe(parent.traceId);
      }
    });

    it('exports every group and chord task, and the chord callback', () => {
      for (const id of [...sent.group, ...sent.chord.header])
        expect(taskSpan(id).attributes['celery.task.state']).toBe('SUCCESS');
      const callback = taskSpan(sent.chord.callback);
      expect(callback.name).toBe('proj.xsum');
      expect(callback.attributes['celery.task.state']).toBe('SUCCESS');
    });

    it('puts the chained Python traceback on the failed task', () => {
      const span = taskSpan(sent.fail);
      expect(span.status.code).toBe(STATUS_CODE_ERROR);
      expect(span.attributes['celery.task.state']).toBe('FAILURE');
      const exception = span.events.find((e) => e.name === 'exception');
      expect(exception?.attributes['exception.type']).toBe('RuntimeError');
      expect(exception?.attributes['exception.message']).toBe('payment step failed');
      const stack = String(exception?.attributes['exception.stacktrace']);
      expect(stack).toContain('ValueError');
      expect(stack).toContain(
        'The above exception was the direct cause of the following exception',
      );
      expect(stack.trimEnd().endsWith('RuntimeError: payment step failed')).toBe(true);
    });

    it('shows each retry as an attempt with its exception, and the final outcome on the task', () => {
      const span = taskSpan(sent.flaky);
      expect(span.attributes).toMatchObject({
        'celery.task.state': 'SUCCESS',
        'celery.task.retries': 2,
      });
      expect(span.parentSpanId).toBe('');
      const runs = attempts(sent.flaky);
      expect(runs.map((a) => a.attributes['celery.attempt.outcome'])).toEqual([
        'RETRY',
        'RETRY',
        'SUCCESS',
      ]);
      expect(runs.map((a) => a.name)).toEqual([
        'run/proj.flaky',
        'run/proj.flaky',
        'run/proj.flaky',
      ]);
      for (const [index, run] of runs.slice(0, 2).entries()) {
        expect(run.parentSpanId).toBe(span.spanId);
        const exception = run.events.find((e) => e.name === 'exception');
        expect(exception?.attributes['exception.type']).toBe('ConnectionError');
        expect(exception?.attributes['exception.message']).toBe(`transient, try ${index}`);
      }
      // Queue wait and execution apart: the task span starts before its first attempt.
      expect(span.startTimeUnixNano).toBeLessThanOrEqual(
        (runs[0] as ReceivedSpan).startTimeUnixNano,
      );
      expect(span.endTimeUnixNano).toBeGreaterThanOrEqual(
        (runs[2] as ReceivedSpan).endTimeUnixNano,
      );
    });

    it('ends revoked, terminated and rejected tasks as such', () => {
      const revoked = taskSpan(sent.revoked);
      expect(revoked.attributes['celery.task.state']).toBe('REVOKED');
      expect(attempts(sent.revoked)).toHaveLength(0);
      const terminated = taskSpan(sent.terminated);
      expect(terminated.attributes['celery.task.state']).toBe('REVOKED');
      expect(
        terminated.events.find((e) => e.name === 'task-revoked')?.attributes[
          'celery.revoke.terminated'
        ],
      ).toBe(true);
      expect(attempts(sent.terminated).map((a) => a.attributes['celery.attempt.outcome'])).toEqual([
        'REVOKED',
      ]);
      const rejected = taskSpan(sent.rejected);
      expect(rejected.attributes['celery.task.state']).toBe('REJECTED');
    });

    it('keeps args, kwargs and results out of the export by default', () => {
      for (const span of spans) {
        expect(span.attributes['celery.task.args']).toBeUndefined();
        expect(span.attributes['celery.task.kwargs']).toBeUndefined();
        expect(span.attributes['celery.task.result']).toBeUndefined();
      }
    });

    it('never logs the OTLP headers', () => {
      expect(bridge?.logLines.join('\n')).not.toContain('s3cret-token');
    });
  },
);
