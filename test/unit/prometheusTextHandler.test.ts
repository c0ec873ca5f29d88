import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { afterEach, describe, expect, it } from 'vitest';
import { prometheusTextHandler } from '../../src/http/prometheusTextHandler.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function serve(
  handler: (request: IncomingMessage, response: ServerResponse) => unknown,
): Promise<string> {
  const server = createServer((request, response) => void handler(request, response));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
}

describe('prometheusTextHandler', () => {
  it("answers exactly what the exporter's own handler answers", async () => {
    const exporter = new PrometheusExporter({ preventServerStart: true });
    const provider = new MeterProvider({ readers: [exporter] });
    closers.push(() => provider.shutdown());
    const meter = provider.getMeter('test');
    meter.createCounter('celery.test.count', { description: 'a "quoted" description' }).add(3, {
      'celery.task.name': 'proj.add\n"x"',
    });
    meter.createHistogram('celery.test.seconds', { unit: 's' }).record(0.25);
    const ours = await fetch(await serve(prometheusTextHandler(exporter)));
    const theirs = await fetch(
      await serve((request, response) => exporter.getMetricsRequestHandler(request, response)),
    );
    expect(ours.status).toBe(200);
    expect(ours.headers.get('content-type')).toBe(theirs.headers.get('content-type'));
    const text = await ours.text();
    expect(text).toContain('celery_test_count_total');
    expect(text).toBe(await theirs.text());
  });

  it('rejects instead of leaving an unhandled rejection when serializing throws', async () => {
    // What the serializer meets when a label value is too long to build (`Invalid string length`).
    const resourceMetrics = {
      resource: { attributes: {} },
      get scopeMetrics(): never {
        throw new RangeError('Invalid string length');
      },
    };
    const exporter = {
      collect: () => Promise.resolve({ resourceMetrics, errors: [] }),
    } as unknown as PrometheusExporter;
    let ended = false;
    const response = {
      writeHead: () => response,
      end: () => (ended = true),
    } as unknown as ServerResponse;
    await expect(
      prometheusTextHandler(exporter)({ headers: {} } as IncomingMessage, response),
    ).rejects.toThrow('Invalid string length');
    expect(ended).toBe(false);
  });
});
