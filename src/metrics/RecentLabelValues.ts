import { forgetIdleSeries, type UsedSeries } from './forgetIdleSeries.js';

/**
 * The label values a metric attribute may take, at most `capacity` of them: values learnt from
 * events (task names) that a flood of made-up ones must not hold for good.
 *
 * While full, a new value takes the place of the least recently used one if that one was not
 * used in the last two metric collections (forgetIdleSeries); otherwise the new value is refused
 * and the caller reports it as overflow. So a flood goes to overflow while it lasts (the values
 * in use keep their series), and once the flood's values go idle, real values seen later get
 * their own series again. A generation is one collection (`nextGeneration`, at each scrape or
 * push): no clock is read per event.
 */
export class RecentLabelValues {
  /** Value -> the generation of its last use. */
  private readonly values = new Map<string, UsedSeries>();
  private generation = 0;
  /** The generation in which a sweep found no idle value: no sweep again in it. */
  private fullIn = -1;

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.values.size;
  }

  /** Called at each metric collection. */
  nextGeneration(): void {
    this.generation++;
  }

  /** True when `value` has a place (it had one, or got one); false when full of values in use. */
  admit(value: string): boolean {
    const entry = this.values.get(value);
    if (entry !== undefined) {
      entry.used = this.generation;
      return true;
    }
    if (this.values.size >= this.capacity && !this.makeRoom()) return false;
    this.values.set(value, { used: this.generation });
    return true;
  }

  /** Whether `value` has a place now; not a use. */
  has(value: string): boolean {
    return this.values.has(value);
  }

  private makeRoom(): boolean {
    if (this.capacity <= 0 || this.fullIn === this.generation) return false;
    if (forgetIdleSeries(this.values, this.generation)) return true;
    this.fullIn = this.generation;
    return false;
  }
}
