// redis+socket:// end to end: a private redis-server listening only on a Unix socket (no TCP
// port), a real Celery 5.2.6 worker and producer on `redis+socket://<path>?virtual_host=2`, and
// the bridge as its CLI on the same URL: the tasks arrive as spans, on their worker's resource
// with the service name --service-name-map gives them.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BridgeProcess, startBridge } from '../support/bridgeProcess.js';
import {
  type CeleryWorker,
  produce,
  randomName,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { OtlpReceiver, taskSpansOf } from '../support/OtlpReceiver.js';
import { until } from '../support/testUtils.js';

describe('Redis over a Unix socket (redis+socket://)', () => {
  const queue = randomName('socket');
  let dir: string;
  let redis: ChildProcess | undefined;
  let url: string;
  let receiver: OtlpReceiver;
  let bridge: BridgeProcess | undefined;
  let worker: CeleryWorker | undefined;
  const env = { CELERY_RESULT_BACKEND: '' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'celery-otel-socket-'));
    const socket = join(dir, 'redis.sock');
    redis = spawn(
      'redis-server',
      [
        '--port',
        '0',
        '--unixsocket',
        socket,
        '--unixsocketperm',
        '700',
        '--save',
        '',
        '--appendonly',
        'no',
      ],
      { stdio: 'ignore' },
    );
    await until(
      `redis-server on ${socket}`,
      () => {
        try {
          return Promise.resolve(
            execFileSync('redis-cli', ['-s', socket, 'ping'], { encoding: 'utf8' }).trim() ===
              'PONG',
          );
        } catch {
          return Promise.resolve(false);
        }
      },
      10_000,
    );
    url = `redis+socket://${socket}?virtual_host=2`;
    receiver = await OtlpReceiver.start();
    bridge = startBridge(['--broker', url, '--service-name-map', 'task:proj.ad=adder-app'], {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '200',
    });
    await bridge.waitForLog(/"msg":"subscribed to \/2\.celeryev/);
    worker = await startCeleryWorker({ brokerUrl: url, queue, extraEnv: env });
  }, 90_000);

  afterAll(async () => {
    await worker?.stop();
    const code = await bridge?.stop();
    await receiver?.close();
    redis?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    expect(code).toBe(0);
  });

  it('turns the tasks of a Celery app on a Unix socket into spans', async () => {
    const ids = (await produce(url, queue, 'adds', ['3'], env))['adds'] as string[];
    await receiver
      .waitForSpans(
        () =>
          ids.every((id) =>
            taskSpansOf(receiver.spans, id).some(
              (s) => s.attributes['celery.task.state'] === 'SUCCESS',
            ),
          ),
        60_000,
      )
      .catch((error: unknown) => {
        throw new Error(`${(error as Error).message}\n${worker?.logTail() ?? ''}`);
      });
    const [span] = taskSpansOf(receiver.spans, ids[0] as string);
    expect(span?.attributes['celery.worker.hostname']).toBe(worker?.hostname);
    // The worker's resource, and the service the task-name rule gives it.
    expect(span?.resource).toMatchObject({
      'service.name': 'adder-app',
      'service.instance.id': worker?.hostname,
      'host.name': worker?.hostname.split('@')[1],
    });
  }, 90_000);
});
