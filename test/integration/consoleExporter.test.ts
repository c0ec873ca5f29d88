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

/**
 * `--exporter console`, what the README's quick start runs: a real Celery worker runs a chain, a
 * failing task (chained exceptions) and a task that retries twice; the bridge CLI prints each
 * finished trace on stdout as a tree, asserted here line by line.
 */
const cases = [
  { broker: 'amqp' as const, url: AMQP_URL },
  { broker: 'redis' as const, url: REDIS_URL },
];

/** The printed block (header + tree lines) of the trace whose root task is `rootTaskId`. */
function block(stdout: string, rootTaskId: string): string[] | undefined {
  const traceId = rootTaskId.replace(/-/g, '');
  return stdout
    .split('\n\n')
    .map((text) => text.split('\n').filter((line) => line !== ''))
    .find((lines) => lines[0]?.startsWith(`trace ${traceId} `));
}

/** Column where the task name (or `attempt`) starts: after the tree-drawing prefix. */
function nameColumn(line: string): number {
  return line.search(/[^ │├└─]/u);
}

describe.each(cases)('console exporter on $broker', ({ broker, url }) => {
  const queue = randomName(`console-${broker}`);
  const bridgeQueue = randomName('bridge-console');
  let worker: CeleryWorker | undefined;
  let bridge: BridgeProcess | undefined;
  let sent: { chain: string[]; fail: string; flaky: string };
  let stdout = '';

  beforeAll(async () => {
    await requireBroker(broker);
    worker = await startCeleryWorker({ brokerUrl: url, queue });
    bridge = startBridge(
      [
        '--exporter',
        'console',
        '--broker',
        url,
        '--amqp-queue',
        bridgeQueue,
        // Generous, so a chain step delayed on a busy machine still lands in the same tree.
        '--console-quiet-ms',
        '4000',
      ],
      {},
    );
    await bridge.waitForLog(/"level":"info","msg":"(consuming|subscribed)/);
    const chain = await produce(url, queue, 'chain');
    const fail = await produce(url, queue, 'fail');
    const flaky = await produce(url, queue, 'flaky');
    sent = {
      chain: chain['chain'] as string[],
      fail: fail['fail'] as string,
      flaky: flaky['flaky'] as string,
    };
    const deadline = Date.now() + 45_000;
    const roots = [sent.chain[0] ?? '', sent.fail, sent.flaky];
    while (Date.now() < deadline) {
      if (roots.every((id) => block(bridge?.stdout() ?? '', id) !== undefined)) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    stdout = bridge.stdout();
  }, 90_000);

  afterAll(async () => {
    await bridge?.stop();
    await worker?.stop();
    await deleteTestQueue(url, queue).catch(() => undefined);
    await deleteBridgeQueue(url, bridgeQueue);
  });

  it('prints a chain as one tree, each step indented under the step that sent it', () => {
    const lines = block(stdout, sent.chain[0] ?? '');
    expect(lines, `chain trace in:\n${stdout}`).toBeDefined();
    const [header, first, second, third, ...rest] = lines ?? [];
    expect(header).toContain('3 tasks');
    expect(rest).toEqual([]);
    expect(first, (lines ?? []).join('\n')).toMatch(/^proj\.add SUCCESS \S+ · /);
    expect(second).toMatch(/^└─ proj\.mul SUCCESS /);
    expect(third).toMatch(/^ {3}└─ proj\.add SUCCESS /);
    expect(nameColumn(first ?? '')).toBe(0);
    expect(nameColumn(second ?? '')).toBe(3);
    expect(nameColumn(third ?? '')).toBe(6);
  });

  it("prints a failure with its traceback's last line", () => {
    const lines = block(stdout, sent.fail);
    expect(lines, `fail trace in:\n${stdout}`).toBeDefined();
    const [header, task, traceback, ...rest] = lines ?? [];
    expect(header).toContain('1 task ');
    expect(task, (lines ?? []).join('\n')).toMatch(
      /^proj\.fail FAILURE \S+ · (queued \S+ · )?queue /,
    );
    // The traceback chains ValueError -> RuntimeError; the last line is the final exception.
    expect(traceback).toBe('      RuntimeError: payment step failed');
    expect(rest).toEqual([]);
  });

  it('prints a retried task with its attempts and what each retry raised', () => {
    const lines = block(stdout, sent.flaky);
    expect(lines, `flaky trace in:\n${stdout}`).toBeDefined();
    const [, task, ...attempts] = lines ?? [];
    expect(task, (lines ?? []).join('\n')).toMatch(
      /^proj\.flaky SUCCESS \S+ · (queued \S+ · )?3 attempts · 2 retries/,
    );
    expect(attempts).toHaveLength(3);
    expect(attempts[0]).toMatch(/^├─ attempt 1 RETRY \S+ on \S+ · .*transient, try 0/);
    expect(attempts[1]).toMatch(/^├─ attempt 2 RETRY \S+ on \S+ · .*transient, try 1/);
    expect(attempts[2]).toMatch(/^└─ attempt 3 SUCCESS /);
  });

  it('shows the queue wait (task sent -> first attempt started)', () => {
    // Not on every line: Celery stamps `task-sent` only after publishing the task message
    // (celery/app/amqp.py `send_task_message`: producer.publish, then evd.publish('task-sent')),
    // so on a busy machine a worker can start a task before its sender's task-sent timestamp, and
    // then no (negative) wait is printed. Among the five tasks here, some show it.
    const lines = [sent.chain[0] ?? '', sent.fail, sent.flaky].flatMap((id) => block(stdout, id));
    expect(
      lines.filter((line) => / · queued \d+(µs|ms|\.\d+s) /.test(line ?? '')).length,
    ).toBeGreaterThan(0);
  });

  it('writes plain text when stdout is not a terminal, and logs only on stderr', () => {
    expect(stdout).not.toContain('\x1b[');
    expect(stdout).not.toContain('"level"');
  });
});
