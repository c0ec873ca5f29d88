import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deleteBridgeQueue,
  type HttpBridgeProcess,
  startBridgeWithHttp,
} from '../support/bridgeProcess.js';
import { AMQP_URL, randomName, requireBroker } from '../support/celeryWorker.js';
import { OtlpReceiver, taskSpansOf } from '../support/OtlpReceiver.js';
import { deleteExchange, publishAmqp } from '../support/syntheticTasks.js';
import { until } from '../support/testUtils.js';

const HOSTNAME = 'journal@test';
let clock = 0;
let now = Date.now() / 1000;

/** One `task.multi` message: for each task, events of `types` in the wire format workers send. */
function message(
  ids: readonly string[],
  types: readonly string[],
  at: Map<string, number>,
): string {
  const events: object[] = [];
  for (const id of ids) {
    for (const type of types) {
      clock++;
      const timestamp = (now = Math.max(now + 0.001, Date.now() / 1000));
      if (type === 'task-received') at.set(id, timestamp);
      const base = {
        hostname: HOSTNAME,
        utcoffset: 0,
        pid: 4242,
        clock,
        uuid: id,
        timestamp,
        type,
      };
      if (type === 'task-received') {
        events.push({
          ...base,
          name: 'proj.add',
          args: '(1, 2)',
          kwargs: '{}',
          root_id: id,
          parent_id: null,
          retries: 0,
          eta: null,
          expires: null,
        });
      } else if (type === 'task-succeeded') {
        events.push({ ...base, result: '3', runtime: 0.01 });
      } else {
        events.push(base);
      }
    }
  }
  return JSON.stringify(events);
}

/**
 * A `kill -9` after checkpoints that went to the journal: the events of tasks `later` are in a
 * journal entry only (their messages were acknowledged once it was written, so RabbitMQ does not
 * redeliver them). The restarted bridge must apply that entry on the base, or those tasks come
 * out incomplete when their outcome arrives.
 */
describe('the state journal across kill -9, with the CLI on RabbitMQ', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bridge-state-journal-'));
  const exchange = randomName('ev-journal');
  const bridgeQueue = randomName('bridge-journal');
  const bridges: HttpBridgeProcess[] = [];
  let receiver: OtlpReceiver;

  beforeAll(async () => {
    await requireBroker('amqp');
    receiver = await OtlpReceiver.start();
  });

  afterAll(async () => {
    await Promise.all(bridges.map((bridge) => bridge.stop()));
    await receiver?.close();
    await deleteBridgeQueue(AMQP_URL, bridgeQueue).catch(() => undefined);
    await deleteExchange(AMQP_URL, exchange).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  const bridge = async (stateFile: string): Promise<HttpBridgeProcess> => {
    const started = await startBridgeWithHttp(
      ['--events-exchange', exchange, '--amqp-queue', bridgeQueue],
      {
        CELERY_BROKER_URL: AMQP_URL,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '200',
        CELERY_OTEL_BRIDGE_STATE_FILE: stateFile,
        CELERY_OTEL_BRIDGE_LOG_LEVEL: 'debug',
      },
    );
    bridges.push(started);
    await started.waitForLog(/consuming/);
    return started;
  };

  it('restores the tasks a journal entry holds, and their spans come out complete', async () => {
    const stateFile = join(dir, 'state.json');
    const journal = `${stateFile}.journal`;
    const received = new Map<string, number>();
    const first = await bridge(stateFile);
    const earlier = Array.from({ length: 20 }, () => randomUUID());
    const later = Array.from({ length: 20 }, () => randomUUID());
    const readJournal = (): string => (existsSync(journal) ? readFileSync(journal, 'utf8') : '');

    await publishAmqp(AMQP_URL, exchange, [
      message(earlier, ['task-received', 'task-started'], received),
    ]);
    // The first save after the start is a base (and an empty journal).
    await until('the base written', () => Promise.resolve(readJournal().length > 0), 30_000);
    await publishAmqp(AMQP_URL, exchange, [
      message(later, ['task-received', 'task-started'], received),
    ]);
    await until(
      'a journal entry with the later tasks',
      () =>
        Promise.resolve(
          later.every((id) => readJournal().split('\n').slice(1).join().includes(id)),
        ),
      30_000,
    );
    first.child.kill('SIGKILL');
    await first.exited;

    const second = await bridge(stateFile);
    await publishAmqp(AMQP_URL, exchange, [
      message([...earlier, ...later], ['task-succeeded'], received),
    ]);
    const restored = await second.waitForLog(/restored unfinished tasks from the state file/);
    expect(JSON.parse(restored)).toMatchObject({ tasks: 40 });
    expect((JSON.parse(restored) as { journalEntries: number }).journalEntries).toBeGreaterThan(0);
    await until(
      'every task span',
      () =>
        Promise.resolve(
          [...earlier, ...later].every((id) => taskSpansOf(receiver.spans, id).length > 0),
        ),
      60_000,
    );
    for (const id of [...earlier, ...later]) {
      for (const span of taskSpansOf(receiver.spans, id)) {
        expect(span.attributes['celery.task.incomplete'], id).toBeUndefined();
        // It starts at its receipt, which only the state file (base or journal) remembers.
        const start = Number(span.startTimeUnixNano) / 1e9;
        expect(Math.abs(start - (received.get(id) ?? 0)), id).toBeLessThan(0.001);
      }
    }
    expect(second.logLines.join('\n')).not.toMatch(/state journal cannot be used/);
  }, 120_000);
});
