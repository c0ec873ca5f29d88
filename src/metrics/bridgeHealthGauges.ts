import { METRIC_SPECS } from '../shared/metricSpecs.js';
import type { StateGauge } from './BridgeMetricProducer.js';

/**
 * The bridge's own health gauges that the alert rules and the Bridge health dashboard need and no
 * other instrument tells (deploy/prometheus/rules/celery.rules.yml, docs/dashboards.md):
 *
 * - `celery_otel_bridge.broker.connected`: 1 while connected to the broker and consuming (what
 *   `/readyz` answers), else 0. A scrape of `/readyz` cannot be alerted on from Prometheus.
 * - `process.memory.usage`: resident set size, the OpenTelemetry semantic convention's name
 *   (https://opentelemetry.io/docs/specs/semconv/system/process-metrics/#metric-processmemoryusage).
 *   `process.memoryUsage.rss()` reads only the RSS, without the heap statistics
 *   `process.memoryUsage()` walks (https://nodejs.org/api/process.html#processmemoryusagerss).
 */
export function bridgeHealthGauges(connected: boolean | undefined): StateGauge[] {
  const gauges: StateGauge[] = [
    {
      ...METRIC_SPECS.processMemoryUsage,
      points: [{ attributes: {}, value: process.memoryUsage.rss() }],
    },
  ];
  if (connected !== undefined) {
    gauges.push({
      ...METRIC_SPECS.brokerConnected,
      points: [{ attributes: {}, value: connected ? 1 : 0 }],
    });
  }
  return gauges;
}
