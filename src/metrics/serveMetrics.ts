import type { IncomingMessage, ServerResponse } from 'node:http';
import { diag } from '@opentelemetry/api';
import { type PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { OPENMETRICS_CONTENT_TYPE, serializeOpenMetrics } from './OpenMetricsSerializer.js';

/**
 * `GET /metrics` with content negotiation: OpenMetrics text (with exemplars) when the client's
 * `Accept` prefers `application/openmetrics-text`, as Prometheus does by default
 * (its `scrape_protocols` start with OpenMetricsText1.0.0); otherwise the SDK exporter's
 * Prometheus 0.0.4 text, unchanged for every other scraper.
 * https://github.com/prometheus/OpenMetrics/blob/main/specification/OpenMetrics.md#overall-structure
 */
export async function serveMetrics(
  prometheus: PrometheusExporter,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  // Collected here rather than through the exporter's own handler, which serializes inside a
  // `.then` with no catch (exporter-prometheus/src/PrometheusExporter.ts `_exportMetrics`): a
  // throw there is an unhandled rejection. Every failure is in the returned promise instead,
  // which HttpServer answers with 500, counts and logs.
  const { resourceMetrics, errors } = await prometheus.collect();
  // As the exporter does: a callback that failed is logged, the other metrics are served.
  if (errors.length > 0) diag.error('PrometheusExporter: metrics collection errors', ...errors);
  const openMetrics = prefersOpenMetrics(request.headers.accept);
  const body = openMetrics
    ? serializeOpenMetrics(resourceMetrics)
    : TEXT_SERIALIZER.serialize(resourceMetrics);
  response.writeHead(200, {
    'content-type': openMetrics ? OPENMETRICS_CONTENT_TYPE : 'text/plain',
  });
  response.end(request.method === 'HEAD' ? undefined : body);
}

/** The exporter's own settings: no prefix, no timestamps (its getMetricsRequestHandler's). */
const TEXT_SERIALIZER = new PrometheusSerializer('', false, undefined, false, false);

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
