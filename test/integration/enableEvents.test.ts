import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BridgeProcess, startBridge } from '../support/bridgeProcess.js';
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
import { OtlpReceiver, taskSpansOf } from '../support/OtlpReceiver.js';
import { until } from '../support/testUtils.js';

/**
 * `--enable-events` against a real Celery worker started WITHOUT `-E` (and with
 * worker_send_task_events off): first a bridge without the flag sees no task of it at all, then a
 * bridge with the flag broadcasts `enable_events`, the worker logs that a remote enabled its task
 * events, and the next task arrives as a span. The worker has its own control exchange, so the
 * broadcast reaches no other test's worker on the shared brokers.
 */
const cases = [
  { broker: 'amqp' as const, url: AMQP_URL },
  { broker: 'redis' as const, url: REDIS_URL },
];

// celery/worker/control.py `enable_events`: logger.info('Events of group {task} enabled by remote.')
const ENABLED_LINE = 'Events of group {task} enabled by remote.';
/** Tasks sent by produce.py send no task-sent: every event of the task is the worker's. */
const NO_SENT_EVENT = { CELERY_TASK_SEND_SENT_EVENT: '0' };

describe.each(cases)('--enable-events on $broker', ({ broker, url }) => {
  const queue = randomName(`enable-events-${broker}`);
  const controlExchange = randomName('control');
  const bridgeQueues: string[] = [];
  let receiver: OtlpReceiver;
  let worker: CeleryWorker;
  let bridge: BridgeProcess | undefined;

  const runBridge = async (extraArgs: string[]): Promise<BridgeProcess> => {
    const bridgeQueue = randomName('bridge-enable-events');
    bridgeQueues.push(bridgeQueue);
    const started = startBridge(
      [
        '--broker',
        url,
        '--amqp-queue',
        bridgeQueue,
        '--control-exchange',
        controlExchange,
        ...extraArgs,
      ],
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    );
    await started.waitForLog(/"msg":"(consuming|subscribed)/);
    return started;
  };

  const taskSpans = (id: string) => taskSpansOf(receiver.spans, id);

  const succeededInWorkerLog = (id: string): boolean =>
    worker.logTail().includes(`Task proj.add[${id}] succeeded`);

  beforeAll(async () => {
    await requireBroker(broker);
    receiver = await OtlpReceiver.start();
    worker = await startCeleryWorker({
      brokerUrl: url,
      queue,
      sendEvents: false,
      extraEnv: { CELERY_CONTROL_EXCHANGE: controlExchange },
    });
  });

  afterAll(async () => {
    await bridge?.stop();
    await worker?.stop();
    await receiver?.close();
    await deleteTestQueue(url, queue).catch(() => undefined);
    if (broker === 'amqp') {
      const connection = await amqp.connect(AMQP_URL);
      try {
        const channel = await connection.createChannel();
        for (const name of bridgeQueues) await channel.deleteQueue(name);
        await channel.deleteExchange(`${controlExchange}.pidbox`);
      } finally {
        await connection.close();
      }
    }
  });

  it('without the flag: no task event, so no span, from a worker started without -E', async () => {
    bridge = await runBridge([]);
    const id = (await produce(url, queue, 'add', [], NO_SENT_EVENT))['add'] as string;
    await until(`the worker to run ${id}`, () => Promise.resolve(succeededInWorkerLog(id)), 30_000);
    // Events the worker would have sent are out within milliseconds; give them ample time.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(await bridge.stop()).toBe(0);
    bridge = undefined;
    expect(taskSpans(id)).toEqual([]);
    expect(worker.logTail()).not.toContain(ENABLED_LINE);
  });

  it('with the flag: the worker switches task events on and its tasks arrive as spans', async () => {
    bridge = await runBridge(['--enable-events', '--enable-events-interval-ms', '1000']);
    await bridge.waitForLog(/"msg":"broadcast enable_events to the Celery workers"/);
    await until(
      'the worker to log that a remote enabled its task events',
      () => Promise.resolve(worker.logTail().includes(ENABLED_LINE)),
      30_000,
    );
    const id = (await produce(url, queue, 'add', [], NO_SENT_EVENT))['add'] as string;
    await receiver.waitForSpans(() => taskSpans(id).length === 1, 30_000);
    const [span] = taskSpans(id);
    expect(span?.name).toBe('proj.add');
    expect(span?.attributes['celery.task.state']).toBe('SUCCESS');
    expect(span?.attributes['celery.worker.hostname']).toBe(worker.hostname);
    expect(await bridge.stop()).toBe(0);
    bridge = undefined;
  });
});
