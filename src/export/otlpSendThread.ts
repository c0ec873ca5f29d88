/**
 * Entry point of the worker thread that sends serialised span batches (ThreadedOtlpExporter).
 * It runs the SDK's own OTLP/HTTP export delegate, with a pass-through serializer: the bytes come
 * ready-made from the bridge's thread, and everything about sending them (headers, gzip,
 * timeouts, retries of 429/502/503/504, partial-success responses) is exactly the SDK's.
 */
import { parentPort, workerData } from 'node:worker_threads';
import {
  OTLPExporterBase,
  type OTLPExporterNodeConfigBase,
} from '@opentelemetry/otlp-exporter-base';
import {
  convertLegacyHttpOptions,
  createOtlpHttpExportDelegate,
} from '@opentelemetry/otlp-exporter-base/node-http';
import {
  type IExportTraceServiceResponse,
  type ISerializer,
  ProtobufTraceSerializer,
} from '@opentelemetry/otlp-transformer';
import type { SendReady, SendReply, SendRequest, SendThreadData } from './sendThreadMessages.js';

/** A batch as the delegate sees it: its request body, and its span count for self-metrics. */
interface SerialisedBatch {
  readonly bytes: Uint8Array;
  readonly spans: number;
}

const passThrough: ISerializer<SerialisedBatch, IExportTraceServiceResponse> = {
  serializeRequest: (batch) => batch.bytes,
  deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data),
};

const port = parentPort;
if (port === null) throw new Error('otlpSendThread must run as a worker thread');
const { config, componentType } = workerData as SendThreadData;
const exporter = new OTLPExporterBase<SerialisedBatch>(
  createOtlpHttpExportDelegate(
    convertLegacyHttpOptions(config as OTLPExporterNodeConfigBase, 'TRACES', 'v1/traces', {
      'Content-Type': 'application/x-protobuf',
    }),
    passThrough,
    componentType,
    { name: 'span', countItems: (batch) => batch.spans },
    undefined,
  ),
);

port.postMessage({ type: 'ready' } satisfies SendReady);

port.on('message', (request: SendRequest) => {
  if (request.type === 'shutdown') {
    void exporter.shutdown().finally(() => port.close());
    return;
  }
  exporter.export({ bytes: request.bytes, spans: request.spans }, (result) => {
    const error: (Error & { code?: unknown; data?: unknown }) | undefined = result.error;
    const reply: SendReply = {
      id: request.id,
      code: result.code,
      error:
        error === undefined
          ? undefined
          : {
              name: error.name,
              message: error.message,
              status: typeof error.code === 'number' ? error.code : undefined,
              data: typeof error.data === 'string' ? error.data : undefined,
            },
    };
    port.postMessage(reply);
  });
});
