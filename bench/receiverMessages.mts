// Messages between the bench's main thread (bench/receiver.mts) and its receiver thread
// (bench/receiverThread.mts).

/** A collector slower than the bridge: at most `spansPerSecond` spans accepted per second. */
export interface SlowCollector {
  readonly spansPerSecond: number;
  /**
   * `refuse`: a request over the rate is answered `refuseStatus` (429, or 503 as the collector's
   * memory_limiter makes its OTLP receiver answer) and the exporter must retry it; `delay`: every
   * request is accepted, but the answer waits until the rate allows it (a collector that pushes
   * back by being slow).
   */
  readonly mode: 'refuse' | 'delay';
  readonly refuseStatus: number;
}

/** One task span: task id, `celery.task.state`, has `celery.task.incomplete`, span id (hex). */
export type TaskSpanArrival = [id: string, state: string, incomplete: boolean, spanId: string];

export type ReceiverCommand =
  | {
      readonly type: 'configure';
      readonly epoch: number;
      readonly slow: SlowCollector | undefined;
      /** Every answer waits this long more (a collector across a network); answers overlap. */
      readonly latencyMs: number;
    }
  | { readonly type: 'close' };

export type ReceiverEvent =
  | { readonly type: 'listening'; readonly epoch: number; readonly port: number }
  | {
      readonly type: 'accepted';
      readonly epoch: number;
      /** Epoch ms of the answer. */
      readonly at: number;
      readonly spans: number;
      readonly attributes: number;
      readonly tasks: TaskSpanArrival[];
      /** Time spent decoding the request (ms). */
      readonly decodeMs: number;
    }
  | {
      readonly type: 'refused';
      readonly epoch: number;
      readonly spans: number;
      readonly status: number;
      readonly decodeMs: number;
    }
  | { readonly type: 'bad'; readonly epoch: number; readonly error: string }
  | { readonly type: 'other'; readonly epoch: number };
