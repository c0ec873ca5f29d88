// The bridge's own resource (detected like @opentelemetry/sdk-node with
// OTEL_NODE_RESOURCE_DETECTORS) and the OTLP metrics split between it and the Celery resource.
import { hostname } from 'node:os';
import { ValueType } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  DataPointType,
  type MetricData,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { resourceDetectors } from '../../src/config/resourceDetectors.js';
import { detectBridgeResource } from '../../src/metrics/detectBridgeResource.js';
import { ResourceSplittingMetricExporter } from '../../src/metrics/ResourceSplittingMetricExporter.js';
import { configError, runOptions } from '../support/configHelpers.js';

describe('OTEL_NODE_RESOURCE_DETECTORS', () => {
  it('defaults to all, takes a list, refuses an unknown name', () => {
    expect(runOptions([]).metrics.resourceDetectors).toEqual(['all']);
    expect(resourceDetectors('host, process')).toEqual(['host', 'process']);
    expect(configError([], { OTEL_NODE_RESOURCE_DETECTORS: 'host,gcp' })).toContain('"gcp"');
  });

  it("detects host, process and an instance id, with the bridge's own service name", async () => {
    const all = detectBridgeResource(['all'], '9.9.9');
    await all.waitForAsyncAttributes?.();
    expect(all.attributes).toMatchObject({
      'service.name': 'celery-otel-bridge',
      'service.version': '9.9.9',
      'host.name': hostname(),
      'process.pid': process.pid,
    });
    expect(String(all.attributes['service.instance.id'])).toMatch(/^[0-9a-f-]{36}$/);
    const some = detectBridgeResource(['host'], '1');
    await some.waitForAsyncAttributes?.();
    expect(some.attributes['host.name']).toBe(hostname());
    expect(some.attributes['process.pid']).toBeUndefined();
    const none = detectBridgeResource(['none'], '1');
    expect(none.attributes).toEqual({
      'service.name': 'celery-otel-bridge',
      'service.version': '1',
      'telemetry.sdk.language': 'nodejs',
    });
  });
});

const metric = (name: string): MetricData => ({
  descriptor: { name, description: '', unit: '', valueType: ValueType.DOUBLE },
  aggregationTemporality: AggregationTemporality.CUMULATIVE,
  dataPointType: DataPointType.GAUGE,
  dataPoints: [],
});

describe('ResourceSplittingMetricExporter', () => {
  it('exports the Celery metrics under the Celery resource and the rest under the bridge', async () => {
    const exported: ResourceMetrics[] = [];
    const inner: PushMetricExporter = {
      export: (metrics, done) => {
        exported.push(metrics);
        done({ code: exported.length === 1 ? ExportResultCode.FAILED : ExportResultCode.SUCCESS });
      },
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
    const bridge = resourceFromAttributes({ 'service.name': 'celery-otel-bridge' });
    const celery = resourceFromAttributes({ 'service.name': 'celery' });
    const scope = { name: 'celery-otel-bridge' };
    const result = await new Promise<ExportResult>((resolve) =>
      new ResourceSplittingMetricExporter(inner, celery).export(
        {
          resource: bridge,
          scopeMetrics: [
            {
              scope,
              metrics: [
                metric('celery.tasks'),
                metric('celery_otel_bridge.events.received'),
                metric('celery.worker.up'),
                metric('process.memory.usage'),
              ],
            },
          ],
        },
        resolve,
      ),
    );
    expect(
      exported.map((r) => [r.resource, r.scopeMetrics[0]?.metrics.map((m) => m.descriptor.name)]),
    ).toEqual([
      [celery, ['celery.tasks', 'celery.worker.up']],
      [bridge, ['celery_otel_bridge.events.received', 'process.memory.usage']],
    ]);
    // One part failed: the export did (the reader logs it); the other part was still sent.
    expect(result.code).toBe(ExportResultCode.FAILED);
  });
});
