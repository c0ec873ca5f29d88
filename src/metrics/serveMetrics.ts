import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OPENMETRICS_CONTENT_TYPE, serializeOpenMetrics } from './OpenMetricsSerializer.js';

/**
 * `GET /metrics` with content negotiation: OpenMetrics text (with exemplars) when the client's
 * `Accept` prefers `application/openmetrics-text`, as Prometheus does by default
 * (its `scrape_protocols` start with OpenMetricsText1.0.0); otherwise the SDK exporter's
 * Prometheus 0.0.4 text, unchanged for every other scraper.
 * https://github.com/prometheus/OpenMetrics/blob/main/specification/OpenMetrics.md#overall-structure
 */
export function serveMetrics(
  prometheus: PrometheusExporter,
  request: IncomingMessage,
  response: ServerResponse,
): void {
  if (!prefersOpenMetrics(request.headers.accept)) {
    prometheus.getMetricsRequestHandler(request, response);
    return;
  }
  prometheus.collect().then(
    ({ resourceMetrics }) => {
      const body = serializeOpenMetrics(resourceMetrics);
      response.writeHead(200, { 'content-type': OPENMETRICS_CONTENT_TYPE });
      response.end(request.method === 'HEAD' ? undefined : body);
    },
    (error: unknown) => {
      response.writeHead(500, { 'content-type': 'text/plain' });
      response.end(`failed to collect metrics: ${String(error)}\n`);
    },
  );
}

/**
 * True when `application/openmetrics-text` has a positive quality at least as high as the
 * Prometheus text format's (`text/plain`, or the wildcards that would match it).
 */
export function prefersOpenMetrics(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  let openMetrics = 0;
  let text = 0;
  for (const range of accept.split(',')) {
    const [type = '', ...parameters] = range.split(';').map((part) => part.trim().toLowerCase());
    let quality = 1;
    for (const parameter of parameters) {
      const match = /^q=([0-9.]+)$/.exec(parameter);
      if (match !== null) quality = Number(match[1]);
    }
    if (!Number.isFinite(quality)) continue;
    if (type === 'application/openmetrics-text') openMetrics = Math.max(openMetrics, quality);
    else if (type === 'text/plain' || type === 'text/*' || type === '*/*')
      text = Math.max(text, quality);
  }
  return openMetrics > 0 && openMetrics >= text;
}
