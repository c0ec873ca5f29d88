import type { HrTime } from '@opentelemetry/api';
import type { MetricData } from '@opentelemetry/sdk-metrics';
import { type CeleryEvent, isTaskEvent, isWorkerEvent } from '../decode/CeleryEvent.js';
import type { Logger } from '../log/Logger.js';
import { gaugeMetricData } from '../metrics/BridgeMetricProducer.js';
import { ATTR, DIAGNOSIS_FINDINGS } from '../shared/attributeSpecs.js';
import { METRIC_SPECS } from '../shared/metricSpecs.js';

/** What can be wrong with a Celery setup, as the event stream shows it. */
export type Finding = (typeof DIAGNOSIS_FINDINGS)[number];

/** Hosts tracked at most (a flood of hostnames cannot grow memory); later ones are not checked. */
const MAX_HOSTS = 1000;
/** Tasks received with no `task-sent` ever seen, before saying clients do not send it. */
const RECEIVED_WITHOUT_SENT = 20;
/** A host's clock this far from the bridge's (min over its events of arrival - timestamp). */
const SKEW_SECONDS = 5;
/** Events from a host before its clock is judged. */
const SKEW_SAMPLES = 5;

/**
 * Celery versions whose thread and gevent/eventlet pools drop buffered task events: the worker's
 * EventDispatcher flushes its buffer from several threads without a lock, and events buffered in
 * a race are lost (celery/celery#10434, "Buffered task events are silently dropped when the worker
 * uses the threads pool"; fixed on Celery's main branch after 5.6.3). The pool is not in the
 * events, so the finding names the version and says which pools are affected.
 */
const LAST_LOSSY_VERSION = [5, 6, 3] as const;

interface HostState {
  heartbeats: number;
  /** Highest `processed` in its heartbeats, and the first one seen. */
  firstProcessed?: number;
  processed?: number;
  taskEvents: number;
  version?: string;
  /** Smallest (arrival - event timestamp) seen, seconds, and how many events. */
  minDelay: number;
  maxAhead: number;
  samples: number;
}

/**
 * Tells the user, once each, what is wrong with their Celery setup that the event stream shows:
 *
 * - `no_task_events`: a worker heartbeats and its `processed` count grows, but it sends no task
 *   event: it runs without `-E` / `worker_send_task_events` (README "Turning Celery events on");
 * - `no_task_sent`: tasks are received but no client ever sent `task-sent`
 *   (`task_send_sent_event` off): queue wait is not visible;
 * - `lossy_version`: a worker's Celery version (`sw_ver` in its heartbeats) is one whose threads
 *   and gevent pools drop task events;
 * - `clock_skew`: a host's event timestamps are ahead of the bridge's clock (events from the
 *   future), so span times from it are shifted. A clock behind cannot be told from late delivery;
 *   `celery_otel_bridge.worker.clock_offset` shows the bound.
 *
 * Each is logged once (per host where it has one) and kept as the gauge
 * `celery_otel_bridge.diagnosis.findings` (1 per finding and host), plus each host's clock
 * offset as `celery_otel_bridge.worker.clock_offset`.
 */
export class EventStreamDiagnosis {
  private readonly hosts = new Map<string, HostState>();
  private readonly reported = new Set<string>();
  private readonly findings = new Map<string, Record<string, string>>();
  private received = 0;
  private sent = 0;

  constructor(
    private readonly logger: Logger,
    private readonly nowSeconds: () => number = () => Date.now() / 1000,
  ) {}

  onEvent(event: CeleryEvent): void {
    if (isTaskEvent(event)) {
      if (event.type === 'task-sent') this.sent++;
      else if (event.type === 'task-received') this.received++;
    }
    const hostname = event.hostname;
    if (hostname === undefined) return;
    const host = this.host(hostname);
    if (host === undefined) return;
    this.clock(hostname, host, event.timestamp);
    if (isWorkerEvent(event)) {
      if (event.type === 'worker-heartbeat' || event.type === 'worker-online') host.heartbeats++;
      if (event.processed !== undefined) {
        host.firstProcessed ??= event.processed;
        host.processed = Math.max(host.processed ?? 0, event.processed);
      }
      if (event.swVersion !== undefined && host.version === undefined) {
        host.version = event.swVersion;
        if (isLossyVersion(event.swVersion)) {
          this.report('lossy_version', hostname, `Celery ${event.swVersion}`, event.swVersion);
        }
      }
      if (
        host.taskEvents === 0 &&
        host.heartbeats >= 2 &&
        (host.processed ?? 0) > (host.firstProcessed ?? 0)
      ) {
        this.report(
          'no_task_events',
          hostname,
          'heartbeats and runs tasks but sends no task event',
        );
      }
    } else if (event.type !== 'task-sent') {
      // Its task events are on now (e.g. --enable-events reached it): no longer a finding. The
      // finding is only made while a host has sent no task event, so its first one ends it.
      if (host.taskEvents++ === 0) this.findings.delete(`no_task_events\u0000${hostname}`);
    }
    if (this.sent === 0 && this.received >= RECEIVED_WITHOUT_SENT) {
      this.report('no_task_sent', undefined, `${this.received} tasks received, no task-sent`);
    }
  }

  /** The findings as gauges, for the metric producer. */
  metrics(now: HrTime): MetricData[] {
    const offsets = [...this.hosts]
      .filter(([, host]) => host.samples >= SKEW_SAMPLES)
      .map(([hostname, host]) => ({
        attributes: { [ATTR.WORKER_HOSTNAME]: hostname },
        value: clockOffset(host),
      }));
    return [
      gaugeMetricData(
        {
          ...METRIC_SPECS.diagnosisFindings,
          points: [...this.findings.values()].map((attributes) => ({ attributes, value: 1 })),
        },
        now,
      ),
      gaugeMetricData(
        {
          ...METRIC_SPECS.workerClockOffset,
          points: offsets,
        },
        now,
      ),
    ];
  }

  private host(hostname: string): HostState | undefined {
    let host = this.hosts.get(hostname);
    if (host === undefined) {
      if (this.hosts.size >= MAX_HOSTS) return undefined;
      host = { heartbeats: 0, taskEvents: 0, minDelay: Infinity, maxAhead: -Infinity, samples: 0 };
      this.hosts.set(hostname, host);
    }
    return host;
  }

  private clock(hostname: string, host: HostState, timestamp: number): void {
    const delay = this.nowSeconds() - timestamp;
    host.minDelay = Math.min(host.minDelay, delay);
    host.maxAhead = Math.max(host.maxAhead, -delay);
    host.samples++;
    // Only a clock ahead is certain: events from the future. A clock behind looks the same as
    // events delivered late (a backlog in the bridge's queue): the gauge shows it, no finding.
    if (host.samples >= SKEW_SAMPLES && host.maxAhead >= SKEW_SECONDS) {
      this.report(
        'clock_skew',
        hostname,
        `its event timestamps are ${host.maxAhead.toFixed(1)} s ahead of the bridge's clock`,
      );
    }
  }

  private report(
    finding: Finding,
    hostname: string | undefined,
    what: string,
    /** The worker's Celery version, on a `lossy_version` finding. */
    version?: string,
  ): void {
    const key = `${finding}\u0000${hostname ?? ''}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    const attributes: Record<string, string> = { [ATTR.FINDING]: finding };
    if (hostname !== undefined) attributes[ATTR.WORKER_HOSTNAME] = hostname;
    if (version !== undefined) attributes[ATTR.WORKER_VERSION] = version;
    this.findings.set(key, attributes);
    this.logger.warn(`Celery setup: ${ADVICE[finding]}`, {
      finding,
      ...(hostname === undefined ? {} : { worker: hostname }),
      seen: what,
    });
  }
}

const ADVICE: Record<Finding, string> = {
  no_task_events:
    'a worker runs tasks but sends no task events: start it with -E (or worker_send_task_events = True), or run the bridge with --enable-events',
  no_task_sent:
    'no client sends task-sent: set task_send_sent_event = True in the Celery config of the apps that send tasks, to see the time tasks wait in the queue',
  lossy_version:
    "this worker's Celery version drops task events with the threads, gevent and eventlet pools (celery/celery#10434): use prefork or solo, or a Celery with the fix",
  clock_skew: "a host's clock is off: span times from its events are shifted; run NTP on it",
};

/**
 * Seconds the host's clock is ahead of the bridge's: an event from the future proves it ahead;
 * otherwise the smallest delay seen is the best bound on how far behind it is (delivery
 * latency and a backlog only add to it).
 */
function clockOffset(host: HostState): number {
  return host.maxAhead > 0 ? host.maxAhead : -host.minDelay;
}

/** `5.2.6`, `5.6.3`, `5.5.0rc1` …: at most 5.6.3 (a later or unparsable version is not). */
export function isLossyVersion(version: string): boolean {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (match === null) return false;
  const parts = [Number(match[1]), Number(match[2]), Number(match[3])];
  for (let i = 0; i < 3; i++) {
    const [have, last] = [parts[i] as number, LAST_LOSSY_VERSION[i] as number];
    if (have !== last) return have < last;
  }
  return true;
}
