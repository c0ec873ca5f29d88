import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BridgeProcess, deleteBridgeQueue, startBridge } from '../support/bridgeProcess.js';
import {
  AMQP_URL,
  type CeleryWorker,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { until } from '../support/testUtils.js';

/** What a hostile publisher puts in every text field: each would act on a terminal if printed. */
const HOSTILE = [
  '\x1b[2J\x1b[3J\x1b[H', // clear screen and scrollback
  '\x1b]0;pwned\x07', // window title
  '\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUvc2ggfCBzaA==\x07', // OSC 52: write the clipboard
  '\x1b[8mhidden\x1b[28m',
  '\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\', // hyperlink
  '\u009b1;31m', // C1 CSI
  '\u202egnp.exe\u202c', // right-to-left override
  '\u200bzero\u2066width\u2069',
  'line\rover\bwrite\r\ntrace 00000000000000000000000000000000 · forged line',
  '\x7f\x00\t',
].join('~');

/** Anything a terminal acts on, or shows differently from what is stored. */
const RAW_CONTROL =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/u;

/**
 * `--exporter console` against hostile events published on the real `celeryev` exchange: task
 * name, worker, queue, exception and traceback full of terminal escapes. Nothing of them may reach
 * stdout raw, the bridge must keep running, and a real Celery task after them is still printed.
 */
describe('console output of hostile events, with the CLI on RabbitMQ', () => {
  const queue = randomName('console-hostile');
  const bridgeQueue = randomName('bridge-console-hostile');
  let worker: CeleryWorker;
  let bridge: BridgeProcess;
  let connection: amqp.ChannelModel;

  beforeAll(async () => {
    await requireBroker('amqp');
    worker = await startCeleryWorker({ brokerUrl: AMQP_URL, queue, pool: 'solo' });
    bridge = startBridge(
      [
        '--exporter',
        'console',
        '--broker',
        AMQP_URL,
        '--amqp-queue',
        bridgeQueue,
        '--console-quiet-ms',
        '500',
      ],
      {},
    );
    await bridge.waitForLog(/"msg":"consuming/);
    connection = await amqp.connect(AMQP_URL);
  }, 60_000);

  afterAll(async () => {
    await bridge?.stop();
    await worker?.stop();
    await connection?.close();
    await deleteBridgeQueue(AMQP_URL, bridgeQueue);
    await deleteTestQueue(AMQP_URL, queue).catch(() => undefined);
  });

  it('prints no raw control character from event data, and goes on printing', async () => {
    const channel = await connection.createChannel();
    const uuid = randomUUID();
    const now = Date.now() / 1000;
    const hostname = `w@${HOSTILE}`;
    const events = [
      {
        type: 'task-received',
        uuid,
        name: `evil.${HOSTILE}`,
        args: '()',
        kwargs: '{}',
        root_id: uuid,
        parent_id: null,
        retries: 0,
        hostname,
        timestamp: now,
      },
      { type: 'task-started', uuid, hostname, pid: 1, timestamp: now + 0.01 },
      {
        type: 'task-retried',
        uuid,
        exception: `ValueError('${HOSTILE}')`,
        traceback: `Traceback (most recent call last):\nValueError: ${HOSTILE}\n`,
        hostname,
        timestamp: now + 0.02,
      },
      { type: 'task-started', uuid, hostname, pid: 1, timestamp: now + 0.03 },
      {
        type: 'task-failed',
        uuid,
        exception: `RuntimeError('${HOSTILE}')`,
        traceback: `Traceback (most recent call last):\nRuntimeError: ${HOSTILE}\n`,
        hostname,
        timestamp: now + 0.04,
      },
    ];
    channel.publish('celeryev', 'task.multi', Buffer.from(JSON.stringify(events)), {
      contentType: 'application/json',
      contentEncoding: 'utf-8',
    });
    const traceId = uuid.replace(/-/g, '');
    await until(
      'the hostile trace on stdout',
      () => Promise.resolve(bridge.stdout().includes(`trace ${traceId}`)),
      45_000,
    );
    const { add } = (await produce(AMQP_URL, queue, 'add')) as { add: string };
    await until(
      'the real task printed after it',
      () => Promise.resolve(bridge.stdout().includes(`trace ${add.replace(/-/g, '')}`)),
      45_000,
    );
    const stdout = bridge.stdout();
    const hostileBlock = stdout.split('\n\n').find((block) => block.startsWith(`trace ${traceId}`));
    expect(hostileBlock, stdout).toBeDefined();
    // Escaped, visible, and on the trace's own lines: nothing forged a line of its own.
    expect(hostileBlock).toContain('\\x1b]52;c;');
    expect(hostileBlock).toContain('\\u{202e}gnp.exe');
    expect(hostileBlock).toContain('evil.');
    expect(stdout.split('\n').filter((line) => line.startsWith('trace 0000000000'))).toEqual([]);
    expect(stdout).not.toMatch(RAW_CONTROL);
    expect(bridge.child.exitCode).toBeNull();
  }, 120_000);
});
