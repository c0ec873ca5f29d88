import type { ExportResultCode } from '@opentelemetry/core';

/** What ThreadedOtlpExporter hands its send thread at start (structured-cloned). */
export interface SendThreadData {
  /** The exporter configuration (url, headers, compression, timeout). */
  readonly config: Record<string, unknown>;
  /** `otel.sdk.exporter.*` self-metrics component type, as the SDK's exporter reports. */
  readonly componentType: string;
}

/** Bridge thread -> send thread. */
export type SendRequest =
  | {
      readonly type: 'export';
      readonly id: number;
      readonly bytes: Uint8Array;
      readonly spans: number;
    }
  | { readonly type: 'shutdown' };

/** Send thread -> bridge thread: the outcome of one export. */
export interface SendReply {
  readonly id: number;
  readonly code: ExportResultCode;
  /** The error, flattened (an Error's own fields do not survive structured cloning). */
  readonly error?: {
    readonly name: string;
    readonly message: string;
    /** The HTTP status of an OTLPExporterError, which decides retry or drop. */
    readonly status?: number;
    readonly data?: string;
  };
}

/**
 * Send thread -> bridge thread, once, when the SDK's exporter is loaded and the thread takes
 * exports: before it, the first spans would wait for the thread to start.
 */
export interface SendReady {
  readonly type: 'ready';
}
