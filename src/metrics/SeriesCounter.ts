import type { Attributes, Meter, MetricOptions } from '@opentelemetry/api';

/**
 * A monotonic counter kept in a plain map and reported through an observable counter.
 *
 * The SDK's synchronous `Counter.add` hashes the attribute set on every call; counting every
 * Celery event that way was the bridge's largest CPU cost (README "Benchmark"). Here an event
 * costs one string key lookup, and the SDK sees each series once per collection. The number of
 * series is capped like the SDK's own cardinality limit: past it, counts go to one
 * `otel.metric.overflow=true` series.
 * https://opentelemetry.io/docs/specs/otel/metrics/sdk/#overflow-attribute
 */
export class SeriesCounter {
  private readonly series = new Map<string, { readonly attributes: Attributes; value: number }>();
  private overflow = 0;

  constructor(
    meter: Meter,
    name: string,
    options: MetricOptions,
    private readonly maxSeries: number,
  ) {
    meter.createObservableCounter(name, options).addCallback((result) => {
      for (const entry of this.series.values()) result.observe(entry.value, entry.attributes);
      if (this.overflow > 0) result.observe(this.overflow, { 'otel.metric.overflow': true });
    });
  }

  /** `key` must identify `attributes`; `attributes` is only built when the series is new. */
  add(key: string, attributes: () => Attributes, value = 1): void {
    const entry = this.series.get(key);
    if (entry !== undefined) {
      entry.value += value;
    } else if (this.series.size < this.maxSeries) {
      this.series.set(key, { attributes: attributes(), value });
    } else {
      this.overflow += value;
    }
  }
}
