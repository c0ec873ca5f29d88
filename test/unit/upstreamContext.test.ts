import { SpanKind } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { spanIdFor, traceIdFor } from '../../src/shared/deterministicIds.js';
import { TaskAssembler } from '../../src/assemble/TaskAssembler.js';
import type { TaskContextEvent, TaskEvent } from '../../src/decode/CeleryEvent.js';
import { parseTraceparent } from '../../src/decode/traceContext.js';
import { amqpCompanionFixtureMessages } from '../support/fixtures.js';
import { assemble, assemblerEventsOf, decodeAll, spanSummary } from '../support/pipeline.js';
import { interleaved, shuffled } from '../support/eventOrder.js';

type AnyTaskEvent = TaskEvent | TaskContextEvent;

const decoded = decodeAll(amqpCompanionFixtureMessages());
const events = assemblerEventsOf(decoded.events);
/** The same stream as a worker without the companion sends it. */
const withoutCompanion = events.filter((e) => e.type !== 'task-otel-context');

const hex = (id: string): string => id.replace(/-/g, '');
const upstream = {
  chain: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' },
  spawn: { traceId: '5bf92f3577b34da6a3ce929d0e0e4736', spanId: '10f067aa0ba902b7' },
  flaky: { traceId: '6bf92f3577b34da6a3ce929d0e0e4736', spanId: '20f067aa0ba902b7' },
};
const ids = {
  chain: [
    'eaf630f1-6097-45f4-8c19-3a3d299ff5be',
    '6941ef45-7cc4-4f59-8756-f8436b58be40',
    '8ec26d02-db87-4c0b-a0e0-442a581f7034',
  ],
  chainExtra: '1fece6d5-7853-49a3-bab3-23b81031a1e7',
  spawn: '3280c421-b66f-4fb3-899d-8eca19f00d8e',
  flaky: '641483bd-7993-4cd0-9e20-a478440e003e',
  group: [
    'f961e023-8943-40fb-8230-07509d09e84c',
    '778308a6-864e-4bff-8158-5ec6c9649cdf',
    '99432674-d551-46c6-9419-adee92f974c0',
  ],
  groupId: '407ac943-b625-42bd-a887-5a595c89e708',
  chordHeader: [
    'd34732bb-3643-41c1-9464-e62fe5cd15aa',
    '7d01caef-fdc6-4433-bac9-55922cb13a35',
    'ec9a4170-4c2b-4639-ab85-1f06baeaca60',
  ],
  chordGroupId: '775461f7-eb40-4a29-a450-906f39c1e0c5',
  chordCallback: '11642435-5331-47bc-8814-86985533e3d3',
  plain: '292750e5-d88a-47a4-a31a-90bc68382f95',
  badTraceparent: 'f29698d2-c775-46d8-a837-fc6be7a4b476',
};
const taskIds = new Set(events.map((e) => e.uuid));

function taskSpan(spans: ReadableSpan[], id: string): ReadableSpan {
  const found = spans.filter(
    (s) => s.kind === SpanKind.CONSUMER && s.attributes['celery.task.id'] === id,
  );
  expect(found, `task span of ${id}`).toHaveLength(1);
  return found[0] as ReadableSpan;
}

function childrenOf(spans: ReadableSpan[], parentTaskId: string): ReadableSpan[] {
  return spans.filter(
    (s) => s.kind === SpanKind.CONSUMER && s.attributes['celery.task.parent_id'] === parentTaskId,
  );
}

/**
 * Where each span sits: trace, parent, links. (Times are left out: a retried task's first
 * `task-sent` arriving after the task was exported moves its start whether or not the companion
 * runs; TaskAssembler.test.ts covers timing under disorder.)
 */
const placement = (spans: ReadableSpan[]): Record<string, unknown>[] =>
  spans
    .map((s) => {
      const { traceId, spanId, parentSpanId, name, attributes } = spanSummary(s);
      return {
        name,
        traceId,
        spanId,
        parentSpanId,
        parentTraceId: s.parentSpanContext?.traceId,
        parentRemote: s.parentSpanContext?.isRemote,
        links: s.links,
        group: (attributes as Record<string, unknown>)['celery.group.id'],
      };
    })
    .sort((a, b) => String(a.spanId).localeCompare(String(b.spanId)));

describe('traceparent validation (W3C version 00)', () => {
  it('accepts a version-00 header and refuses everything else', () => {
    expect(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')).toEqual({
      valid: true,
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      flags: 1,
    });
    for (const bad of [
      'not-a-traceparent',
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01', // uppercase
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // zero trace id
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // zero span id
      '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // other version
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
      '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01', // short trace id
      ' 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '',
    ]) {
      expect(parseTraceparent(bad).valid, bad).toBe(false);
    }
  });

  it('decodes the companion event, and drops and counts an invalid traceparent only', () => {
    const contexts = decoded.events.filter(
      (e): e is TaskContextEvent => e.type === 'task-otel-context',
    );
    // One per received message that carried context: 6 traced roots, 3 group, 3 chord header.
    expect(contexts).toHaveLength(13);
    const chainRoot = contexts.find((e) => e.uuid === ids.chain[0]);
    expect(chainRoot).toMatchObject({
      hostname: 'w1@vm',
      rootId: ids.chain[0],
      upstream: { ...upstream.chain, traceFlags: 1, traceState: 'vendor=abc' },
    });
    expect(contexts.find((e) => e.uuid === ids.chordHeader[1])).toMatchObject({
      group: ids.chordGroupId,
      groupIndex: 1,
      chord: ids.chordCallback,
    });
    const bad = contexts.find((e) => e.uuid === ids.badTraceparent);
    expect(bad?.upstream).toBeUndefined();
    expect(decoded.rejections.map((r) => r.reason)).toEqual(['invalid_traceparent']);
    expect(decoded.rejections[0]?.detail).not.toContain('not-a-traceparent');
  });
});

describe('upstream trace context from the worker companion', () => {
  const run = assemble(events);

  it('makes one complete span per task, none held for the context', () => {
    const consumer = run.spans.filter((s) => s.kind === SpanKind.CONSUMER);
    expect(consumer).toHaveLength(taskIds.size);
    expect(run.finished.map((t) => t.completeness).every((c) => c === 'complete')).toBe(true);
    // Nothing waited for the grace period: everything was out before the clock moved.
    const noClock = assemble(events, {}, {}, false);
    expect(noClock.finished).toHaveLength(taskIds.size);
  });

  it('puts a chain under the upstream span, in the upstream trace', () => {
    const [first, second, third] = ids.chain.map((id) => taskSpan(run.spans, id)) as [
      ReadableSpan,
      ReadableSpan,
      ReadableSpan,
    ];
    for (const span of [first, second, third]) {
      expect(span.spanContext().traceId).toBe(upstream.chain.traceId);
    }
    expect(first.parentSpanContext).toMatchObject({ ...upstream.chain, isRemote: true });
    expect(first.parentSpanContext?.traceState?.serialize()).toBe('vendor=abc');
    expect(first.spanContext().traceState?.serialize()).toBe('vendor=abc');
    expect(second.parentSpanContext?.spanId).toBe(first.spanContext().spanId);
    expect(third.parentSpanContext?.spanId).toBe(second.spanContext().spanId);
    for (const attempt of run.spans.filter(
      (s) =>
        s.kind === SpanKind.INTERNAL && ids.chain.includes(String(s.attributes['celery.task.id'])),
    )) {
      expect(attempt.spanContext().traceId).toBe(upstream.chain.traceId);
    }
  });

  it('puts tasks spawned by a traced task in the upstream trace, under the spawning task', () => {
    const spawn = taskSpan(run.spans, ids.spawn);
    expect(spawn.spanContext().traceId).toBe(upstream.spawn.traceId);
    expect(spawn.parentSpanContext?.spanId).toBe(upstream.spawn.spanId);
    const children = childrenOf(run.spans, ids.spawn);
    expect(children).toHaveLength(2);
    for (const child of children) {
      expect(child.spanContext().traceId).toBe(upstream.spawn.traceId);
      expect(child.parentSpanContext?.spanId).toBe(spawn.spanContext().spanId);
      expect(child.parentSpanContext?.isRemote).toBeFalsy();
    }
  });

  it('keeps every attempt of a retried task in the upstream trace (the retry carries no header)', () => {
    const flaky = taskSpan(run.spans, ids.flaky);
    expect(flaky.spanContext().traceId).toBe(upstream.flaky.traceId);
    expect(flaky.parentSpanContext?.spanId).toBe(upstream.flaky.spanId);
    const attempts = run.spans.filter(
      (s) => s.kind === SpanKind.INTERNAL && s.attributes['celery.task.id'] === ids.flaky,
    );
    expect(attempts).toHaveLength(3);
    for (const attempt of attempts)
      expect(attempt.spanContext().traceId).toBe(upstream.flaky.traceId);
  });

  it('puts the members of a group in one trace whose id is the group id, each a root', () => {
    for (const [index, id] of ids.group.entries()) {
      const span = taskSpan(run.spans, id);
      expect(span.spanContext().traceId, `member ${index}`).toBe(hex(ids.groupId));
      expect(span.parentSpanContext).toBeUndefined();
      expect(span.attributes['celery.group.id']).toBe(ids.groupId);
    }
  });

  it('puts a chord in one trace and links its callback to every header task', () => {
    for (const [index, id] of ids.chordHeader.entries()) {
      const span = taskSpan(run.spans, id);
      expect(span.spanContext().traceId).toBe(hex(ids.chordGroupId));
      expect(span.attributes).toMatchObject({
        'celery.group.id': ids.chordGroupId,
        'celery.group.index': index,
        'celery.chord.callback_id': ids.chordCallback,
      });
    }
    const callback = taskSpan(run.spans, ids.chordCallback);
    expect(callback.spanContext().traceId).toBe(hex(ids.chordGroupId));
    // Celery makes the header task that completed the chord the callback's parent and root.
    expect(callback.parentSpanContext?.spanId).toBe(spanIdFor(ids.chordHeader[2] as string));
    expect(callback.links.map((l) => l.context.spanId)).toEqual(ids.chordHeader.map(spanIdFor));
    expect(callback.links.map((l) => l.context.traceId)).toEqual(
      ids.chordHeader.map(() => hex(ids.chordGroupId)),
    );
    expect(callback.links[1]?.attributes).toEqual({
      'celery.link.type': 'chord_header',
      'celery.task.id': ids.chordHeader[1],
      'celery.group.index': 1,
    });
  });

  it("carries the root's tracestate and trace flags to every descendant's and attempt's span", () => {
    // The chain's root message carried `-01` and `tracestate: vendor=abc`; the same capture with
    // the W3C level-2 random-trace-id flag set (`-03`) must be accepted and keep the flag.
    const random = assemble(
      assemblerEventsOf(
        decodeAll(
          amqpCompanionFixtureMessages().map((m) => ({
            ...m,
            body: Buffer.from(
              m.body
                .toString('utf8')
                .replaceAll(`${upstream.chain.spanId}-01`, `${upstream.chain.spanId}-03`),
            ),
          })),
        ).events,
      ),
    );
    for (const [spans, flags] of [
      [run.spans, 0x01],
      [random.spans, 0x03],
    ] as const) {
      const tree = spans.filter((s) => ids.chain.includes(String(s.attributes['celery.task.id'])));
      // Three chain steps, each a task span and an attempt span.
      expect(tree).toHaveLength(6);
      for (const span of tree) {
        expect(span.spanContext().traceState?.serialize(), span.name).toBe('vendor=abc');
        expect(span.spanContext().traceFlags, span.name).toBe(flags);
      }
      // A tree without upstream context carries none.
      const plain = spans.filter((s) => s.attributes['celery.task.id'] === ids.plain);
      expect(plain).toHaveLength(2);
      for (const span of plain) {
        expect(span.spanContext().traceState).toBeUndefined();
        expect(span.spanContext().traceFlags).toBe(0x01);
      }
    }
  });

  it('changes nothing for plain tasks and for an invalid traceparent', () => {
    for (const id of [ids.plain, ids.badTraceparent]) {
      const span = taskSpan(run.spans, id);
      expect(span.spanContext().traceId).toBe(hex(id));
      expect(span.parentSpanContext).toBeUndefined();
      expect(span.links).toEqual([]);
    }
  });

  it('without the companion gives the README trace shape, with nothing remembered', () => {
    const plain = assemble(withoutCompanion);
    expect(plain.finished.every((t) => t.trace === undefined)).toBe(true);
    for (const span of plain.spans.filter((s) => s.kind === SpanKind.CONSUMER)) {
      const root = String(
        span.attributes['celery.task.root_id'] ?? span.attributes['celery.task.id'],
      );
      expect(span.spanContext().traceId).toBe(traceIdFor(root));
      expect(span.links).toEqual([]);
      expect(span.parentSpanContext?.isRemote).toBeFalsy();
      expect(span.attributes['celery.group.id']).toBeUndefined();
    }
    expect(taskSpan(plain.spans, ids.chain[0] as string).parentSpanContext).toBeUndefined();
  });
});

describe('upstream context under real-world disorder', () => {
  const baseline = placement(assemble(events).spans);

  it("gives the same spans however the processes' event streams interleave", () => {
    for (let seed = 1; seed <= 60; seed++) {
      const run = assemble(interleaved(events, seed));
      expect(placement(run.spans), `seed ${seed}`).toEqual(baseline);
      expect(run.finished.every((t) => t.completeness === 'complete')).toBe(true);
    }
  });

  it('keeps every task tree in one consistent trace in any order, links included', () => {
    for (let seed = 1; seed <= 80; seed++) {
      const run = assemble(shuffled(events, seed));
      const consumer = run.spans.filter((s) => s.kind === SpanKind.CONSUMER);
      expect(consumer, `seed ${seed}`).toHaveLength(taskIds.size);
      const byTask = new Map(consumer.map((s) => [String(s.attributes['celery.task.id']), s]));
      const bySpanId = new Map(run.spans.map((s) => [s.spanContext().spanId, s]));
      for (const span of run.spans) {
        const parent = span.parentSpanContext;
        if (parent === undefined) continue;
        const local = bySpanId.get(parent.spanId);
        if (local !== undefined) {
          // A parent inside the export is in the same trace: no tree is ever split.
          expect(parent.traceId, `seed ${seed}`).toBe(local.spanContext().traceId);
          expect(span.spanContext().traceId, `seed ${seed}`).toBe(local.spanContext().traceId);
        } else {
          // Otherwise it is the upstream span, and the whole tree went with it.
          expect(parent.isRemote, `seed ${seed}: ${span.name}`).toBe(true);
          expect(span.spanContext().traceId).toBe(parent.traceId);
        }
      }
      for (const link of byTask.get(ids.chordCallback)?.links ?? []) {
        const header = byTask.get(String(link.attributes?.['celery.task.id']));
        expect(link.context.traceId, `seed ${seed}`).toBe(header?.spanContext().traceId);
      }
    }
  });

  it('holds a finished task while its root context may still come, then releases it', () => {
    const root = ids.chain[0] as string;
    // Steps 2 and 3 of the chain are complete, but their root's worker stream is late.
    const rootEvents = events.filter((e) => e.uuid === root);
    const others = events.filter((e) => e.uuid !== root);
    const run = assemble(others, {}, {}, false);
    const step3 = ids.chain[2] as string;
    expect(run.spans.filter((s) => s.attributes['celery.task.id'] === step3)).toHaveLength(0);
    run.advance(1000);
    expect(run.spans.filter((s) => s.attributes['celery.task.id'] === step3)).toHaveLength(0);
    for (const event of rootEvents) {
      if (event.type === 'task-otel-context') run.assembler.handleContext(event);
      else run.assembler.handle(event);
    }
    for (const id of ids.chain) {
      const span = taskSpan(run.spans, id);
      expect(span.spanContext().traceId).toBe(upstream.chain.traceId);
    }
    expect(run.finished.every((t) => t.completeness === 'complete')).toBe(true);
  });

  it('keeps a tree whole in its own trace when the root context comes after the grace period', () => {
    const root = ids.chain[0] as string;
    const rootEvents = events.filter((e) => e.uuid === root);
    const others = events.filter((e) => e.uuid !== root);
    const run = assemble(others, {}, {}, false);
    // Past the grace period the steps go out in the trace Celery ids give them.
    run.advance(2001);
    const step2 = taskSpan(run.spans, ids.chain[1] as string);
    expect(step2.spanContext().traceId).toBe(hex(root));
    expect(run.finished.find((t) => t.record.id === ids.chain[1])?.completeness).toBe('complete');
    for (const event of rootEvents) {
      if (event.type === 'task-otel-context') run.assembler.handleContext(event);
      else run.assembler.handle(event);
    }
    run.advance(2001);
    const rootSpan = taskSpan(run.spans, root);
    // The root follows its tree, and links to the upstream span instead of hanging under it.
    expect(rootSpan.spanContext().traceId).toBe(hex(root));
    expect(rootSpan.parentSpanContext).toBeUndefined();
    expect(rootSpan.links).toHaveLength(1);
    expect(rootSpan.links[0]?.context).toMatchObject(upstream.chain);
    expect(rootSpan.links[0]?.attributes).toEqual({ 'celery.link.type': 'upstream' });
  });

  it('counts a late root context and bounded-memory evictions', () => {
    const counts = { late: 0, evicted: 0 };
    const root = ids.chain[0] as string;
    const rootEvents = events.filter((e) => e.uuid === root);
    const others = events.filter((e) => e.uuid !== root);
    let now = 0;
    const assembler = new TaskAssembler(
      {
        maxInFlightTasks: 1000,
        finishGraceMs: 2000,
        maxFinishedTaskIds: 1000,
        captureArgs: false,
        captureResult: false,
        maxTraceContexts: 4,
      },
      () => undefined,
      {
        lateEvent: () => undefined,
        duplicateEvent: () => undefined,
        tasksEvicted: () => undefined,
        lateTraceContext: () => counts.late++,
        traceContextsEvicted: (n) => (counts.evicted += n),
      },
      () => now,
    );
    const feed = (list: AnyTaskEvent[]): void => {
      for (const event of list) {
        if (event.type === 'task-otel-context') assembler.handleContext(event);
        else assembler.handle(event);
      }
    };
    feed(others);
    now += 2001;
    assembler.tick();
    feed(rootEvents);
    expect(counts.late).toBe(1);
    expect(counts.evicted).toBeGreaterThan(0);
  });

  it('does not hold anything while no worker runs the companion', () => {
    const root = ids.chain[0] as string;
    const others = withoutCompanion.filter((e) => e.uuid !== root);
    const run = assemble(others, {}, {}, false);
    expect(taskSpan(run.spans, ids.chain[2] as string).spanContext().traceId).toBe(hex(root));
  });
});
