/**
 * The key of a series from its label values, as SeriesCounter and SeriesHistogram take it,
 * without building the string again for a combination seen before.
 *
 * Joining the values (`${a}\0${b}\0...`) for every Celery event allocated a string, copied it
 * flat and hashed it whole before the map lookup; here each value is looked up on its own (the
 * constant ones have their hash cached) and the joined key is made once per combination. The
 * cache is bounded: past `maxKeys` combinations it starts again empty (keys are only names for
 * series, so a key made twice is the same key).
 */
export class SeriesKeys {
  private root: KeyNode = new KeyNode();
  private keys = 0;

  constructor(private readonly maxKeys: number) {}

  /** The key of (a, b, c, d); absent values are ''. */
  key(a: string, b: string, c = '', d = ''): string {
    const leaf = this.child(this.child(this.child(this.child(this.root, a), b), c), d);
    if (leaf.key === undefined) {
      if (this.keys >= this.maxKeys) {
        this.root = new KeyNode();
        this.keys = 0;
        return this.key(a, b, c, d);
      }
      leaf.key = `${a}\u0000${b}\u0000${c}\u0000${d}`;
      this.keys++;
    }
    return leaf.key;
  }

  private child(node: KeyNode, value: string): KeyNode {
    let next = node.next.get(value);
    if (next === undefined) {
      next = new KeyNode();
      node.next.set(value, next);
    }
    return next;
  }
}

class KeyNode {
  key: string | undefined = undefined;
  readonly next = new Map<string, KeyNode>();
}
