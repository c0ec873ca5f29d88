import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { serveMetrics } from '../metrics/serveMetrics.js';

/**
 * The `/metrics` route: Prometheus text or OpenMetrics (see serveMetrics), with every failure in
 * the returned promise, which HttpServer answers with 500, counts and logs.
 */
export function prometheusTextHandler(
  exporter: PrometheusExporter,
): (request: IncomingMessage, response: ServerResponse) => Promise<void> {
  return (request, response) => serveMetrics(exporter, request, response);
}
