/** A series that remembers the collection (generation) in which it last got a value. */
export interface UsedSeries {
  used: number;
}

/** Collections a series must go without a value before a new series may take its place. */
export const IDLE_SERIES_GENERATIONS = 2;

/**
 * Makes room in a full map of series: forgets the least recently used series that got no value
 * for IDLE_SERIES_GENERATIONS collections, sweeping from the oldest entry and moving recently
 * used ones to the end (CLOCK, an approximation of LRU). False when every series is in use: the
 * caller then counts the value in its overflow series, as the SDK's cardinality limit does.
 * A forgotten counter series that comes back starts from 0 again (a counter reset to
 * Prometheus' `rate`). Without this, series made by a flood of made-up names would hold the
 * places of real ones for good.
 * https://opentelemetry.io/docs/specs/otel/metrics/sdk/#cardinality-limits
 */
export function forgetIdleSeries<V extends UsedSeries>(
  series: Map<string, V>,
  generation: number,
): boolean {
  let left = series.size;
  for (const [key, entry] of series) {
    if (left-- === 0) break;
    series.delete(key);
    if (generation - entry.used >= IDLE_SERIES_GENERATIONS) return true;
    series.set(key, entry);
  }
  return false;
}
