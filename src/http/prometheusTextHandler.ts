import type { IncomingMessage, ServerResponse } from 'node:http';
import { diag } from '@opentelemetry/api';
import { type PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';

/**
 * `/metrics` from the Prometheus reader, as its own getMetricsRequestHandler answers (same
 * serializer settings: no prefix, no timestamps), but with every failure in the returned promise.
 * The exporter's handler serializes inside a `.then` with no catch
 * (exporter-prometheus/src/PrometheusExporter.ts `_exportMetrics`): a serializer that throws
 * (`RangeError: Invalid string length` on huge label values) was an unhandled rejection, which
 * ends a Node process. HttpServer answers a rejection with 500, counts and logs it.
 */
export function prometheusTextHandler(
  exporter: PrometheusExporter,
): (request: IncomingMessage, response: ServerResponse) => Promise<void> {
  const serializer = new PrometheusSerializer('', false, undefined, false, false);
  return async (_request, response) => {
    const { resourceMetrics, errors } = await exporter.collect();
    // As the exporter does: a callback that failed is logged, the other metrics are served.
    if (errors.length > 0) diag.error('PrometheusExporter: metrics collection errors', ...errors);
    const body = serializer.serialize(resourceMetrics);
    response.writeHead(200, { 'content-type': 'text/plain' }).end(body);
  };
}
