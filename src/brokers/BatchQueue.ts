import type { ReadBatch } from './ReadBuffer.js';

export interface BatchQueueHandlers<B extends ReadBatch> {
  /** A batch is taken up: the moment to pull the next one ahead from the read thread. */
  taken(batch: B): void;
  /**
   * One message: its meta is `bytes[meta, payload)` and its payload `bytes[payload, end)`, where
   * `bytes` views the whole batch (one Buffer per batch, not per message).
   */
  message(bytes: Buffer, meta: number, payload: number, end: number, batch: B, index: number): void;
  /** Stop handing on, even mid-slice (the bridge asked to pause). */
  paused(): boolean;
}

/**
 * The batches a read thread handed over and not yet handed on, with the position in the one
 * being handed on, drained in slices of at most `sliceMs` so that timers and exports run between
 * them (a slice that ends early schedules the next on the following turn).
 */
export class BatchQueue<B extends ReadBatch> {
  private readonly queued: B[] = [];
  private batch: B | undefined;
  private bytes: Buffer = Buffer.alloc(0);
  private next = 0;
  private scheduled = false;

  constructor(
    private readonly sliceMs: number,
    private readonly handlers: BatchQueueHandlers<B>,
    /** What one slice is, with the checks a source makes around it; `drainSlice` by default. */
    private readonly slice: () => void = () => this.drainSlice(),
  ) {}

  /** Nothing waits to be handed on. */
  get isEmpty(): boolean {
    return this.batch === undefined && this.queued.length === 0;
  }

  push(batch: B): void {
    this.queued.push(batch);
    this.schedule();
  }

  /** Forgets every batch not handed on yet (the broker delivers them again). */
  clear(): void {
    this.queued.length = 0;
    this.batch = undefined;
  }

  /** Runs a slice on the next turn, unless one is scheduled. */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.slice();
    });
  }

  /** Hands messages on for one slice; schedules the next while some are left and not paused. */
  drainSlice(): void {
    const deadline = performance.now() + this.sliceMs;
    for (;;) {
      if (this.handlers.paused()) return;
      if (this.batch === undefined) {
        const batch = this.queued.shift();
        if (batch === undefined) return;
        this.batch = batch;
        this.bytes = Buffer.from(batch.bytes);
        this.next = 0;
        this.handlers.taken(batch);
      }
      const batch = this.batch;
      const { offsets } = batch;
      const count = offsets.length / 3;
      while (this.next < count) {
        const index = this.next++;
        const at = 3 * index;
        this.handlers.message(
          this.bytes,
          offsets[at] as number,
          offsets[at + 1] as number,
          offsets[at + 2] as number,
          batch,
          index,
        );
        if (performance.now() >= deadline || this.handlers.paused()) break;
      }
      if (this.next >= count) this.batch = undefined;
      if (performance.now() >= deadline) {
        if (!this.isEmpty) this.schedule();
        return;
      }
    }
  }
}
