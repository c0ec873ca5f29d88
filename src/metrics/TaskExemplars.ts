/**
 * One histogram observation offered as an exemplar: the value and when it was observed, and the
 * task span it belongs to once that span is built (`traceId` / `spanId` undefined until then).
 */
export interface ExemplarCandidate {
  readonly value: number;
  /** Bridge clock, epoch milliseconds, when the value was observed. */
  readonly timeMs: number;
  traceId?: string;
  spanId?: string;
}

/**
 * The exemplar candidates that wait for their task's span, by task id.
 *
 * A runtime or queue wait is observed when its event arrives, but the task span's trace id is
 * only final when the task is exported: with the worker companion the assembler picks the tree's
 * trace (upstream traceparent, group) at the first export of the tree (TaskAssembler
 * `assignTrace`). An exemplar must point at a trace that exists, so a candidate is only shown
 * once `resolve` gave it the ids of the span that was handed to the exporter.
 *
 * Only candidates a histogram kept in one of its bucket slots are here (at most one per bucket
 * and series), and at most `maxTasks` tasks: past that the oldest entry is forgotten, and its
 * candidates, never resolved, are replaced by the next observations in their buckets.
 */
export class TaskExemplars {
  private readonly byTask = new Map<string, ExemplarCandidate | ExemplarCandidate[]>();

  constructor(private readonly maxTasks: number) {}

  /** A new candidate of `taskId`, to be resolved when the task is exported. */
  candidate(taskId: string, value: number, timeMs: number): ExemplarCandidate {
    const candidate: ExemplarCandidate = { value, timeMs };
    const existing = this.byTask.get(taskId);
    if (existing === undefined) {
      if (this.byTask.size >= this.maxTasks) {
        const oldest = this.byTask.keys().next().value;
        if (oldest !== undefined) this.byTask.delete(oldest);
      }
      this.byTask.set(taskId, candidate);
    } else if (Array.isArray(existing)) {
      existing.push(candidate);
    } else {
      this.byTask.set(taskId, [existing, candidate]);
    }
    return candidate;
  }

  /** The task's span was built: its candidates may now be shown. */
  resolve(taskId: string, traceId: string, spanId: string): void {
    const entry = this.byTask.get(taskId);
    if (entry === undefined) return;
    this.byTask.delete(taskId);
    for (const candidate of Array.isArray(entry) ? entry : [entry]) {
      candidate.traceId = traceId;
      candidate.spanId = spanId;
    }
  }

  get size(): number {
    return this.byTask.size;
  }
}
