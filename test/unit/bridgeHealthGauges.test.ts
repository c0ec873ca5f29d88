import { describe, expect, it } from 'vitest';
import { bridgeHealthGauges } from '../../src/metrics/bridgeHealthGauges.js';

describe('bridgeHealthGauges', () => {
  it('reports the broker connection as 1 or 0 and the resident set size in bytes', () => {
    const value = (connected: boolean | undefined, name: string) =>
      bridgeHealthGauges(connected).find((g) => g.name === name)?.points[0]?.value;
    expect(value(true, 'celery_otel_bridge.broker.connected')).toBe(1);
    expect(value(false, 'celery_otel_bridge.broker.connected')).toBe(0);
    // Not known (no Bridge behind the metrics): no series rather than a made-up value.
    expect(value(undefined, 'celery_otel_bridge.broker.connected')).toBeUndefined();
    const rss = value(true, 'process.memory.usage') ?? 0;
    expect(rss).toBeGreaterThan(10 * 1024 * 1024);
  });
});
