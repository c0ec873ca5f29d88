// Task spans' resources: one per worker node and service (host.name, service.instance.id), as
// separate ResourceSpans in the OTLP request, and service names mapped by queue or task-name
// prefix (--service-name-map), on real captured events.
import { SpanKind } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { parseServiceNameRules } from '../../src/config/parseServiceNameRules.js';
import type { TaskEvent } from '../../src/decode/CeleryEvent.js';
import { ProtobufSpanSerializer } from '../../src/export/ProtobufSpanSerializer.js';
import { TaskResources } from '../../src/export/TaskResources.js';
import { configError, runOptions } from '../support/configHelpers.js';
import { amqpFixtureMessages } from '../support/fixtures.js';
import { decodeTraceRequest } from '../support/OtlpReceiver.js';
import { assemble, assemblerEventsOf, decodeAll } from '../support/pipeline.js';

const BASE = { 'service.name': 'celery', 'deployment.environment': 'test' };
// The capture has one worker, w1@vm; proj.fail's worker events are moved to a second one.
const events = assemblerEventsOf(decodeAll(amqpFixtureMessages()).events);
const failIds = new Set(
  events.filter((e) => (e as TaskEvent).name === 'proj.fail').map((e) => e.uuid),
);
const moved = events.map((e) =>
  failIds.has(e.uuid) && e.type !== 'task-sent' ? { ...e, hostname: 'w2@box2' } : e,
);

describe('--service-name-map', () => {
  it('parses queue and task-prefix rules in order, and refuses anything else', () => {
    expect(runOptions([], {}).otlp.serviceNameRules).toEqual([]);
    expect(
      runOptions(['--service-name-map', 'queue:billing=billing-app, task:proj.reports.=reports'])
        .otlp.serviceNameRules,
    ).toEqual([
      { kind: 'queue', match: 'billing', service: 'billing-app' },
      { kind: 'task', match: 'proj.reports.', service: 'reports' },
    ]);
    expect(configError(['--service-name-map', 'billing=x'])).toContain('queue:<queue>=<service>');
    expect(configError([], { CELERY_OTEL_BRIDGE_SERVICE_NAME_MAP: 'task:=x' })).toContain(
      'CELERY_OTEL_BRIDGE_SERVICE_NAME_MAP',
    );
  });

  it('names the service by the first matching rule, else --service-name', () => {
    const resources = new TaskResources(
      BASE,
      'celery',
      parseServiceNameRules('task:proj.fl=flaky-app,queue:celery=default-queue-app,task:proj.=x'),
    );
    expect(resources.serviceFor('proj.flaky', 'celery')).toBe('flaky-app');
    expect(resources.serviceFor('proj.add', 'celery')).toBe('default-queue-app');
    expect(resources.serviceFor('proj.add', undefined)).toBe('x');
    expect(resources.serviceFor('other.add', undefined)).toBe('celery');
    expect(resources.serviceFor(undefined, undefined)).toBe('celery');
  });
});

describe('task span resources', () => {
  const resources = new TaskResources(
    BASE,
    'celery',
    parseServiceNameRules('task:proj.fail=fail-app'),
  );
  const run = assemble(moved, {}, { resources });

  it('put the worker in host.name and service.instance.id, and the mapped service.name', () => {
    expect(run.spans.length).toBeGreaterThan(20);
    for (const span of run.spans) {
      const worker = String(span.attributes['celery.worker.hostname']);
      const fail = span.attributes['celery.task.name'] === 'proj.fail';
      expect(span.resource.attributes, span.name).toMatchObject({
        'deployment.environment': 'test',
        'service.name': fail ? 'fail-app' : 'celery',
        'service.instance.id': worker,
        'host.name': worker.slice(worker.indexOf('@') + 1),
      });
      expect(worker).toBe(fail ? 'w2@box2' : 'w1@vm');
    }
    // One Resource object per (service, worker): the serializer groups and encodes it once.
    expect(new Set(run.spans.map((s) => s.resource)).size).toBe(2);
  });

  it('go out as separate ResourceSpans groups, one per worker and service', () => {
    const body = new ProtobufSpanSerializer().serializeRequest(run.spans);
    const { groups, spans } = decodeTraceRequest(body);
    expect(groups).toBe(2);
    expect(spans).toHaveLength(run.spans.length);
    const byService = new Map<unknown, Set<unknown>>();
    for (const span of spans) {
      const hosts = byService.get(span.resource['service.name']) ?? new Set();
      hosts.add(span.resource['host.name']);
      byService.set(span.resource['service.name'], hosts);
    }
    expect(Object.fromEntries([...byService].map(([k, v]) => [k, [...v]]))).toEqual({
      celery: ['vm'],
      'fail-app': ['box2'],
    });
  });

  it('keep the service resource without worker for a span no worker touched', () => {
    const resource = resources.resourceFor('celery', undefined);
    expect(resource.attributes).toEqual(BASE);
    expect(resources.resourceFor('celery', 'celery@h')).toBe(
      resources.resourceFor('celery', 'celery@h'),
    );
    expect(resources.resourceFor('celery', 'nohost').attributes['host.name']).toBe('nohost');
    // Attempt spans sit on their own worker's resource.
    const attempts = run.spans.filter((s) => s.kind === SpanKind.INTERNAL);
    expect(
      attempts.every(
        (s) =>
          s.resource.attributes['service.instance.id'] === s.attributes['celery.worker.hostname'],
      ),
    ).toBe(true);
  });
});
