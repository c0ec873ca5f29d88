import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Worker } from 'node:worker_threads';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { describe, expect, it } from 'vitest';
import { ProtobufSpanSerializer } from '../../src/export/ProtobufSpanSerializer.js';
import { ThreadedOtlpExporter } from '../../src/export/ThreadedOtlpExporter.js';
import { amqpFixtureMessages } from '../support/fixtures.js';
import { OtlpReceiver } from '../support/OtlpReceiver.js';
import { assemble, assemblerEventsOf, decodeAll } from '../support/pipeline.js';

/** The spans the bridge makes of the captured RabbitMQ stream. */
function spansOf(messages: Parameters<typeof decodeAll>[0]) {
  return assemble(assemblerEventsOf(decodeAll(messages).events)).spans;
}

/**
 * The send thread is the compiled one (dist/export/otlpSendThread.js), built before the tests.
 * These tests check what crosses the thread boundary: the bytes, the outcome and the HTTP status
 * that decides between retry and drop, and a thread that dies.
 */
function exportOnce(exporter: ThreadedOtlpExporter, spans = spansOf(amqpFixtureMessages())) {
  // As the export queue does: each span encoded when it is taken, the batch sent later.
  const held = spans.flatMap((span) => exporter.hold(span) ?? []);
  return new Promise<ExportResult>((resolve) => exporter.export(held, resolve));
}

async function server(
  handle: (request: IncomingMessage, response: ServerResponse) => void,
): Promise<{ url: string; close: () => Promise<void>; server: Server }> {
  const http = createServer(handle);
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    server: http,
    close: () =>
      new Promise((resolve) => {
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  };
}

describe('ThreadedOtlpExporter', () => {
  it('says when its thread takes exports, so the bridge consumes only then', async () => {
    // A thread that says it is ready only after a while, and stays until shut down.
    const exporter = new ThreadedOtlpExporter(
      { url: 'http://127.0.0.1:9/v1/traces' },
      undefined,
      new URL(
        'data:text/javascript,' +
          encodeURIComponent(
            "import { parentPort } from 'node:worker_threads';" +
              "setTimeout(() => parentPort.postMessage({ type: 'ready' }), 400);" +
              "parentPort.on('message', (m) => { if (m.type === 'shutdown') parentPort.close(); });",
          ),
      ),
    );
    try {
      let ready = false;
      const waiting = exporter.ready().then(() => (ready = true));
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(ready, 'ready before the thread said so').toBe(false);
      await waiting;
      expect(ready).toBe(true);
    } finally {
      await exporter.shutdown();
    }
  });

  it('is ready, then, once a thread that failed to start has gone (exports fail and retry)', async () => {
    const exporter = new ThreadedOtlpExporter(
      { url: 'http://127.0.0.1:9/v1/traces' },
      undefined,
      new URL('data:text/javascript,throw new Error("no thread")'),
    );
    await expect(exporter.ready()).resolves.toBeUndefined();
    await exporter.shutdown();
  });

  it('delivers the spans from its thread, several batches in a row', async () => {
    const receiver = await OtlpReceiver.start();
    const exporter = new ThreadedOtlpExporter({ url: receiver.tracesUrl, timeoutMillis: 5000 });
    try {
      const spans = spansOf(amqpFixtureMessages());
      const results = await Promise.all([1, 2, 3].map(() => exportOnce(exporter, spans)));
      expect(results.map((r) => r.code)).toEqual([0, 0, 0]);
      expect(receiver.requests).toHaveLength(3);
      expect(receiver.spans).toHaveLength(spans.length * 3);
    } finally {
      await exporter.shutdown();
      await receiver.close();
    }
  });

  it('passes the HTTP status back, so a 400 is dropped and not retried', async () => {
    const collector = await server((_request, response) => {
      response.writeHead(400, { 'content-type': 'text/plain' }).end('bad request');
    });
    const exporter = new ThreadedOtlpExporter({ url: collector.url, timeoutMillis: 5000 });
    try {
      const result = await exportOnce(exporter);
      expect(result.code).toBe(ExportResultCode.FAILED);
      expect((result.error as { code?: unknown }).code).toBe(400);
      expect(result.error?.message).toMatch(/Bad Request|400/);
    } finally {
      await exporter.shutdown();
      await collector.close();
    }
  });

  it('fails what a dead thread held and starts a new one for the next export', async () => {
    let answer = false;
    const collector = await server((request, response) => {
      request.resume();
      // The first request hangs until the thread is killed; later ones succeed.
      if (answer) response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
    const exporter = new ThreadedOtlpExporter({ url: collector.url, timeoutMillis: 5000 });
    try {
      const first = exportOnce(exporter);
      await new Promise((resolve) => collector.server.once('request', resolve));
      await (exporter as unknown as { worker: Worker }).worker.terminate();
      const failed = await first;
      expect(failed.code).toBe(ExportResultCode.FAILED);
      expect(failed.error?.message).toMatch(/send thread/);
      answer = true;
      expect((await exportOnce(exporter)).code).toBe(ExportResultCode.SUCCESS);
    } finally {
      await exporter.shutdown();
      await collector.close();
    }
  });

  it('sends a request body that shares its buffer without detaching its neighbours', async () => {
    const receiver = await OtlpReceiver.start();
    const real = new ProtobufSpanSerializer();
    const one = spansOf(amqpFixtureMessages()).slice(0, 1);
    const body = real.serializeRequest(one);
    // Small Buffers are views into Node's shared pool: this body shares its ArrayBuffer.
    const pooled = Buffer.from(body);
    const neighbour = Buffer.from('still here');
    expect(pooled.buffer).toBe(neighbour.buffer);
    const exporter = new ThreadedOtlpExporter(
      { url: receiver.tracesUrl, timeoutMillis: 5000 },
      { encode: (span) => real.encode(span), serializeEncoded: () => pooled },
    );
    try {
      expect((await exportOnce(exporter, one)).code).toBe(ExportResultCode.SUCCESS);
      expect(neighbour.toString()).toBe('still here');
      expect(pooled.equals(body)).toBe(true);
      expect(receiver.spans).toHaveLength(1);
    } finally {
      await exporter.shutdown();
      await receiver.close();
    }
  });

  it('refuses exports after shutdown', async () => {
    const receiver = await OtlpReceiver.start();
    const exporter = new ThreadedOtlpExporter({ url: receiver.tracesUrl, timeoutMillis: 5000 });
    try {
      await exporter.shutdown();
      const after = await exportOnce(exporter, spansOf(amqpFixtureMessages()).slice(0, 1));
      expect(after.code).toBe(ExportResultCode.FAILED);
      expect(receiver.requests).toHaveLength(0);
    } finally {
      await receiver.close();
    }
  });
});
