/**
 * Returns one shared instance for equal strings, up to a bounded number of distinct values.
 *
 * Every decoded event carries fresh copies of the same few strings (task names, worker
 * hostnames, queues: JSON.parse allocates each occurrence); kept per in-flight task they would
 * cost tens of bytes each, a million times over. Past `maxEntries` distinct values (a flood of
 * random names) strings are returned as they are, so the table itself stays bounded.
 */
export class StringInterner {
  private readonly values = new Map<string, string>();

  constructor(private readonly maxEntries: number) {}

  intern(value: string): string;
  intern(value: string | undefined): string | undefined;
  intern(value: string | undefined): string | undefined {
    if (value === undefined) return undefined;
    const known = this.values.get(value);
    if (known !== undefined) return known;
    if (this.values.size < this.maxEntries) this.values.set(value, value);
    return value;
  }
}
