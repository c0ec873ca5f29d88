import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BridgeProcess, deleteBridgeQueue, startBridge } from '../support/bridgeProcess.js';
import {
  AMQP_URL,
  type CeleryWorker,
  REDIS_URL,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { OtlpReceiver, taskIdsWithSpans } from '../support/OtlpReceiver.js';
import {
  type TlsMaterial,
  type TlsProxy,
  makeTlsMaterial,
  startTlsProxy,
} from '../support/tlsProxy.js';
import { sleep } from '../support/testUtils.js';

/**
 * amqps:// and rediss:// against a real TLS handshake: a throwaway CA and certificates made with
 * openssl, a TLS-terminating proxy in front of the real RabbitMQ / Redis, the bridge CLI on the
 * TLS side and a real Celery worker on the plain side; spans must arrive at a real OTLP receiver.
 */
const cases = [
  {
    broker: 'amqp' as const,
    plainUrl: AMQP_URL,
    targetPort: 5672,
    tlsUrl: (port: number, host = 'localhost') => `amqps://guest:guest@${host}:${port}//`,
  },
  {
    broker: 'redis' as const,
    plainUrl: REDIS_URL,
    targetPort: 6379,
    tlsUrl: (port: number, host = 'localhost') => `rediss://${host}:${port}/0`,
  },
];

let material: TlsMaterial;
let receiver: OtlpReceiver;

beforeAll(async () => {
  material = await makeTlsMaterial();
  receiver = await OtlpReceiver.start();
});

afterAll(async () => {
  await receiver?.close();
  await material?.remove();
});

describe.each(cases)('TLS to $broker', ({ broker, plainUrl, targetPort, tlsUrl }) => {
  const queue = randomName(`tls-${broker}`);
  const bridgeQueue = randomName('bridge-tls');
  let worker: CeleryWorker | undefined;
  const proxies: TlsProxy[] = [];
  const bridges: BridgeProcess[] = [];

  const proxy = async (requireClientCert = false): Promise<TlsProxy> => {
    const started = await startTlsProxy({ material, targetPort, requireClientCert });
    proxies.push(started);
    return started;
  };
  const bridge = (port: number, args: string[], host?: string): BridgeProcess => {
    const started = startBridge(args, {
      CELERY_BROKER_URL: tlsUrl(port, host),
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '200',
      OTEL_METRICS_EXPORTER: 'none',
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
    });
    bridges.push(started);
    return started;
  };
  /** Runs three tasks on the plain broker and waits for their spans. */
  const tasksArrive = async (): Promise<void> => {
    const { adds } = (await produce(plainUrl, queue, 'adds')) as { adds: string[] };
    expect(adds).toHaveLength(3);
    await receiver.waitForSpans((spans) => {
      const ids = taskIdsWithSpans(spans);
      return adds.every((id) => ids.has(id));
    }, 30_000);
  };

  beforeAll(async () => {
    await requireBroker(broker);
    worker = await startCeleryWorker({ brokerUrl: plainUrl, queue, pool: 'solo' });
  }, 60_000);

  afterAll(async () => {
    for (const started of bridges) await started.stop();
    await worker?.stop();
    for (const started of proxies) await started.close();
    await deleteTestQueue(plainUrl, queue).catch(() => undefined);
    await deleteBridgeQueue(plainUrl, bridgeQueue).catch(() => undefined);
  });

  it('consumes through TLS with --broker-tls-ca-file, queue lengths too', async () => {
    const tls = await proxy();
    const running = bridge(tls.port, [
      '--broker-tls-ca-file',
      material.caFile,
      '--queues',
      queue,
      '--queue-length-interval-ms',
      '200',
      '--connect-timeout-ms',
      '10000',
    ]);
    await running.waitForLog(/"msg":"(consuming|subscribed)/);
    await tasksArrive();
    // The event consumer and the queue-length reader: two TLS sessions through the proxy.
    const deadline = Date.now() + 10_000;
    while (tls.sessions < 2 && Date.now() < deadline) await sleep(100);
    expect(tls.sessions).toBeGreaterThanOrEqual(2);
    expect(tls.handshakeErrors).toEqual([]);
    expect(tls.serverNames).toContain('localhost');
    expect(running.logLines.join('\n')).not.toMatch(/cannot read queue lengths/);
    expect(await running.stop()).toBe(0);
  }, 60_000);

  it('without the CA exits 1 with one clear message', async () => {
    const tls = await proxy();
    const running = bridge(tls.port, ['--connect-timeout-ms', '1500']);
    expect(await running.exitedWithin(20_000)).toBe(1);
    const errors = running.logLines.filter((line) => line.includes('"level":"error"'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(
      `TLS handshake with localhost:${tls.port} failed: self-signed certificate in certificate ` +
        "chain; pass --broker-tls-ca-file with the CA that signed the broker's certificate",
    );
  }, 30_000);

  it('with an unrelated CA says the CA file does not match', async () => {
    const tls = await proxy();
    const running = bridge(tls.port, [
      '--broker-tls-ca-file',
      material.otherCaFile,
      '--connect-timeout-ms',
      '500',
    ]);
    expect(await running.exitedWithin(20_000)).toBe(1);
    expect(running.logLines.join('\n')).toContain(
      "--broker-tls-ca-file does not hold the CA that signed the broker's certificate",
    );
  }, 30_000);

  it('authenticates with a client certificate when the broker requires one', async () => {
    const tls = await proxy(true);
    const refused = bridge(tls.port, [
      '--broker-tls-ca-file',
      material.caFile,
      '--connect-timeout-ms',
      '500',
    ]);
    expect(await refused.exitedWithin(20_000)).toBe(1);
    expect(refused.logLines.join('\n')).toContain(
      'the broker asks for a client certificate: pass --broker-tls-cert-file and --broker-tls-key-file',
    );

    const running = bridge(tls.port, [
      '--broker-tls-ca-file',
      material.caFile,
      '--broker-tls-cert-file',
      material.clientCertFile,
      '--broker-tls-key-file',
      material.clientKeyFile,
      '--connect-timeout-ms',
      '10000',
    ]);
    await running.waitForLog(/"msg":"(consuming|subscribed)/);
    await tasksArrive();
    expect(tls.clientSubjects).toContain('celery-otel-bridge');
    expect(await running.stop()).toBe(0);
  }, 60_000);

  it('--broker-tls-servername is sent as SNI and is the name checked', async () => {
    const tls = await proxy();
    const ca = ['--broker-tls-ca-file', material.caFile];
    const wrong = bridge(
      tls.port,
      [...ca, '--broker-tls-servername', 'wrong.example', '--connect-timeout-ms', '500'],
      '127.0.0.1',
    );
    expect(await wrong.exitedWithin(20_000)).toBe(1);
    expect(wrong.logLines.join('\n')).toContain(
      `TLS handshake with 127.0.0.1:${tls.port} failed: Hostname/IP does not match certificate's ` +
        "altnames: Host: wrong.example. is not in the cert's altnames",
    );

    const right = bridge(
      tls.port,
      [...ca, '--broker-tls-servername', 'localhost', '--connect-timeout-ms', '10000'],
      '127.0.0.1',
    );
    await right.waitForLog(/"msg":"(consuming|subscribed)/);
    expect(tls.serverNames).toContain('localhost');
    expect(await right.stop()).toBe(0);
    // No Node warning about an IP address as SNI: stderr is JSON lines only.
    for (const line of right.logLines) expect(() => JSON.parse(line) as unknown).not.toThrow();
  }, 30_000);

  it('--broker-tls-insecure connects without the CA and warns once', async () => {
    const tls = await proxy();
    const running = bridge(tls.port, ['--broker-tls-insecure', '--connect-timeout-ms', '10000']);
    await running.waitForLog(/"msg":"(consuming|subscribed)/);
    const warnings = running.logLines.filter((line) => line.includes('--broker-tls-insecure'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('"level":"warn"');
    expect(await running.stop()).toBe(0);
  }, 30_000);
});

describe('TLS options are checked at startup', () => {
  const configError = async (args: string[], env: Record<string, string> = {}) => {
    const running = startBridge(args, env);
    expect(await running.exited).toBe(2);
    return running.logLines.join('\n');
  };

  it('names the flag of an unreadable or wrong file, and a TLS flag on a plain URL', async () => {
    const broker = ['--broker', 'amqps://guest:guest@localhost:5671//'];
    expect(await configError([...broker, '--broker-tls-ca-file', '/nonexistent/ca.pem'])).toMatch(
      /--broker-tls-ca-file \(CELERY_OTEL_BRIDGE_BROKER_TLS_CA_FILE\): cannot read "\/nonexistent\/ca.pem": ENOENT/,
    );
    expect(await configError([...broker, '--broker-tls-ca-file', material.clientKeyFile])).toMatch(
      /--broker-tls-ca-file .* holds no PEM certificate/,
    );
    expect(
      await configError(broker, {
        CELERY_OTEL_BRIDGE_BROKER_TLS_CERT_FILE: material.clientCertFile,
        CELERY_OTEL_BRIDGE_BROKER_TLS_KEY_FILE: material.serverKeyFile,
      }),
    ).toMatch(/--broker-tls-cert-file .* and --broker-tls-key-file .* do not belong together/);
    expect(
      await configError([...broker, '--broker-tls-cert-file', material.clientCertFile]),
    ).toMatch(/go together/);
    expect(
      await configError([
        '--broker',
        'redis://localhost:6379/0',
        '--broker-tls-ca-file',
        material.caFile,
      ]),
    ).toMatch(/--broker-tls-ca-file .* needs a TLS broker URL \(amqps:\/\/ or rediss:\/\/\)/);
  });
});
