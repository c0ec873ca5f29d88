import { type ResourceLimits, Worker } from 'node:worker_threads';
import { BrokerSetupError, BrokerUnreachableError } from '../shared/errors.js';
import type { Logger } from '../log/Logger.js';
import { describeError as describe } from '../shared/describeError.js';
import { backoffDelayMs } from './EventSource.js';

/** A read thread's first word: it consumes (`detail` is safe to log), or it gave up. */
export type ReadThreadStart =
  | { readonly type: 'started'; readonly detail: string }
  | {
      readonly type: 'failed';
      /** The broker answered and refused the setup (BrokerSetupError), else it stayed unreachable. */
      readonly setup: boolean;
      readonly message: string;
    };

export interface ReadThreadHandlers<Event> {
  /** The thread consumes: its first connection, or a restarted thread's. */
  started(event: Extract<ReadThreadStart, { type: 'started' }>): void;
  /** Every other message of the thread, in order. */
  event(event: Event): void;
  /** The thread ended, asked to or not (its messages all came before). */
  exited(): void;
  /** It ended without being asked to, after it had started: a new one is started. */
  lost(): void;
}

/**
 * The life of a broker's read thread (redisReadThread, amqpReadThread), for its event source:
 * start it and wait until it consumes, restart it with backoff when it ends unasked, and stop it
 * (`{ type: 'stop' }`), terminating it if it takes longer than `stopTimeoutMs`.
 */
export class ReadThread<Data, Request extends { readonly type: string }, Event> {
  private worker: Worker | undefined;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(
    /** `RabbitMQ` or `Redis`, for log lines. */
    private readonly brokerName: string,
    private readonly url: URL,
    /** The thread's workerData, read at each start. */
    private readonly data: () => Data,
    private readonly handlers: ReadThreadHandlers<Event>,
    private readonly logger: Logger,
    /** The thread's heap limits (node's defaults when undefined). */
    private readonly resourceLimits?: ResourceLimits,
    private readonly stopTimeoutMs = 5000,
  ) {}

  /** Resolves once the thread consumes; rejects with the bridge's error if it cannot. */
  start(): Promise<void> {
    const worker = new Worker(this.url, {
      workerData: this.data(),
      resourceLimits: this.resourceLimits,
    });
    this.worker = worker;
    const name = `the ${this.brokerName} read thread`;
    let started = false;
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (message: ReadThreadStart | Event) => {
        const start = message as ReadThreadStart;
        if (start.type === 'started') {
          started = true;
          this.handlers.started(start);
          resolve();
        } else if (start.type === 'failed') {
          void worker.terminate();
          reject(
            start.setup
              ? new BrokerSetupError(start.message)
              : new BrokerUnreachableError(start.message),
          );
        } else {
          this.handlers.event(message as Event);
        }
      });
      worker.on('error', (error) => {
        this.logger.error(`${name} failed`, { error: error.message });
        reject(new BrokerUnreachableError(`${name} failed: ${error.message}`));
      });
      worker.on('exit', () => {
        if (this.worker === worker) this.worker = undefined;
        this.handlers.exited();
        // Before it started, 'failed' or 'error' came first; settling again is harmless, and a
        // thread that exits without either does not leave the start waiting.
        if (!started) reject(new BrokerUnreachableError(`${name} exited before it consumed`));
        else if (!this.stopping) {
          this.handlers.lost();
          this.restart(0, name);
        }
      });
    });
  }

  post(request: Request): void {
    this.worker?.postMessage(request);
  }

  /** Asks the thread to stop and resolves once it has ended. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const worker = this.worker;
    if (worker === undefined) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ type: 'stop' });
    const timer = setTimeout(() => void worker.terminate(), this.stopTimeoutMs);
    await exited;
    clearTimeout(timer);
  }

  private restart(attempt: number, name: string): void {
    // A start that failed because of a stop meanwhile is not retried.
    if (this.stopping) return;
    this.restartTimer = setTimeout(() => {
      if (this.stopping) return;
      this.start().catch((error: unknown) => {
        this.logger.warn(`${name} restart failed, retrying`, { error: describe(error) });
        this.restart(attempt + 1, name);
      });
    }, backoffDelayMs(attempt));
  }
}
