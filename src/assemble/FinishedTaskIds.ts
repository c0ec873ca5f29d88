/**
 * Ids of exported tasks, the `capacity` most recent, so that a late or duplicate event of a task
 * makes no second span; each remembers whether the task was exported as a FAILURE (`failed`).
 *
 * The oldest id is found through one iterator kept for the whole life of the set, not a new one
 * per eviction: a new iterator starts at the beginning of V8's hash table and walks over every
 * entry deleted since the table was last rebuilt, and at capacity every export deletes one, so
 * each eviction would cost a walk over up to the capacity. A live iterator moves on from where it
 * stopped; ids added later are appended behind it (ECMAScript Map iteration visits them).
 */
export class FinishedTaskIds {
  /** Id -> exported as FAILURE. */
  private readonly ids = new Map<string, boolean>();
  /** Created at the first eviction: until then it would hold on to the tables the map outgrew. */
  private oldest: Iterator<string> | undefined;

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.ids.size;
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  /** Whether the task was exported as a FAILURE (and is still remembered). */
  failed(id: string): boolean {
    return this.ids.get(id) === true;
  }

  /** Remembers an exported task, forgetting the oldest one past the capacity. */
  add(id: string, failed: boolean): void {
    this.ids.set(id, failed);
    if (this.ids.size > this.capacity) this.ids.delete(this.takeOldest());
  }

  /** A task exported as interrupted runs again (InterruptedTasks): it is in flight once more. */
  delete(id: string): void {
    this.ids.delete(id);
  }

  /** Every id, oldest first. */
  toArray(): string[] {
    return [...this.ids.keys()];
  }

  private takeOldest(): string {
    let next = this.oldest?.next();
    if (next === undefined || next.done === true) {
      // A finished iterator stays finished: start a new one (the set is not empty here).
      this.oldest = this.ids.keys();
      next = this.oldest.next();
    }
    return next.value as string;
  }
}
