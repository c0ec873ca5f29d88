import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpListenError } from '../errors.js';

export interface HttpServerHandlers {
  /** Serves the Prometheus text exposition format. */
  metrics(request: IncomingMessage, response: ServerResponse): void;
  /** Ready = connected to the broker and consuming; the reason when not. */
  readiness(): { ready: boolean; detail: string };
}

/**
 * The bridge's one small HTTP listener:
 * - `GET /metrics`: Prometheus text format;
 * - `GET /healthz`: 200 `ok` while the process runs (liveness probe);
 * - `GET /readyz`: 200 when connected to the broker and consuming, else 503 with the reason.
 */
export class HttpServer {
  private server: Server | undefined;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly handlers: HttpServerHandlers,
  ) {}

  /** Resolves with the bound port once listening (rejects, e.g. when the port is taken). */
  async start(): Promise<number> {
    const server = createServer((request, response) => this.handle(request, response));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const fail = (error: NodeJS.ErrnoException): void =>
        reject(
          new HttpListenError(
            `cannot serve /metrics on ${this.host}:${this.port}: ${error.code ?? error.message}; ` +
              'choose another --http-port (or 0 to turn the listener off) or --http-host',
          ),
        );
      server.once('error', fail);
      server.listen(this.port, this.host, () => {
        server.off('error', fail);
        resolve();
      });
    });
    return (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      this.handlers.metrics(request, response);
    } else if (path === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const { ready, detail } = this.handlers.readiness();
      response
        .writeHead(ready ? 200 : 503, { 'content-type': 'application/json' })
        .end(`${JSON.stringify({ ready, detail })}\n`);
    } else {
      response
        .writeHead(404, { 'content-type': 'text/plain' })
        .end('not found: try /metrics, /healthz or /readyz\n');
    }
  }
}
