/**
 * A Map that keeps at most `capacity` entries, forgetting the least recently used one first.
 * `get` and `set` count as use. Maps iterate in insertion order, so re-inserting on use keeps the
 * least recently used entry first.
 */
export class BoundedLru<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(
    private readonly capacity: number,
    private readonly onEvict: (key: K, value: V) => void = () => undefined,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  /** Returns the value and marks it as recently used. */
  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  /** Returns the value without marking it as used. */
  peek(key: K): V | undefined {
    return this.entries.get(key);
  }

  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    while (this.entries.size > Math.max(1, this.capacity)) {
      const oldest = this.entries.entries().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest[0]);
      this.onEvict(oldest[0], oldest[1]);
    }
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }
}
