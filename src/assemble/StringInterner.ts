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
 */
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
    if (this.values.length >= this.maxEntries) return -1;
    this.indexes.set(value, this.values.length);
    this.values.push(value);
    return this.values.length - 1;
  }

  /** The string of an index that `indexOf` returned. */
  at(index: number): string {
    const value = this.values[index];
    if (value === undefined) throw new RangeError(`no interned string ${index}`);
    return value;
  }
}
