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
  /** Down and already handed out by takeNewlyDown. */
  reportedDown: boolean;
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
      entry = {
        lastSeenMs: 0,
        reportedDown: false,
        freqSeconds: 2,
        offline: false,
        active: 0,
        processed: 0,
      };
      this.workers.set(event.hostname, entry);
    }
    entry.lastSeenMs = this.nowMs();
    entry.offline = event.type === 'worker-offline';
    if (!entry.offline) entry.reportedDown = false;
    if (event.freq !== undefined && event.freq > 0) entry.freqSeconds = event.freq;
    if (event.active !== undefined) entry.active = event.active;
    if (event.processed !== undefined) entry.processed = event.processed;
  }

  /** Workers that went down since the last call (each once per outage). */
  takeNewlyDown(): string[] {
    const now = this.nowMs();
    const down: string[] = [];
    for (const [hostname, entry] of this.workers) {
      if (entry.reportedDown || this.isUp(entry, now)) continue;
      entry.reportedDown = true;
      down.push(hostname);
    }
    return down;
  }

  private isUp(entry: WorkerEntry, now: number): boolean {
    return !entry.offline && now - entry.lastSeenMs <= 2 * entry.freqSeconds * 1000;
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
      const up = this.isUp(entry, now);
      out.push({ hostname, up, active: up ? entry.active : 0, processed: entry.processed });
    }
    return out;
  }
}
