// Upstream traces end to end: a real producer sends tasks with a W3C `traceparent` header (as
// opentelemetry-instrumentation-celery does), a real Celery worker runs the companion, the bridge
// runs as its CLI and a real OTLP receiver decodes what it exports. A second worker without the
// companion, on the same broker and bridge, runs the same kinds of tasks: their traces keep the
// shape they always had (docs/span-model.md).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BridgeProcess, deleteBridgeQueue, startBridge } from '../support/bridgeProcess.js';
import {
  AMQP_URL,
  type CeleryWorker,
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
  taskIdsWithSpans,
  taskSpansOf,
} from '../support/OtlpReceiver.js';

const UP_CHAIN = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' };
const UP_SPAWN = { traceId: '5bf92f3577b34da6a3ce929d0e0e4736', spanId: '10f067aa0ba902b7' };
const UP_FLAKY = { traceId: '6bf92f3577b34da6a3ce929d0e0e4736', spanId: '20f067aa0ba902b7' };
// The chain's traceparent has the W3C level-2 random-trace-id flag (-03), the spawn's does not.
const UP_TRACESTATE = 'vendor=abc,congo=t61rcWkgMzE';
const tp = (up: { traceId: string; spanId: string }, flags = '01'): string =>
  `00-${up.traceId}-${up.spanId}-${flags}`;
const hex = (id: string): string => id.replace(/-/g, '');
const taskIdOf = (span: ReceivedSpan): string => String(span.attributes['celery.task.id']);

interface Sent {
  chain: string[];
  chainExtra: string;
  spawn: string;
  flaky: string;
  group: string[];
  chord: { header: string[]; callback: string };
  invalid: string;
}

async function produceAll(url: string, queue: string, traced: boolean): Promise<Sent> {
  const opts = (up: { traceId: string; spanId: string }, flags?: string): string[] => [
    '--traceparent',
    tp(up, flags),
    '--tracestate',
    UP_TRACESTATE,
    ...(traced ? ['--trace-scenario'] : []),
  ];
  const chain = await produce(url, queue, 'chain', opts(UP_CHAIN, '03'));
  const spawn = await produce(url, queue, 'spawn', opts(UP_SPAWN));
  const flaky = await produce(url, queue, 'flaky', opts(UP_FLAKY));
  const group = await produce(url, queue, 'group');
  const chord = await produce(url, queue, 'chord');
  const invalid = await produce(url, queue, 'add', ['--traceparent', '00-not-a-valid-header-01']);
  return {
    chain: chain['chain'] as string[],
    chainExtra: chain['traceparent_task'] as string,
    spawn: spawn['spawn'] as string,
    flaky: flaky['flaky'] as string,
    group: group['group'] as string[],
    chord: chord['chord'] as Sent['chord'],
    invalid: invalid['traceparent_task'] as string,
  };
}

const allIds = (sent: Sent): string[] => [
  ...sent.chain,
  sent.chainExtra,
  sent.spawn,
  sent.flaky,
  ...sent.group,
  ...sent.chord.header,
  sent.chord.callback,
  sent.invalid,
];

describe.each([
  { broker: 'amqp' as const, url: AMQP_URL },
  { broker: 'redis' as const, url: REDIS_URL },
])('upstream traces on $broker', ({ broker, url }) => {
  const withQueue = randomName(`upstream-${broker}`);
  const withoutQueue = randomName(`plain-${broker}`);
  const bridgeQueue = randomName('bridge-upstream');
  let receiver: OtlpReceiver;
  let bridge: BridgeProcess | undefined;
  const workers: CeleryWorker[] = [];
  let traced: Sent;
  let plain: Sent;
  let spans: ReceivedSpan[];

  const taskSpan = (id: string): ReceivedSpan => {
    const found = taskSpansOf(spans, id);
    expect(found, `task span of ${id}`).toHaveLength(1);
    return found[0] as ReceivedSpan;
  };
  const childrenOf = (id: string): ReceivedSpan[] =>
    spans.filter(
      (s) => s.kind === SPAN_KIND_CONSUMER && s.attributes['celery.task.parent_id'] === id,
    );

  beforeAll(async () => {
    await requireBroker(broker);
    receiver = await OtlpReceiver.start();
    bridge = startBridge([], {
      CELERY_BROKER_URL: url,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '200',
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
      CELERY_OTEL_BRIDGE_CONNECT_TIMEOUT_MS: '10000',
    });
    await bridge.waitForLog(/"msg":"(consuming|subscribed)/);
    workers.push(
      await startCeleryWorker({
        brokerUrl: url,
        queue: withQueue,
        extraEnv: { CELERY_OTEL_COMPANION: '1' },
      }),
      await startCeleryWorker({ brokerUrl: url, queue: withoutQueue }),
    );
    traced = await produceAll(url, withQueue, true);
    plain = await produceAll(url, withoutQueue, false);
    const expected = [...allIds(traced), ...allIds(plain)];
    spans = await receiver.waitForSpans((all) => {
      const consumer = all.filter((s) => s.kind === SPAN_KIND_CONSUMER);
      const ids = taskIdsWithSpans(consumer);
      const spawned = consumer.filter((s) =>
        [traced.spawn, plain.spawn].includes(String(s.attributes['celery.task.parent_id'])),
      );
      return expected.every((id) => ids.has(id)) && spawned.length === 4;
    }, 60_000);
    spans = [...receiver.spans];
  }, 150_000);

  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    const code = await bridge?.stop();
    await receiver?.close();
    for (const queue of [withQueue, withoutQueue]) {
      await deleteTestQueue(url, queue).catch(() => undefined);
    }
    await deleteBridgeQueue(url, bridgeQueue);
    expect(code).toBe(0);
  });

  describe('with the companion', () => {
    it('puts a chain under the upstream span, in the upstream trace', () => {
      const [first, second, third] = traced.chain.map(taskSpan) as [
        ReceivedSpan,
        ReceivedSpan,
        ReceivedSpan,
      ];
      for (const span of [first, second, third]) expect(span.traceId).toBe(UP_CHAIN.traceId);
      expect(first.parentSpanId).toBe(UP_CHAIN.spanId);
      expect(second.parentSpanId).toBe(first.spanId);
      expect(third.parentSpanId).toBe(second.spanId);
      const extra = taskSpan(traced.chainExtra);
      expect(extra.traceId).toBe(UP_CHAIN.traceId);
      expect(extra.parentSpanId).toBe(UP_CHAIN.spanId);
      const attempts = spans.filter((s) => s.attributes['celery.task.id'] === traced.chain[2]);
      for (const attempt of attempts) expect(attempt.traceId).toBe(UP_CHAIN.traceId);
    });

    it("carries the upstream tracestate and trace flags to every span of the tree, descendants' too", () => {
      const tree = (ids: string[]): ReceivedSpan[] =>
        spans.filter((s) => ids.includes(String(s.attributes['celery.task.id'])));
      const chainSpans = tree(traced.chain);
      const spawnSpans = tree([traced.spawn, ...childrenOf(traced.spawn).map(taskIdOf)]);
      // Task and attempt spans of the root and of every descendant (chain steps 2 and 3, the
      // two spawned tasks), not only the root task span.
      expect(chainSpans.length).toBe(6);
      expect(spawnSpans.length).toBe(6);
      for (const span of [...chainSpans, ...spawnSpans]) {
        expect(span.traceState, span.name).toBe(UP_TRACESTATE);
      }
      // Sampled, and the random-trace-id flag kept where the upstream set it (-03), the trace id
      // being the upstream one; HAS_IS_REMOTE (0x100) is always written.
      for (const span of chainSpans) expect(span.flags & 0xff, span.name).toBe(0x03);
      for (const span of spawnSpans) expect(span.flags & 0xff, span.name).toBe(0x01);
      // Without the companion nothing is known of the upstream context.
      for (const span of tree(plain.chain)) expect(span.traceState).toBe('');
    });

    it('puts a task that spawns tasks, and its children, under the upstream span', () => {
      const spawn = taskSpan(traced.spawn);
      expect(spawn.traceId).toBe(UP_SPAWN.traceId);
      expect(spawn.parentSpanId).toBe(UP_SPAWN.spanId);
      const children = childrenOf(traced.spawn);
      expect(children).toHaveLength(2);
      for (const child of children) {
        expect(child.traceId).toBe(UP_SPAWN.traceId);
        expect(child.parentSpanId).toBe(spawn.spanId);
      }
    });

    it('keeps every retry of a traced task under the upstream span', () => {
      const flaky = taskSpan(traced.flaky);
      expect(flaky.traceId).toBe(UP_FLAKY.traceId);
      expect(flaky.parentSpanId).toBe(UP_FLAKY.spanId);
      const attempts = spans.filter(
        (s) => s.kind !== SPAN_KIND_CONSUMER && s.attributes['celery.task.id'] === traced.flaky,
      );
      expect(attempts.map((a) => a.attributes['celery.attempt.outcome']).sort()).toEqual([
        'RETRY',
        'RETRY',
        'SUCCESS',
      ]);
      for (const attempt of attempts) {
        expect(attempt.traceId).toBe(UP_FLAKY.traceId);
        expect(attempt.parentSpanId).toBe(flaky.spanId);
      }
    });

    it('makes a group one trace, its id the group id', () => {
      const members = traced.group.map(taskSpan);
      const groupId = String(members[0]?.attributes['celery.group.id']);
      expect(groupId).toMatch(/^[0-9a-f-]{36}$/);
      for (const member of members) {
        expect(member.attributes['celery.group.id']).toBe(groupId);
        expect(member.traceId).toBe(hex(groupId));
        expect(member.parentSpanId).toBe('');
      }
    });

    it('makes a chord one trace, the callback linked to every header task', () => {
      const headers = traced.chord.header.map(taskSpan);
      const groupId = String(headers[0]?.attributes['celery.group.id']);
      for (const header of headers) {
        expect(header.traceId).toBe(hex(groupId));
        expect(header.attributes['celery.chord.callback_id']).toBe(traced.chord.callback);
      }
      const callback = taskSpan(traced.chord.callback);
      expect(callback.traceId).toBe(hex(groupId));
      expect(headers.map((h) => h.spanId)).toContain(callback.parentSpanId);
      expect(callback.links.map((l) => l.spanId)).toEqual(headers.map((h) => h.spanId));
      for (const link of callback.links) {
        expect(link.traceId).toBe(hex(groupId));
        expect(link.attributes['celery.link.type']).toBe('chord_header');
      }
    });

    it('ignores an invalid traceparent: the task keeps its own trace', () => {
      const span = taskSpan(traced.invalid);
      expect(span.traceId).toBe(hex(traced.invalid));
      expect(span.parentSpanId).toBe('');
    });
  });

  describe('without the companion', () => {
    it('keeps the pre-existing trace shape: trace id from the root task, no upstream, no links', () => {
      const [first, second, third] = plain.chain.map(taskSpan) as [
        ReceivedSpan,
        ReceivedSpan,
        ReceivedSpan,
      ];
      for (const span of [first, second, third])
        expect(span.traceId).toBe(hex(first.attributes['celery.task.id'] as string));
      expect(first.parentSpanId).toBe('');
      expect(second.parentSpanId).toBe(first.spanId);
      expect(third.parentSpanId).toBe(second.spanId);
      expect(taskSpan(plain.chainExtra).traceId).toBe(hex(plain.chainExtra));
      expect(taskSpan(plain.flaky).traceId).toBe(hex(plain.flaky));
      expect(taskSpan(plain.flaky).parentSpanId).toBe('');
      expect(childrenOf(plain.spawn)).toHaveLength(2);
      for (const child of childrenOf(plain.spawn)) expect(child.traceId).toBe(hex(plain.spawn));
      for (const id of [...plain.group, ...plain.chord.header]) {
        const span = taskSpan(id);
        expect(span.traceId).toBe(hex(id));
        expect(span.parentSpanId).toBe('');
        expect(span.attributes['celery.group.id']).toBeUndefined();
      }
      const callback = taskSpan(plain.chord.callback);
      expect(callback.links).toEqual([]);
      expect(callback.traceId).toBe(hex(String(callback.attributes['celery.task.root_id'])));
    });
  });
});
