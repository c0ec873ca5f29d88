import type { WorkerEvent } from '../decode/CeleryEvent.js';

export interface WorkerStatus {
  readonly hostname: string;
  readonly up: boolean;
  /** Tasks the worker was running at its last heartbeat. */
  readonly active: number;
  readonly processed: number;
  /** 1, 5 and 15 minute load averages of the worker's host at its last heartbeat. */
  readonly loadavg?: readonly [number, number, number];
}

interface WorkerEntry {
  lastSeenMs: number;
  /** Down and already handed out by takeNewlyDown. */
  reportedDown: boolean;
  freqSeconds: number;
  offline: boolean;
  active: number;
  processed: number;
  loadavg?: readonly [number, number, number];
}

/**
 * Worker liveness from Celery's heartbeats. Celery itself considers a worker offline once no
 * heartbeat arrived for 2 x `freq` (celery/events/state.py `heartbeat_expires`,
 * HEARTBEAT_EXPIRE_WINDOW = 200 %), or at once on `worker-offline`. Times are the bridge's own
 * arrival times, not the event timestamps, so clock skew between hosts does not matter.
 * Workers silent for `forgetAfterMs` are forgotten, so churning pod names do not pile up series.
 * At most `maxWorkers` are tracked, in order of their last event: when full, a new worker takes
 * the place of the least recently seen one if that one is down and was reported so (its tasks
 * were already given up on); else it is not tracked. So hostnames made up by a flood of events
 * (down within seconds, sending no heartbeats) give their places back to real workers.
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
    if (entry !== undefined) {
      // Most recently seen last: the least recently seen is the first in the map.
      this.workers.delete(event.hostname);
      this.workers.set(event.hostname, entry);
    } else {
      if (this.workers.size >= this.maxWorkers && !this.forgetLeastRecentIfDown()) return;
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
    if (event.loadavg !== undefined) entry.loadavg = event.loadavg;
  }

  private forgetLeastRecentIfDown(): boolean {
    const oldest = this.workers.entries().next().value;
    if (oldest === undefined) return false;
    const [hostname, entry] = oldest;
    if (!entry.reportedDown || this.isUp(entry, this.nowMs())) return false;
    this.workers.delete(hostname);
    return true;
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
      out.push({
        hostname,
        up,
        active: up ? entry.active : 0,
        processed: entry.processed,
        loadavg: entry.loadavg,
      });
    }
    return out;
  }
}
