import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteBridgeQueue, startBridge } from '../support/bridgeProcess.js';
import {
  AMQP_URL,
  type CeleryWorker,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { OtlpReceiver, taskSpansOf } from '../support/OtlpReceiver.js';
import { until } from '../support/testUtils.js';

/** Planted in the files below: it must never reach the log. */
const SECRET = 'PLANTED-SECRET-4f1c';

/** A state file as the bridge writes it, with a forged task an attacker wants exported. */
function forgedState(): string {
  return JSON.stringify({
    format: 'celery-otel-bridge/state',
    version: 1,
    savedAt: '2026-01-02T03:04:05.678Z',
    tasks: [
      {
        id: randomName('forged'),
        name: `forged.${SECRET}`,
        lastEventAt: Date.now() / 1000,
        receivedTimes: [],
        attempts: [],
        final: { state: 'SUCCESS', at: Date.now() / 1000 },
      },
    ],
    finishedIds: [],
  });
}

/**
 * The state file as a local attacker on a shared host would leave it: a symlink to a private
 * file, a FIFO, a file of another user, a world-writable file, a file of ours with wrong field
 * types. The built CLI on a real RabbitMQ must refuse each with one clear log line that never
 * quotes the file, start anyway (not hang), keep tracing a real Celery task, stop on SIGTERM, and
 * replace the path with a file of its own (never writing through a symlink).
 */
describe('planted state files, with the CLI on RabbitMQ', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bridge-state-safety-'));
  const queue = randomName('statefile');
  const bridgeQueue = randomName('bridge-statefile');
  let receiver: OtlpReceiver;
  let worker: CeleryWorker;

  beforeAll(async () => {
    await requireBroker('amqp');
    receiver = await OtlpReceiver.start();
    worker = await startCeleryWorker({ brokerUrl: AMQP_URL, queue, pool: 'solo' });
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    await receiver?.close();
    await deleteBridgeQueue(AMQP_URL, bridgeQueue);
    await deleteTestQueue(AMQP_URL, queue).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  const cases: {
    name: string;
    plant: (path: string) => void;
    reason: RegExp;
  }[] = [
    {
      name: 'a symlink to a private file',
      plant: (path) => {
        writeFileSync(join(dir, 'private'), `${SECRET}\n`, { mode: 0o600 });
        symlinkSync(join(dir, 'private'), path);
      },
      reason: /is a symbolic link/,
    },
    {
      name: 'a FIFO',
      plant: (path) => execFileSync('mkfifo', [path]),
      reason: /is not a regular file/,
    },
    {
      name: "another user's file with a forged task",
      plant: (path) => {
        writeFileSync(path, forgedState(), { mode: 0o600 });
        chownSync(path, 65534, 65534);
      },
      reason: /belongs to user id 65534/,
    },
    {
      name: 'a world-writable file with a forged task',
      plant: (path) => {
        writeFileSync(path, forgedState(), { mode: 0o600 });
        chmodSync(path, 0o666);
      },
      reason: /group or other users can write to it/,
    },
    {
      name: 'a file of ours with a wrong field type',
      plant: (path) => {
        const state = JSON.parse(forgedState()) as { tasks: Record<string, unknown>[] };
        (state.tasks[0] as Record<string, unknown>)['lastEventAt'] = SECRET;
        writeFileSync(path, JSON.stringify(state), { mode: 0o600 });
      },
      reason: /tasks\[0\]\.lastEventAt is not a time/,
    },
  ];

  it.each(cases)(
    'refuses $name, says why, starts, traces a real task and replaces it on stop',
    async ({ name, plant, reason }) => {
      const path = join(dir, `${name.replace(/\W+/g, '-')}.json`);
      plant(path);
      const bridge = startBridge([], {
        CELERY_BROKER_URL: AMQP_URL,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '200',
        CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
        CELERY_OTEL_BRIDGE_STATE_FILE: path,
      });
      try {
        await bridge.waitForLog(/"msg":"consuming/);
        // The state is loaded when the bridge becomes the active consumer: at its first message.
        const { add } = (await produce(AMQP_URL, queue, 'add')) as { add: string };
        const refused = await bridge.waitForLog(/cannot use the state file/);
        expect(refused).toMatch(reason);
        expect(refused).toContain(path);
        await until('the real task span', () =>
          Promise.resolve(taskSpansOf(receiver.spans, add).length > 0),
        );
      } finally {
        expect(await bridge.stop()).toBe(0);
      }
      const log = bridge.logLines.join('\n');
      expect(log).not.toContain(SECRET);
      expect(log).not.toMatch(/restored unfinished tasks/);
      expect(receiver.spans.some((span) => span.name.includes('forged'))).toBe(false);
      // The stop saved a file of the bridge's own in place of what was planted.
      const saved = lstatSync(path);
      expect(saved.isFile()).toBe(true);
      expect(saved.uid).toBe(process.getuid?.());
      expect(saved.mode & 0o777).toBe(0o600);
      if (name.startsWith('a symlink')) {
        expect(readFileSync(join(dir, 'private'), 'utf8')).toBe(`${SECRET}\n`);
      }
    },
    90_000,
  );

  it('restores its own file written at the previous stop', async () => {
    const path = join(dir, 'round-trip.json');
    const env = {
      CELERY_BROKER_URL: AMQP_URL,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
      CELERY_OTEL_BRIDGE_STATE_FILE: path,
    };
    const first = startBridge([], env);
    await first.waitForLog(/"msg":"consuming/);
    // Active (and so the file's owner) from its first message on.
    const { add } = (await produce(AMQP_URL, queue, 'add')) as { add: string };
    await until('the task span', () =>
      Promise.resolve(taskSpansOf(receiver.spans, add).length > 0),
    );
    expect(await first.stop()).toBe(0);
    expect(first.logLines.join('\n')).toMatch(/saved unfinished tasks to the state file/);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const second = startBridge([], env);
    try {
      await second.waitForLog(/"msg":"consuming/);
      await produce(AMQP_URL, queue, 'add');
      await second.waitForLog(/restored unfinished tasks from the state file/);
    } finally {
      expect(await second.stop()).toBe(0);
    }
    expect(second.logLines.join('\n')).not.toMatch(/cannot use the state file/);
  }, 60_000);
});
