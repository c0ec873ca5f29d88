import type { Attributes, Meter } from '@opentelemetry/api';
import type { MetricSpec } from '../shared/metricSpecs.js';

/** Records one value of an observed metric, with its attributes. */
export type Observe = (value: number, attributes?: Attributes) => void;

/**
 * Makes the SDK's asynchronous instrument of a declared metric (an observable counter or gauge,
 * by its kind), read at each collection. Metrics the bridge aggregates itself (histograms, the
 * gauges of current state) go through BridgeMetricProducer instead.
 * https://opentelemetry.io/docs/specs/otel/metrics/api/#asynchronous-instrument-api
 */
export function observeMetric(
  meter: Meter,
  spec: MetricSpec,
  callback: (observe: Observe) => void,
): void {
  const options = { unit: spec.unit, description: spec.description };
  if (spec.kind === 'histogram')
    throw new Error(`${spec.name} is a histogram: the SDK has no observable histogram`);
  const instrument =
    spec.kind === 'counter'
      ? meter.createObservableCounter(spec.name, options)
      : meter.createObservableGauge(spec.name, options);
  instrument.addCallback((result) =>
    callback((value, attributes) => result.observe(value, attributes)),
  );
}
