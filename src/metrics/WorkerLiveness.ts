import type { WorkerEvent } from '../decode/CeleryEvent.js';

export interface WorkerStatus {
  readonly hostname: string;
  readonly up: boolean;
  /** Tasks the worker was running at its last heartbeat. */
  readonly active: number;
  readonly processed: number;
}

interface WorkerEntry {
  lastSeenMs: number;
  freqSeconds: number;
  offline: boolean;
  active: number;
  processed: number;
}

/**
 * Worker liveness from Celery's heartbeats. Celery itself considers a worker offline once no
 * heartbeat arrived for 2 x `freq` (celery/events/state.py `heartbeat_expires`,
 * HEARTBEAT_EXPIRE_WINDOW = 200 %), or at once on `worker-offline`. Times are the bridge's own
 * arrival times, not the event timestamps, so clock skew between hosts does not matter.
 * Workers silent for `forgetAfterMs` are forgotten, so churning pod names do not pile up series.
 */
export class WorkerLiveness {
  private readonly workers = new Map<string, WorkerEntry>();

  constructor(
    private readonly forgetAfterMs: number,
    private readonly maxWorkers: number,
    private readonly nowMs: () => number = () => Date.now(),
  ) {}

  onEvent(event: WorkerEvent): void {
    let entry = this.workers.get(event.hostname);
    if (entry === undefined) {
      if (this.workers.size >= this.maxWorkers) return;
      entry = { lastSeenMs: 0, freqSeconds: 2, offline: false, active: 0, processed: 0 };
      this.workers.set(event.hostname, entry);
    }
    entry.lastSeenMs = this.nowMs();
    entry.offline = event.type === 'worker-offline';
    if (event.freq !== undefined && event.freq > 0) entry.freqSeconds = event.freq;
    if (event.active !== undefined) entry.active = event.active;
    if (event.processed !== undefined) entry.processed = event.processed;
  }

  /** The workers known now; forgets those silent for too long. */
  statuses(): WorkerStatus[] {
    const now = this.nowMs();
    const out: WorkerStatus[] = [];
    for (const [hostname, entry] of this.workers) {
      const silentMs = now - entry.lastSeenMs;
      if (silentMs > this.forgetAfterMs) {
        this.workers.delete(hostname);
        continue;
      }
      const up = !entry.offline && silentMs <= 2 * entry.freqSeconds * 1000;
      out.push({ hostname, up, active: up ? entry.active : 0, processed: entry.processed });
    }
    return out;
  }
}
