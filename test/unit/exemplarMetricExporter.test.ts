import { fileURLToPath } from 'node:url';
import { hrTime } from '@opentelemetry/core';
import { JsonMetricsSerializer, ProtobufMetricsSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { ExportResultCode } from '@opentelemetry/core';
import protobuf from 'protobufjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createExemplarMetricExporter,
  jsonWithExemplars,
  protobufWithExemplars,
} from '../../src/metrics/exemplarMetricExporter.js';
import { gaugeMetricData } from '../../src/metrics/BridgeMetricProducer.js';
import { SeriesHistogram } from '../../src/metrics/SeriesHistogram.js';
import { TaskExemplars } from '../../src/metrics/TaskExemplars.js';
import { OtlpReceiver } from '../support/OtlpReceiver.js';

const root = protobuf.loadSync(
  fileURLToPath(new URL('../support/otlp/metrics.proto', import.meta.url)),
);
const Request = root.lookupType('otlpmetrics.ExportMetricsServiceRequest');
/** The request tree down to the exemplars, as protobufjs `toObject` and OTLP/JSON both give it. */
interface Tree {
  resourceMetrics: Array<{
    scopeMetrics: Array<{
      metrics: Array<{
        histogram?: { dataPoints: Array<{ exemplars?: Array<Record<string, unknown>> }> };
      }>;
    }>;
  }>;
}
const decode = (bytes: Uint8Array): Tree =>
  Request.toObject(Request.decode(bytes), {
    longs: String,
    bytes: String,
    defaults: false,
  }) as Tree;
const pointsOf = (tree: Tree, metric: number) =>
  tree.resourceMetrics[0]!.scopeMetrics[0]!.metrics[metric]!.histogram!.dataPoints;

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const SPAN = 'b7ad6b7169203331';

/** Two histograms (one with exemplars in two series) and a gauge, as the bridge collects them. */
function request(withExemplars: boolean): ResourceMetrics {
  const pending = new TaskExemplars(10);
  const runtime = new SeriesHistogram({
    name: 'celery.task.runtime',
    unit: 's',
    description: 'd',
    boundaries: [0.1, 1, 10],
    maxSeries: 10,
  });
  const lag = new SeriesHistogram({
    name: 'lag',
    unit: 's',
    description: 'd',
    boundaries: [1],
    maxSeries: 1,
  });
  const offer = withExemplars
    ? (task: string) => (v: number) => pending.candidate(task, v, 1_700_000_000_123)
    : () => undefined;
  runtime.record('a', () => ({ 'celery.task.name': 'a' }), 0.5, offer('t1'));
  runtime.record('a', () => ({ 'celery.task.name': 'a' }), 5, offer('t2'));
  runtime.record('b', () => ({ 'celery.task.name': 'b' }), 0.05, offer('t3'));
  lag.record('', () => ({}), 0.3);
  pending.resolve('t1', TRACE, SPAN);
  pending.resolve('t3', TRACE.replace('0a', 'ff'), SPAN.replace('b7', '01'));
  const now = hrTime();
  return {
    resource: resourceFromAttributes({ 'service.name': 'test' }),
    scopeMetrics: [
      {
        scope: { name: 'celery-otel-bridge', version: '0' },
        metrics: [
          gaugeMetricData(
            { name: 'up', unit: '1', description: 'd', points: [{ attributes: {}, value: 1 }] },
            now,
          ),
          runtime.toMetricData(now),
          lag.toMetricData(now),
        ],
      },
    ],
  };
}

const receivers: OtlpReceiver[] = [];
afterEach(async () => {
  for (const receiver of receivers.splice(0)) await receiver.close();
});

describe('OTLP metrics with exemplars', () => {
  it('protobuf: the SDK bytes unchanged without exemplars; exemplars added to their data points', () => {
    const plain = request(false);
    expect(Buffer.from(protobufWithExemplars.serializeRequest(plain)!)).toEqual(
      Buffer.from(ProtobufMetricsSerializer.serializeRequest(plain)!),
    );
    const rich = request(true);
    const ours = decode(protobufWithExemplars.serializeRequest(rich)!);
    const sdk = decode(ProtobufMetricsSerializer.serializeRequest(rich)!);
    const [a, b] = pointsOf(ours, 1);
    expect(a?.exemplars).toEqual([
      {
        timeUnixNano: '1700000000123000000',
        asDouble: 0.5,
        spanId: Buffer.from(SPAN, 'hex').toString('base64'),
        traceId: Buffer.from(TRACE, 'hex').toString('base64'),
      },
    ]); // t2 (bucket 10) has no span yet: not shown
    expect(b?.exemplars).toHaveLength(1);
    expect(b?.exemplars?.[0]?.['asDouble']).toBe(0.05);
    expect(pointsOf(ours, 2)[0]?.exemplars).toBeUndefined();
    for (const point of pointsOf(ours, 1)) delete point.exemplars;
    expect(ours).toEqual(sdk);
  });

  it('JSON: the SDK request plus hex-id exemplars', () => {
    const rich = request(true);
    const text = (bytes: Uint8Array | undefined) =>
      JSON.parse(new TextDecoder().decode(bytes)) as Tree;
    const ours = text(jsonWithExemplars.serializeRequest(rich));
    const sdk = text(JsonMetricsSerializer.serializeRequest(rich));
    const points = pointsOf(ours, 1);
    expect(points[0]?.exemplars).toEqual([
      { timeUnixNano: '1700000000123000000', asDouble: 0.5, traceId: TRACE, spanId: SPAN },
    ]);
    for (const point of points) delete point.exemplars;
    expect(ours).toEqual(sdk);
  });

  it.each(['http/protobuf', 'http/json'] as const)(
    'the exporter sends them over %s to a real OTLP receiver',
    async (protocol) => {
      const receiver = await OtlpReceiver.start();
      receivers.push(receiver);
      const exporter = createExemplarMetricExporter(protocol, {
        url: `${receiver.url}/v1/metrics`,
      });
      const result = await new Promise<{ code: ExportResultCode }>((resolve) =>
        exporter.export(request(true), resolve),
      );
      expect(result.code).toBe(ExportResultCode.SUCCESS);
      await exporter.shutdown();
      const runtime = receiver.metrics.find((m) => m.name === 'celery.task.runtime');
      expect(runtime?.exemplars?.map((e) => [e.traceId, e.spanId, e.value])).toEqual([
        [TRACE, SPAN, 0.5],
        [TRACE.replace('0a', 'ff'), SPAN.replace('b7', '01'), 0.05],
      ]);
      expect(runtime?.exemplars?.[0]?.timeUnixNano).toBe(1_700_000_000_123_000_000n);
    },
  );
});
