import type { Meter } from '@opentelemetry/api';

/** What the flow-control metrics read when a reader collects. */
export interface IntakeMetricSources {
  /** True while the bridge has stopped taking messages from the broker. */
  paused(): boolean;
  /** Seconds spent paused since start, the current pause included. */
  pausedSeconds(): number;
  /** Messages ready in the bridge's own RabbitMQ queue (undefined on Redis). */
  brokerBacklog(): number | undefined;
  /** Bytes waiting in the Redis read buffer (undefined on RabbitMQ). */
  bufferedBytes(): number | undefined;
  /** Spans queued or being sent to the collector. */
  spansQueued(): number;
}

/**
 * Flow control, for alerts: how long the bridge held the broker back, how much waits where, so a
 * user sees a backlog before it reaches a bound that drops (docs/reliability.md, "Nothing lost").
 */
export function registerIntakeMetrics(meter: Meter, sources: IntakeMetricSources): void {
  meter
    .createObservableGauge('celery_otel_bridge.intake.paused', {
      unit: '1',
      description:
        '1 while the bridge takes nothing from the broker because the export queue is past its high-water mark',
    })
    .addCallback((result) => result.observe(sources.paused() ? 1 : 0));
  meter
    .createObservableCounter('celery_otel_bridge.intake.paused_time', {
      unit: 's',
      description: 'Time spent paused (the collector was slower than the event stream)',
    })
    .addCallback((result) => result.observe(sources.pausedSeconds()));
  meter
    .createObservableGauge('celery_otel_bridge.broker.backlog', {
      unit: '{message}',
      description:
        "Messages ready in the bridge's own RabbitMQ queue, read every few seconds (up to --amqp-prefetch more are delivered and not yet acknowledged)",
    })
    .addCallback((result) => {
      const backlog = sources.brokerBacklog();
      if (backlog !== undefined) result.observe(backlog);
    });
  meter
    .createObservableGauge('celery_otel_bridge.intake.buffered', {
      unit: 'By',
      description:
        'Bytes of Redis messages read and waiting in the bridge (--redis-max-buffered-bytes at most)',
    })
    .addCallback((result) => {
      const bytes = sources.bufferedBytes();
      if (bytes !== undefined) result.observe(bytes);
    });
  meter
    .createObservableGauge('celery_otel_bridge.spans.queued', {
      unit: '{span}',
      description:
        'Spans waiting for the collector or being sent (OTEL_BSP_MAX_QUEUE_SIZE at most)',
    })
    .addCallback((result) => result.observe(sources.spansQueued()));
}
