import type { Meter } from '@opentelemetry/api';
import { METRIC_SPECS } from '../shared/metricSpecs.js';
import { observeMetric } from './observeMetric.js';

/** What the flow-control metrics read when a reader collects. */
export interface IntakeMetricSources {
  /** True while the bridge has stopped taking messages from the broker. */
  paused(): boolean;
  /** Seconds spent paused since start, the current pause included. */
  pausedSeconds(): number;
  /** Messages ready in the bridge's own RabbitMQ queue (undefined on Redis). */
  brokerBacklog(): number | undefined;
  /** Bytes waiting in the broker's read thread. */
  bufferedBytes(): number;
  /** Spans queued or being sent to the collector. */
  spansQueued(): number;
}

/**
 * Flow control, for alerts: how long the bridge held the broker back, how much waits where, so a
 * user sees a backlog before it reaches a bound that drops (docs/reliability.md, "Nothing lost").
 */
export function registerIntakeMetrics(meter: Meter, sources: IntakeMetricSources): void {
  observeMetric(meter, METRIC_SPECS.intakePaused, (observe) => observe(sources.paused() ? 1 : 0));
  observeMetric(meter, METRIC_SPECS.intakePausedTime, (observe) =>
    observe(sources.pausedSeconds()),
  );
  observeMetric(meter, METRIC_SPECS.brokerBacklog, (observe) => {
    const backlog = sources.brokerBacklog();
    if (backlog !== undefined) observe(backlog);
  });
  observeMetric(meter, METRIC_SPECS.intakeBuffered, (observe) => observe(sources.bufferedBytes()));
  observeMetric(meter, METRIC_SPECS.spansQueued, (observe) => observe(sources.spansQueued()));
}
