import { MAX_NAME_LENGTH } from '../decode/fieldBounds.js';
/**
 * Returns one shared instance for equal strings, up to a bounded number of distinct values.
 *
 * Every decoded event carries fresh copies of the same few strings (task names, worker
 * hostnames, queues: JSON.parse allocates each occurrence); kept per in-flight task they would
 * cost tens of bytes each, a million times over. Past `maxEntries` distinct values (a flood of
 * random names) strings are returned as they are, so the table itself stays bounded.
 *
 * Each shared string also has a small index (`indexOf` / `at`), so that a compact record can
 * store it in a typed-array column (see CompactTaskTable).
 *
 * Nothing an event sends is kept for ever: strings longer than MAX_INTERNED_LENGTH (the names
 * the decoder keeps are no longer, decode/fieldBounds.ts) are never shared, and a full table is
 * emptied by `clearIfFull` when no index is in use any more (CompactTaskTable calls it when its
 * last pending task leaves), so a flood of random names does not keep real ones out for good.
 */
/** Longer strings are not shared: the table's memory stays bounded by count times this. */
export const MAX_INTERNED_LENGTH = MAX_NAME_LENGTH;

export class StringInterner {
  private readonly indexes = new Map<string, number>();
  private readonly values: string[] = [];

  constructor(private readonly maxEntries: number) {}

  intern(value: string): string;
  intern(value: string | undefined): string | undefined;
  intern(value: string | undefined): string | undefined {
    if (value === undefined) return undefined;
    const index = this.indexOf(value);
    return index < 0 ? value : (this.values[index] ?? value);
  }

  /** The shared string's index (interning it if there is room), or -1 once the table is full. */
  indexOf(value: string): number {
    const known = this.indexes.get(value);
    if (known !== undefined) return known;
    if (this.values.length >= this.maxEntries || value.length > MAX_INTERNED_LENGTH) return -1;
    this.indexes.set(value, this.values.length);
    this.values.push(value);
    return this.values.length - 1;
  }

  /**
   * Forgets every string once the table is full. Only when no index handed out is still used:
   * the indexes of the forgotten strings are given to new ones.
   */
  clearIfFull(): void {
    if (this.values.length < this.maxEntries) return;
    this.indexes.clear();
    this.values.length = 0;
  }

  /** The string of an index that `indexOf` returned. */
  at(index: number): string {
    const value = this.values[index];
    if (value === undefined) throw new RangeError(`no interned string ${index}`);
    return value;
  }
}
