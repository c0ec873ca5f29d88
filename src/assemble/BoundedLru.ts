/**
 * A Map that keeps at most `capacity` entries, forgetting the least recently used one first.
 * `get` and `set` count as use. Maps iterate in insertion order, so re-inserting on use keeps the
 * least recently used entry first.
 *
 * The least recently used entry is found through one iterator kept for the life of the map (see
 * FinishedTaskIds for why a new iterator per eviction costs a walk over every deleted entry).
 */
export class BoundedLru<K, V> {
  private readonly entries = new Map<K, V>();
  /** Created at the first eviction: until then it would hold on to the tables the map outgrew. */
  private oldest: Iterator<[K, V]> | undefined;

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
      let next = this.oldest?.next();
      if (next === undefined || next.done === true) {
        // A finished iterator stays finished: start a new one (the map is not empty here).
        this.oldest = this.entries.entries();
        next = this.oldest.next();
      }
      if (next.done === true) break;
      const [key, evicted] = next.value;
      this.entries.delete(key);
      this.onEvict(key, evicted);
    }
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }
}
