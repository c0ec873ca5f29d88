import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { HttpListenError } from '../shared/errors.js';

export interface HttpServerHandlers {
  /**
   * Serves the Prometheus text exposition format. Run one at a time (see HttpServer); a throw or a
   * rejected promise is answered with 500 and reported to `failed`.
   */
  metrics(request: IncomingMessage, response: ServerResponse): void | Promise<void>;
  /** Ready = connected to the broker and consuming; the reason when not. */
  readiness(): { ready: boolean; detail: string };
  /** The /metrics handler failed (counted and logged once by the caller); the bridge goes on. */
  failed?(error: unknown): void;
}

/** How much of the process one client or many may hold. Defaults: HTTP_LIMITS. */
export interface HttpLimits {
  /** Open connections at most; more are closed on arrival. */
  readonly maxConnections: number;
  /** Open connections from one remote address at most, so one client cannot take them all. */
  readonly maxConnectionsPerAddress: number;
  /** A client must have sent its request headers within this long. */
  readonly headersTimeoutMs: number;
  /** ...and its whole request within this long. */
  readonly requestTimeoutMs: number;
  /** A connection with nothing sent or received this long (a client that stopped reading too). */
  readonly idleTimeoutMs: number;
  /** A kept-alive connection waiting for its next request. */
  readonly keepAliveTimeoutMs: number;
  /** A /metrics answer not finished within this long is cut (its slot goes to the next). */
  readonly metricsTimeoutMs: number;
  /** /metrics requests waiting for the one in progress; more are answered 503. */
  readonly maxWaitingMetrics: number;
}

/**
 * A scraper needs one connection and answers within seconds; a health probe likewise. Slow or
 * idle clients are dropped within seconds instead of holding a socket (Node's defaults: 60 s for
 * headers, 300 s for the request, checked every 30 s).
 */
export const HTTP_LIMITS: HttpLimits = {
  maxConnections: 128,
  maxConnectionsPerAddress: 32,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  idleTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  metricsTimeoutMs: 30_000,
  maxWaitingMetrics: 16,
};

/**
 * The bridge's one small HTTP listener:
 * - `GET /metrics`: Prometheus text format;
 * - `GET /healthz`: 200 `ok` while the process runs (liveness probe);
 * - `GET /readyz`: 200 when connected to the broker and consuming, else 503 with the reason.
 *
 * Bounded (HttpLimits): connections in total and per remote address, header, request and idle
 * timeouts, and one /metrics answer built at a time (each build walks every series: concurrent
 * scrapes would multiply that work and its memory), a few more waiting, the rest answered 503.
 * /healthz and /readyz are answered at once, never behind a /metrics build.
 */
export class HttpServer {
  private server: Server | undefined;
  private readonly limits: HttpLimits;
  private readonly perAddress = new Map<string, number>();
  private metricsBusy = false;
  private readonly waitingMetrics: (() => void)[] = [];

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly handlers: HttpServerHandlers,
    limits: Partial<HttpLimits> = {},
  ) {
    this.limits = { ...HTTP_LIMITS, ...limits };
  }

  /** Resolves with the bound port once listening (rejects, e.g. when the port is taken). */
  async start(): Promise<number> {
    const limits = this.limits;
    const server = createServer(
      {
        headersTimeout: limits.headersTimeoutMs,
        requestTimeout: limits.requestTimeoutMs,
        keepAliveTimeout: limits.keepAliveTimeoutMs,
        // How often Node checks the two timeouts above (default 30 s, which is what a slow client
        // would really get).
        connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
      },
      (request, response) => this.handle(request, response),
    );
    server.maxConnections = limits.maxConnections;
    server.setTimeout(limits.idleTimeoutMs, (socket) => socket.destroy());
    server.on('connection', (socket) => this.admit(socket));
    // A client's broken request (bad headers, a timeout) is answered or closed by Node; it must
    // never reach the process as an error.
    server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
      if (socket.writable && !socket.writableEnded) {
        const status =
          error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
      }
      socket.destroy();
    });
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

  /** Counts the connection against its address; closes it past the per-address cap. */
  private admit(socket: Socket): void {
    const address = socket.remoteAddress ?? '';
    const count = (this.perAddress.get(address) ?? 0) + 1;
    if (count > this.limits.maxConnectionsPerAddress) {
      socket.destroy();
      return;
    }
    this.perAddress.set(address, count);
    socket.once('close', () => {
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    });
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      this.serveMetrics(request, response);
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

  /** One /metrics build at a time; a few wait their turn, more are told to come back. */
  private serveMetrics(request: IncomingMessage, response: ServerResponse): void {
    // Waiting for a build is the bridge's doing, not an idle client: it gets the build's time.
    const socket = request.socket;
    socket.setTimeout(this.limits.metricsTimeoutMs);
    response.once('finish', () => socket.setTimeout(this.limits.idleTimeoutMs));
    if (!this.metricsBusy) {
      this.runMetrics(request, response);
      return;
    }
    if (this.waitingMetrics.length >= this.limits.maxWaitingMetrics) {
      response
        .writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' })
        .end('busy: another /metrics answer is being built\n');
      return;
    }
    const turn = (): void => {
      if (response.destroyed) this.nextMetrics();
      else this.runMetrics(request, response);
    };
    this.waitingMetrics.push(turn);
    // A waiter that hangs up gives its place back when its turn would come (turn above).
  }

  private runMetrics(request: IncomingMessage, response: ServerResponse): void {
    this.metricsBusy = true;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.nextMetrics();
    };
    const timer = setTimeout(() => {
      this.handlers.failed?.(
        new Error(`the /metrics answer was not done within ${this.limits.metricsTimeoutMs} ms`),
      );
      response.destroy();
      finish();
    }, this.limits.metricsTimeoutMs);
    timer.unref();
    response.once('close', finish);
    // A handler still writing after a failure or the cut above must not end the process.
    response.on('error', () => undefined);
    try {
      const pending = this.handlers.metrics(request, response);
      if (pending !== undefined) {
        pending.catch((error: unknown) => {
          this.fail(response, error);
          finish();
        });
      }
    } catch (error) {
      this.fail(response, error);
      finish();
    }
  }

  private nextMetrics(): void {
    const next = this.waitingMetrics.shift();
    if (next === undefined) this.metricsBusy = false;
    else next();
  }

  private fail(response: ServerResponse, error: unknown): void {
    this.handlers.failed?.(error);
    if (!response.headersSent && !response.destroyed) {
      response
        .writeHead(500, { 'content-type': 'text/plain' })
        .end('cannot build the metrics; see the bridge log\n');
    } else {
      response.destroy();
    }
  }
}
