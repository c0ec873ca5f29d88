export type TraceExporterKind = 'otlp' | 'console';

export interface TraceExporterOptions {
  /** `otlp`: spans go to the OTLP endpoint; `console`: finished traces are printed as trees. */
  readonly kind: TraceExporterKind;
  /** Console: a trace whose root task is in is printed after this long without a new span. */
  readonly consoleQuietMs: number;
}

export type OtlpProtocol = 'http/protobuf' | 'http/json';

/** One signal's OTLP/HTTP exporter settings. */
export interface OtlpSignalOptions {
  readonly url: string;
  readonly protocol: OtlpProtocol;
  /** Secret: never log the values. */
  readonly headers: Record<string, string>;
  readonly compression: 'gzip' | 'none';
  readonly timeoutMs: number;
}

export interface OtlpTraceOptions extends OtlpSignalOptions {
  readonly serviceName: string;
  readonly resourceAttributes: Record<string, string>;
  /** `--service-name-map`: task spans' service names by queue or task-name prefix, in order. */
  readonly serviceNameRules: readonly ServiceNameRule[];
}

/** `queue:<name>=<service>` (exact queue) or `task:<prefix>=<service>` (task-name prefix). */
export interface ServiceNameRule {
  readonly kind: 'queue' | 'task';
  readonly match: string;
  readonly service: string;
}
