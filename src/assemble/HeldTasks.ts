/**
 * Tasks held back from export, by id: a task whose final event arrived, waiting for events known
 * to be missing, or an interrupted one waiting for its real outcome or redelivery
 * (InterruptedTasks), each until its grace period is over; and, among the finished ones, those
 * that wait only for their tree's trace context (TraceTrees), by root.
 */
export class HeldTasks {
  /** Id -> monotonic deadline (ms). Deadlines are now + a constant: the map is in their order. */
  private readonly deadlines = new Map<string, number>();
  /** Root id -> the finished tasks waiting for its context; and each such task's root. */
  private readonly waitingFor = new Map<string, Set<string>>();
  private readonly waitingRoot = new Map<string, string>();

  constructor(private readonly graceMs: number) {}

  has(id: string): boolean {
    return this.deadlines.has(id);
  }

  /** Holds the task for the grace period from `nowMs`, unless it is held already. */
  hold(id: string, nowMs: number): void {
    if (!this.deadlines.has(id)) this.deadlines.set(id, nowMs + this.graceMs);
  }

  /** No longer held (exported, or given up on). Waiting for its root ends with `export`. */
  unhold(id: string): void {
    this.deadlines.delete(id);
  }

  /**
   * Hands each held task whose deadline is past to `release` (in deadline order, no longer held)
   * while `mayExport` allows.
   */
  releaseDue(nowMs: number, mayExport: () => boolean, release: (id: string) => void): void {
    for (const [id, deadline] of this.deadlines) {
      if (deadline > nowMs || !mayExport()) break;
      this.deadlines.delete(id);
      release(id);
    }
  }

  /** As `releaseDue` for every held task; true once none is held. */
  releaseAll(mayExport: () => boolean, release: (id: string) => void): boolean {
    for (const id of this.deadlines.keys()) {
      if (!mayExport()) return false;
      this.deadlines.delete(id);
      release(id);
    }
    return true;
  }

  /** The finished task waits for the trace context of the tree of `root`. */
  waitForRoot(id: string, root: string): void {
    const before = this.waitingRoot.get(id);
    if (before === root) return;
    if (before !== undefined) this.stopWaiting(id);
    this.waitingRoot.set(id, root);
    const ids = this.waitingFor.get(root) ?? new Set<string>();
    ids.add(id);
    this.waitingFor.set(root, ids);
  }

  isWaitingForRoot(id: string): boolean {
    return this.waitingRoot.has(id);
  }

  /** A copy of the ids waiting for `root`'s context (the caller exports some of them). */
  waitingOn(root: string): string[] | undefined {
    const ids = this.waitingFor.get(root);
    return ids === undefined ? undefined : [...ids];
  }

  /** The task left the in-flight table: it waits for nothing any more. */
  stopWaiting(id: string): void {
    const root = this.waitingRoot.get(id);
    if (root === undefined) return;
    this.waitingRoot.delete(id);
    const ids = this.waitingFor.get(root);
    ids?.delete(id);
    if (ids?.size === 0) this.waitingFor.delete(root);
  }
}
