import type { OtlpSignalOptions } from '../export/ExportOptions.js';

export interface WorkerAttributeOptions {
  /** `hostname`: the worker's node name as an attribute; `off`: no worker attribute. */
  readonly mode: 'hostname' | 'off';
  /** Removed from the hostname (e.g. pod suffixes), so restarts do not make new series. */
  readonly strip?: RegExp;
}

export interface MetricsOptions {
  readonly otlp: OtlpSignalOptions;
  /** Push metrics over OTLP (OTEL_METRICS_EXPORTER includes `otlp`, the default). */
  readonly otlpEnabled: boolean;
  readonly exportIntervalMs: number;
  readonly exportTimeoutMs: number;
  /** OTEL_NODE_RESOURCE_DETECTORS: how the bridge's own resource is detected (default `all`). */
  readonly resourceDetectors: readonly string[];
  /** The HTTP listener for /metrics, /healthz, /readyz; port 0 turns it off. */
  readonly httpHost: string;
  readonly httpPort: number;
  readonly workerAttribute: WorkerAttributeOptions;
  /** Distinct task names given their own series; later ones share `__other__`. */
  readonly maxTaskNames: number;
  /** Queues whose length is reported even before an event names them. */
  readonly queues: readonly string[];
  readonly queueLengthIntervalMs: number;
  /** A worker not heard from for this long is forgotten (its series removed). */
  readonly workerForgetAfterMs: number;
}
