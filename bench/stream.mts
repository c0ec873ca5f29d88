// Synthetic Celery event streams shaped like the captured ones: several workers interleaved, each
// buffering its task events into `task.multi` lists of 10-24 (Celery 5's event dispatcher), or one
// event per message (`task.<type>`); clients send `task-sent` one per message (`task.sent`).
import { randomUUID } from 'node:crypto';
import { type EventObject, type Json, pythonJson, type Shapes } from './shapes.mjs';

export interface StreamOptions {
  /** `task.multi` lists of 10-24 events per worker, or one event per message. */
  readonly batched: boolean;
  readonly workers: number;
  /** Jobs (a task or a chain) in progress at once: how finely the workers' streams interleave. */
  readonly concurrency: number;
  readonly seed: number;
  /** Only `task-received`: tasks that stay in flight (the memory benchmark). */
  readonly receivedOnly?: boolean;
  /** Fraction of tasks that fail with a chained traceback. */
  readonly failureRate?: number;
  /** Fraction of tasks retried once or twice before succeeding. */
  readonly retryRate?: number;
  /** Fraction of jobs that are 3-step chains. */
  readonly chainRate?: number;
}

/** One message as a Celery process publishes it. */
export interface BenchMessage {
  readonly routingKey: string;
  /** The publishing process (`headers.hostname`). */
  readonly hostname: string;
  /** The JSON body, as Python's json.dumps writes it. */
  readonly body: string;
  readonly events: number;
  /** Tasks whose final event is in this message: id and the final event's timestamp (s). */
  readonly finals: readonly FinalEvent[] | undefined;
}

export interface FinalEvent {
  readonly id: string;
  readonly at: number;
  /** The `celery.task.state` its task span must carry. */
  readonly state: 'SUCCESS' | 'FAILURE';
}

interface Emitted {
  readonly host: Host;
  readonly event: EventObject;
  readonly final: boolean;
}

interface Host {
  readonly hostname: string;
  readonly pid: number;
  clock: number;
  /** Worker buffer (batched mode) and the size at which it is flushed. */
  buffer: Emitted[];
  flushAt: number;
}

/** Small deterministic PRNG (mulberry32), so two runs replay the same mix. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class StreamGenerator {
  eventsEmitted = 0;
  messagesEmitted = 0;
  /** Tasks whose final event was emitted (each must become one task span). */
  tasksFinished = 0;
  /** Tasks started (first event emitted). */
  tasksStarted = 0;
  failedTasks = 0;
  retriedTasks = 0;
  chainedTasks = 0;
  private readonly random: () => number;
  private readonly workers: Host[];
  private readonly workerChildren: Host[];
  private readonly clients: Host[];
  private readonly jobs: Generator<Emitted>[] = [];
  private readonly ready: BenchMessage[] = [];
  private stopping = false;
  private lastTime = 0;

  constructor(
    private readonly shapes: Shapes,
    private readonly options: StreamOptions,
  ) {
    this.random = prng(options.seed);
    const host = (hostname: string, pid: number): Host => ({
      hostname,
      pid,
      clock: 0,
      buffer: [],
      flushAt: this.batchSize(),
    });
    this.workers = Array.from({ length: options.workers }, (_, i) =>
      host(`w${i + 1}@bench`, 5779 + i * 7),
    );
    // Worker pool processes send `task-sent` for chain steps and retries (as gen5782@vm did).
    this.workerChildren = Array.from({ length: options.workers }, (_, i) =>
      host(`gen${5782 + i * 7}@bench`, 5782 + i * 7),
    );
    this.clients = [host('gen5860@bench', 5860), host('gen5861@bench', 5861)];
  }

  /** No new jobs from now on: the jobs in progress run to their end. */
  stop(): void {
    this.stopping = true;
  }

  /** The next message, or undefined once stopped and everything was emitted. */
  next(): BenchMessage | undefined {
    while (this.ready.length === 0) {
      if (!this.stopping) {
        while (this.jobs.length < this.options.concurrency) this.jobs.push(this.job());
      }
      if (this.jobs.length === 0) {
        this.flushAll();
        return this.ready.shift();
      }
      const index = Math.floor(this.random() * this.jobs.length);
      const job = this.jobs[index];
      if (job === undefined) continue;
      const step = job.next();
      if (step.done === true) {
        this.jobs.splice(index, 1);
        continue;
      }
      this.route(step.value);
    }
    return this.ready.shift();
  }

  private batchSize(): number {
    return 10 + Math.floor(this.random() * 15);
  }

  /** Epoch seconds now, strictly increasing (sub-millisecond, like Celery's time.time()). */
  private now(): number {
    const now = (performance.timeOrigin + performance.now()) / 1000;
    this.lastTime = now > this.lastTime ? now : this.lastTime + 1e-6;
    return this.lastTime;
  }

  private route(emitted: Emitted): void {
    this.eventsEmitted++;
    if (emitted.final) this.tasksFinished++;
    const type = emitted.event['type'] as string;
    if (type === 'task-sent' || !this.options.batched) {
      this.ready.push(this.message(`task.${type.slice(5)}`, emitted.host, [emitted], false));
      return;
    }
    const host = emitted.host;
    host.buffer.push(emitted);
    if (host.buffer.length >= host.flushAt) this.flush(host);
  }

  private flush(host: Host): void {
    if (host.buffer.length === 0) return;
    this.ready.push(this.message('task.multi', host, host.buffer, true));
    host.buffer = [];
    host.flushAt = this.batchSize();
  }

  private flushAll(): void {
    for (const worker of this.workers) this.flush(worker);
  }

  private message(routingKey: string, host: Host, items: Emitted[], list: boolean): BenchMessage {
    this.messagesEmitted++;
    let finals: FinalEvent[] | undefined;
    for (const item of items) {
      if (!item.final) continue;
      (finals ??= []).push({
        id: item.event['uuid'] as string,
        at: item.event['timestamp'] as number,
        state: item.event['type'] === 'task-failed' ? 'FAILURE' : 'SUCCESS',
      });
    }
    const body = list
      ? `[${items.map((item) => pythonJson(item.event)).join(', ')}]`
      : pythonJson(items[0]?.event ?? null);
    return { routingKey, hostname: host.hostname, body, events: items.length, finals };
  }

  private pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.random() * items.length)];
    if (item === undefined) throw new Error('empty choice');
    return item;
  }

  /** A template with the captured field order, some fields replaced. */
  private event(template: EventObject, host: Host, fields: Record<string, Json>): EventObject {
    const event: EventObject = { ...template, ...fields };
    event['hostname'] = host.hostname;
    event['pid'] = host.pid;
    event['clock'] = ++host.clock;
    event['timestamp'] = this.now();
    return event;
  }

  /** One job: a task, or a 3-step chain, each step maybe retried, maybe failing (and ending it). */
  private *job(): Generator<Emitted> {
    const { shapes, options } = this;
    if (options.receivedOnly === true) {
      const call = this.pick(shapes.calls);
      const worker = this.pick(this.workers);
      const id = randomUUID();
      this.tasksStarted++;
      const fields = { uuid: id, ...call, root_id: id, parent_id: null, retries: 0 };
      yield { host: worker, final: false, event: this.event(shapes.received, worker, fields) };
      return;
    }
    const failureRate = options.failureRate ?? 0.1;
    const retryRate = options.retryRate ?? 0.04;
    const length = this.random() < (options.chainRate ?? 0.15) ? 3 : 1;
    const rootId = randomUUID();
    const steps = Array.from({ length }, (_, index) => {
      const roll = this.random();
      const fails = roll < failureRate;
      const retries =
        !fails && roll < failureRate + retryRate ? 1 + Math.floor(this.random() * 2) : 0;
      const call = fails
        ? { name: 'proj.fail', args: '()', kwargs: '{}' }
        : retries > 0
          ? { name: 'proj.flaky', args: '()', kwargs: '{}' }
          : this.pick(shapes.calls);
      const worker = Math.floor(this.random() * this.workers.length);
      return { id: index === 0 ? rootId : randomUUID(), call, fails, retries, worker };
    });
    const fields = (index: number, retry: number, parent: string | null): Record<string, Json> => {
      const step = steps[index];
      if (step === undefined) throw new Error('no such step');
      return { uuid: step.id, root_id: rootId, parent_id: parent, ...step.call, retries: retry };
    };
    let parentId: string | null = null;
    let sender = this.pick(this.clients);
    // The first step is sent by a client; later steps by the pool process running the previous.
    yield {
      host: sender,
      final: false,
      event: this.event(shapes.sent, sender, fields(0, 0, null)),
    };
    for (let index = 0; index < steps.length; index++) {
      const step = steps[index];
      if (step === undefined) break;
      const worker = this.workers[step.worker] as Host;
      const child = this.workerChildren[step.worker] as Host;
      const id = step.id;
      this.tasksStarted++;
      if (length > 1) this.chainedTasks++;
      if (step.retries > 0) this.retriedTasks++;
      if (step.fails) this.failedTasks++;
      yield {
        host: worker,
        final: false,
        event: this.event(shapes.received, worker, fields(index, 0, parentId)),
      };
      for (let attempt = 0; ; attempt++) {
        yield {
          host: worker,
          final: false,
          event: this.event(shapes.started, worker, { uuid: id }),
        };
        if (attempt >= step.retries) break;
        // A retry re-sends the task (its parent: itself) and a worker receives it again.
        const again = fields(index, attempt + 1, id);
        yield { host: child, final: false, event: this.event(shapes.sent, child, again) };
        yield { host: worker, final: false, event: this.event(shapes.received, worker, again) };
        const captured = shapes.retried['traceback'];
        const traceback =
          typeof captured === 'string'
            ? captured.replace(/transient, try \d+/g, `transient, try ${attempt}`)
            : null;
        const exception = `ConnectionError('transient, try ${attempt}')`;
        yield {
          host: worker,
          final: false,
          event: this.event(shapes.retried, worker, { uuid: id, exception, traceback }),
        };
      }
      const next = step.fails ? undefined : steps[index + 1];
      if (next !== undefined) {
        // The next chain step is sent from inside this one, before it reports success.
        sender = child;
        yield {
          host: sender,
          final: false,
          event: this.event(shapes.sent, sender, fields(index + 1, 0, id)),
        };
      }
      yield {
        host: worker,
        final: true,
        event: step.fails
          ? this.event(shapes.failed, worker, { uuid: id })
          : this.event(shapes.succeeded, worker, {
              uuid: id,
              runtime: 0.004 + this.random() * 0.01,
            }),
      };
      if (next === undefined) return;
      parentId = id;
    }
  }
}
