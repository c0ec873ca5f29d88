// The bench's view of its OTLP receiver: the receiver itself runs on a worker thread
// (receiverThread.mts: HTTP, decoding down to each span and attribute, the slow-collector rate);
// this side keeps what was accepted per task, for the figures.
import { Worker } from 'node:worker_threads';
import type { ReceiverCommand, ReceiverEvent, SlowCollector } from './receiverMessages.mjs';

export interface TaskSpan {
  /** Epoch ms at which the receiver accepted the first task span of this task. */
  readonly at: number;
  readonly state: string;
  readonly incomplete: boolean;
  readonly spanId: string;
}

export class BenchReceiver {
  /** `--collector-latency-ms`: every answer waits this long more, as across a network. */
  latencyMs = 0;
  spans = 0;
  attributes = 0;
  taskSpans = 0;
  /** Task spans for a task that already had one (the same span again: a redelivery, a retry). */
  duplicateTaskSpans = 0;
  /** ... of which with another span id than the first (a backend would show two spans). */
  duplicatesWithOtherSpanId = 0;
  acceptedRequests = 0;
  refusedRequests = 0;
  refusedSpans = 0;
  badRequests = 0;
  lastBadRequest = '';
  otherRequests = 0;
  /** Time the receiver thread spent decoding requests (ms). */
  decodeMs = 0;
  /** Task id -> its first accepted task span. */
  readonly arrivals = new Map<string, TaskSpan>();
  lastArrivalMs = 0;
  private epoch = 0;
  private worker: Worker | undefined;

  async start(): Promise<string> {
    const worker = new Worker(new URL('./receiverThread.mjs', import.meta.url));
    this.worker = worker;
    const port = await new Promise<number>((resolve, reject) => {
      worker.once('error', reject);
      worker.on('message', (event: ReceiverEvent) => {
        if (event.type === 'listening') resolve(event.port);
        else this.onEvent(event);
      });
    });
    worker.on('error', (error) => {
      process.stderr.write(`bench: the OTLP receiver thread failed: ${String(error)}\n`);
    });
    return `http://127.0.0.1:${port}`;
  }

  /** Forgets what arrived and sets the collector's speed (undefined: as fast as it can). */
  reset(slow?: SlowCollector): void {
    this.epoch++;
    this.spans = 0;
    this.attributes = 0;
    this.taskSpans = 0;
    this.duplicateTaskSpans = 0;
    this.duplicatesWithOtherSpanId = 0;
    this.acceptedRequests = 0;
    this.refusedRequests = 0;
    this.refusedSpans = 0;
    this.badRequests = 0;
    this.lastBadRequest = '';
    this.otherRequests = 0;
    this.decodeMs = 0;
    this.arrivals.clear();
    this.lastArrivalMs = 0;
    this.send({ type: 'configure', epoch: this.epoch, slow, latencyMs: this.latencyMs });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker === undefined) return;
    this.send({ type: 'close' }, worker);
    const timer = setTimeout(() => void worker.terminate(), 2_000);
    await new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    clearTimeout(timer);
  }

  private send(command: ReceiverCommand, worker = this.worker): void {
    worker?.postMessage(command);
  }

  private onEvent(event: ReceiverEvent): void {
    // What a request answered before the last reset said belongs to the previous phase.
    if (event.epoch !== this.epoch) return;
    switch (event.type) {
      case 'accepted':
        this.acceptedRequests++;
        this.decodeMs += event.decodeMs;
        this.spans += event.spans;
        this.attributes += event.attributes;
        for (const [id, state, incomplete, spanId] of event.tasks) {
          this.taskSpans++;
          const first = this.arrivals.get(id);
          if (first === undefined) {
            this.arrivals.set(id, { at: event.at, state, incomplete, spanId });
          } else {
            this.duplicateTaskSpans++;
            if (first.spanId !== spanId) this.duplicatesWithOtherSpanId++;
          }
        }
        if (event.tasks.length > 0) this.lastArrivalMs = event.at;
        break;
      case 'refused':
        this.refusedRequests++;
        this.decodeMs += event.decodeMs;
        this.refusedSpans += event.spans;
        break;
      case 'bad':
        this.badRequests++;
        this.lastBadRequest = event.error;
        break;
      case 'other':
        this.otherRequests++;
        break;
      case 'listening':
        break;
    }
  }
}
