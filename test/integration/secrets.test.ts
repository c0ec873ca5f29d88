import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { type IncomingHttpHeaders, type Server, createServer } from 'node:http';
import { type AddressInfo, connect as netConnect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BridgeProcess, startBridge } from '../support/bridgeProcess.js';
import { requireBroker } from '../support/celeryWorker.js';
import { redisFixturePayloads } from '../support/fixtures.js';
import { freePort } from '../support/testUtils.js';

/**
 * No secret in any log line or error: the CLI runs every path that logs (start at debug level,
 * wrong broker passwords on RabbitMQ and Redis, unreachable hosts, invalid configuration with a
 * password in the URL, OTLP exports failing against an unreachable collector and against one
 * answering 401) and neither the broker password nor any OTLP header value (nor a password in the
 * OTLP endpoint URL) may appear on stdout or stderr.
 *
 * A private redis-server with `requirepass` (on an ephemeral port, started and stopped here) gives
 * a broker that needs a password without reconfiguring the shared Redis.
 */
const token = (label: string): string => `${label}-${randomBytes(6).toString('hex')}`;
const BROKER_PASSWORD = token('BrokerPw');
const WRONG_PASSWORD = token('WrongPw');
const AUTH_HEADER = token('HdrBearer');
const API_KEY_HEADER = token('HdrApiKey');
const TRACES_HEADER = token('HdrTraces');
const URL_PASSWORD = token('OtlpUrlPw');
const SECRETS = [
  BROKER_PASSWORD,
  WRONG_PASSWORD,
  AUTH_HEADER,
  API_KEY_HEADER,
  TRACES_HEADER,
  URL_PASSWORD,
];

const OTLP_HEADERS_ENV = {
  OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer%20${AUTH_HEADER},x-api-key=${API_KEY_HEADER}`,
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: `x-trace-token=${TRACES_HEADER}`,
};

/** Asserts no secret, nor its percent-encoded form, is in what the bridge printed. */
function expectNoSecret(bridge: BridgeProcess, label: string): void {
  const output = `${bridge.logLines.join('\n')}\n${bridge.stdout()}`;
  for (const secret of SECRETS) {
    for (const form of new Set([secret, encodeURIComponent(secret)])) {
      expect(output.includes(form), `${label}: a secret appears in the output:\n${output}`).toBe(
        false,
      );
    }
  }
}

/** A collector that refuses everything with 401 and echoes the request headers (hostile). */
interface RefusingCollector {
  readonly url: string;
  readonly requests: { path: string; headers: IncomingHttpHeaders }[];
  close(): Promise<void>;
}

async function startRefusingCollector(): Promise<RefusingCollector> {
  const requests: { path: string; headers: IncomingHttpHeaders }[] = [];
  const server: Server = createServer((request, response) => {
    requests.push({ path: request.url ?? '', headers: request.headers });
    request.resume();
    request.on('end', () => {
      response.writeHead(401, 'Unauthorized', { 'content-type': 'text/plain' });
      response.end(`denied: ${JSON.stringify(request.headers)}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let redisPort: number;
let redisProcess: ChildProcess | undefined;
let redisDir: string;
let collector: RefusingCollector;
const bridges: BridgeProcess[] = [];

function bridge(args: string[], env: Record<string, string>): BridgeProcess {
  const started = startBridge(args, {
    CELERY_OTEL_BRIDGE_LOG_LEVEL: 'debug',
    CELERY_OTEL_BRIDGE_AMQP_QUEUE: `bridge-secrets-${randomBytes(4).toString('hex')}`,
    OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
    OTEL_EXPORTER_OTLP_TIMEOUT: '1000',
    OTEL_METRIC_EXPORT_INTERVAL: '300',
    OTEL_METRIC_EXPORT_TIMEOUT: '1000',
    OTEL_BSP_SCHEDULE_DELAY: '100',
    ...OTLP_HEADERS_ENV,
    ...env,
  });
  bridges.push(started);
  return started;
}

async function replayFixture(): Promise<void> {
  const publisher = new Redis({ port: redisPort, host: '127.0.0.1', password: BROKER_PASSWORD });
  try {
    for (const { channel, payload } of redisFixturePayloads()) {
      await publisher.publish(channel, payload);
    }
  } finally {
    publisher.disconnect();
  }
}

beforeAll(async () => {
  await requireBroker('amqp');
  await requireBroker('redis');
  collector = await startRefusingCollector();
  redisDir = await mkdtemp(join(tmpdir(), 'celery-otel-bridge-redis-'));
  redisPort = await freePort();
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(redisPort),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      redisDir,
      '--requirepass',
      BROKER_PASSWORD,
    ],
    { stdio: 'ignore' },
  );
  redisProcess = child;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = new Redis({
      port: redisPort,
      host: '127.0.0.1',
      password: BROKER_PASSWORD,
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
    });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      break;
    } catch (error) {
      probe.disconnect();
      if (Date.now() > deadline)
        throw new Error(`private redis-server did not start: ${String(error)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
});

afterAll(async () => {
  for (const started of bridges) await started.stop();
  if (redisProcess !== undefined && redisProcess.exitCode === null) {
    const exited = new Promise((resolve) => redisProcess?.once('exit', resolve));
    redisProcess.kill('SIGTERM');
    await exited;
  }
  await collector?.close();
  if (redisDir !== undefined) await rm(redisDir, { recursive: true, force: true });
});

describe('secrets never reach the log', () => {
  it('start, consume, enable_events and exports refused with 401, at debug level', async () => {
    const running = bridge(['--enable-events', '--enable-events-interval-ms', '200'], {
      CELERY_BROKER_URL: `redis://:${BROKER_PASSWORD}@127.0.0.1:${redisPort}/0`,
    });
    await running.waitForLog(/"msg":"subscribed/);
    await replayFixture();
    // Both signals were refused, and the bridge said so.
    await running.waitForLog(/the collector refused spans \(HTTP 401/);
    await running.waitForLog(/metrics export failed/);
    const traces = collector.requests.filter((r) => r.path === '/v1/traces');
    const metrics = collector.requests.filter((r) => r.path === '/v1/metrics');
    expect(traces.length).toBeGreaterThan(0);
    expect(metrics.length).toBeGreaterThan(0);
    // The headers were sent (so they were there to leak).
    expect(traces[0]?.headers['authorization']).toBe(`Bearer ${AUTH_HEADER}`);
    expect(traces[0]?.headers['x-trace-token']).toBe(TRACES_HEADER);
    expect(metrics[0]?.headers['x-api-key']).toBe(API_KEY_HEADER);
    expect(await running.stop()).toBe(0);
    expectNoSecret(running, 'running bridge');
  }, 60_000);

  it('exports to an unreachable collector whose URL holds a password', async () => {
    const closedPort = await freePort();
    const running = bridge([], {
      CELERY_BROKER_URL: `redis://:${BROKER_PASSWORD}@127.0.0.1:${redisPort}/0`,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://otlp:${URL_PASSWORD}@127.0.0.1:${closedPort}`,
    });
    await running.waitForLog(/"msg":"subscribed/);
    await replayFixture();
    await running.waitForLog(/the collector is failing/);
    await running.waitForLog(/metrics export failed/);
    expect(running.logLines.join('\n')).toContain(`http://otlp:***@127.0.0.1:${closedPort}`);
    await running.stop();
    expectNoSecret(running, 'unreachable collector');
  }, 60_000);

  it('connect failures: wrong passwords, no password, unreachable hosts', async () => {
    const cases: { label: string; url: string; expected: RegExp }[] = [
      {
        label: 'RabbitMQ ACCESS_REFUSED',
        url: `amqp://guest:${WRONG_PASSWORD}@127.0.0.1:5672//`,
        expected: /ACCESS.REFUSED/,
      },
      {
        label: 'Redis WRONGPASS',
        url: `redis://:${WRONG_PASSWORD}@127.0.0.1:${redisPort}/0`,
        expected: /WRONGPASS/,
      },
      {
        label: 'Redis WRONGPASS for a user',
        url: `redis://nosuchuser:${BROKER_PASSWORD}@127.0.0.1:6379/0`,
        expected: /WRONGPASS/,
      },
      {
        label: 'Redis NOAUTH',
        url: `redis://127.0.0.1:${redisPort}/0`,
        expected: /NOAUTH/,
      },
      {
        label: 'RabbitMQ unreachable',
        url: `amqp://guest:${BROKER_PASSWORD}@127.0.0.1:1//`,
        expected: /ECONNREFUSED/,
      },
      {
        label: 'Redis unknown host',
        url: `rediss://:${BROKER_PASSWORD}@nonexistent.invalid:6379/0`,
        expected: /ENOTFOUND|EAI_AGAIN/,
      },
    ];
    const runs = cases.map((c) => ({
      ...c,
      process: bridge(['--connect-timeout-ms', '1000'], { CELERY_BROKER_URL: c.url }),
    }));
    for (const run of runs) {
      expect(await run.process.exited, run.label).toBe(1);
      expect(run.process.logLines.join('\n'), run.label).toMatch(run.expected);
      expectNoSecret(run.process, run.label);
    }
  }, 60_000);

  it('invalid configuration with passwords in URLs and headers', async () => {
    const cases: { label: string; args: string[]; env: Record<string, string> }[] = [
      {
        label: 'broker port',
        args: ['--broker', `amqp://u:${BROKER_PASSWORD}@host:port//`],
        env: {},
      },
      {
        label: 'unencoded @ in the password',
        args: ['--broker', `amqp://u:x@${BROKER_PASSWORD}@host:port//`],
        env: {},
      },
      {
        label: 'Redis db',
        args: [],
        env: { CELERY_BROKER_URL: `redis://:${BROKER_PASSWORD}@host:6379/notadb` },
      },
      { label: 'scheme', args: ['--broker', `ftp://u:${BROKER_PASSWORD}@host/`], env: {} },
      {
        label: 'TLS flag on a plain URL',
        args: ['--broker', `amqp://u:${BROKER_PASSWORD}@host//`, '--broker-tls-insecure'],
        env: {},
      },
      {
        label: 'OTLP endpoint',
        args: ['--otlp-endpoint', `http://otlp:${URL_PASSWORD}@host:port`],
        env: {},
      },
      {
        label: 'OTLP headers',
        args: [],
        env: { OTEL_EXPORTER_OTLP_HEADERS: `authorization=${AUTH_HEADER}%zz` },
      },
      {
        label: 'OTLP traces headers',
        args: [],
        env: { OTEL_EXPORTER_OTLP_TRACES_HEADERS: `${TRACES_HEADER}` },
      },
    ];
    const runs = cases.map((c) => ({ ...c, process: bridge(c.args, c.env) }));
    for (const run of runs) {
      expect(await run.process.exited, run.label).toBe(2);
      expect(run.process.logLines.join('\n'), run.label).toContain('invalid configuration');
      expectNoSecret(run.process, run.label);
    }
  }, 60_000);
});

/** Whether a TCP connection to host:port is accepted within 3 s. */
function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host, port });
    const done = (result: boolean): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(3_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

describe('the HTTP listener binds where configured', () => {
  const otherAddress = Object.values(networkInterfaces())
    .flat()
    .find((entry) => entry !== undefined && entry.family === 'IPv4' && !entry.internal)?.address;

  it('--http-host 127.0.0.1 is not reachable on another local address', async () => {
    const port = await freePort();
    const running = bridge(['--http-host', '127.0.0.1', '--http-port', String(port)], {
      CELERY_BROKER_URL: `redis://:${BROKER_PASSWORD}@127.0.0.1:${redisPort}/0`,
      OTEL_METRICS_EXPORTER: 'none',
    });
    const line = await running.waitForLog(/"msg":"serving \/metrics/);
    expect(JSON.parse(line)).toMatchObject({ host: '127.0.0.1', port });
    expect(await reachable('127.0.0.1', port)).toBe(true);
    if (otherAddress !== undefined) expect(await reachable(otherAddress, port)).toBe(false);
    await running.stop();

    // The control: the default (all interfaces) is reachable on that address.
    if (otherAddress !== undefined) {
      const open = bridge(['--http-port', String(port)], {
        CELERY_BROKER_URL: `redis://:${BROKER_PASSWORD}@127.0.0.1:${redisPort}/0`,
        OTEL_METRICS_EXPORTER: 'none',
      });
      await open.waitForLog(/"msg":"serving \/metrics/);
      expect(await reachable(otherAddress, port)).toBe(true);
      await open.stop();
    }
  }, 30_000);
});
