// Proves that the Celery test harness (test/celery/proj.py + produce.py, run by a real Celery
// 5.2.6 prefork worker) really produces the event behaviour the bridge relies on, on both brokers.
// It only looks at raw events (test/support/eventTap.ts), not at the bridge.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  AMQP_URL,
  REDIS_URL,
  celeryPython,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
  type CeleryWorker,
  type ProducedAll,
} from '../support/celeryWorker.js';
import {
  tapAmqpEvents,
  tapRedisEvents,
  type EventTap,
  type RawCeleryEvent,
} from '../support/eventTap.js';

// Seconds until the revoked ETA task would run. Celery only sends its `task-revoked` then (see
// produce.py `_revoked`), so keep it short.
const REVOKE_COUNTDOWN_S = 3;

/** With `--traceparent`, produce.py also sends a task carrying that header. */
type Sent = ProducedAll & { traceparent_task: string };

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe.each([
  { kind: 'amqp' as const, url: AMQP_URL },
  { kind: 'redis' as const, url: REDIS_URL },
])('Celery 5.2.6 test harness on $kind', ({ kind, url }) => {
  const queue = randomName(`harness-${kind}`);
  let worker: CeleryWorker | undefined;
  let tap: EventTap | undefined;
  let sent: Sent;

  const events = (): RawCeleryEvent[] => tap?.events ?? [];
  const of = (uuid: string, type?: string): RawCeleryEvent[] =>
    events().filter((e) => e.uuid === uuid && (type === undefined || e.type === type));
  const history = (uuid: string): string =>
    of(uuid)
      .map((e) => String(e.type))
      .join(', ');
  const waitFor = async (
    uuid: string,
    type: string,
    timeoutMs = 20_000,
  ): Promise<RawCeleryEvent> => {
    if (tap === undefined) throw new Error('event tap not running');
    try {
      return await tap.waitFor(
        (e) => e.uuid === uuid && e.type === type,
        timeoutMs,
        `${type} of ${uuid}`,
      );
    } catch (err) {
      throw new Error(
        `${(err as Error).message}; events of ${uuid}: [${history(uuid)}]` +
          `\n--- worker log (tail) ---\n${worker?.logTail() ?? '(no worker)'}`,
      );
    }
  };

  beforeAll(async () => {
    await requireBroker(kind);
    // The chord's result backend is Redis whatever the broker (DEFAULT_RESULT_BACKEND).
    if (kind !== 'redis') await requireBroker('redis');
    celeryPython();
    tap = kind === 'amqp' ? await tapAmqpEvents(url) : await tapRedisEvents(url);
    worker = await startCeleryWorker({ brokerUrl: url, queue, pool: 'prefork', concurrency: 2 });
    sent = (await produce(url, queue, 'all', [
      '--countdown',
      String(REVOKE_COUNTDOWN_S),
      '--traceparent',
      TRACEPARENT,
    ])) as unknown as Sent;
  });

  afterAll(async () => {
    await worker?.stop();
    await tap?.close();
    if (worker !== undefined) await deleteTestQueue(url, queue);
  });

  it('announces the worker (worker-online, then heartbeats with its hostname)', async () => {
    const online = await tap!.waitFor(
      (e) => e.type === 'worker-online' && e.hostname === worker!.hostname,
      5_000,
      'worker-online',
    );
    expect(online).toMatchObject({ sw_ident: 'py-celery', sw_ver: '5.2.6', freq: 2 });
    const beat = await tap!.waitFor(
      (e) => e.type === 'worker-heartbeat' && e.hostname === worker!.hostname,
      10_000,
      'worker-heartbeat',
    );
    expect(beat).toMatchObject({ freq: 2, pid: worker!.pid });
    expect(typeof beat.active).toBe('number');
    expect(typeof beat.processed).toBe('number');
  });

  it('sends task-sent/received/started/succeeded for a plain task', async () => {
    const succeeded = await waitFor(sent.add, 'task-succeeded');
    expect(succeeded).toMatchObject({ result: '3', hostname: worker!.hostname });
    expect(typeof succeeded.runtime).toBe('number');
    const taskSent = await waitFor(sent.add, 'task-sent');
    // Producer events come from the producer's own node name, `gen<pid>@<host>`.
    expect(taskSent).toMatchObject({
      name: 'proj.add',
      args: '(1, 2)',
      kwargs: '{}',
      root_id: sent.add,
      parent_id: null,
      retries: 0,
      eta: null,
      // Celery publishes to the default exchange with the queue name as routing key.
      queue,
      exchange: '',
      routing_key: queue,
    });
    expect(String(taskSent.hostname)).toMatch(/^gen\d+@/);
    expect(of(sent.add, 'task-received')[0]).toMatchObject({
      name: 'proj.add',
      args: '(1, 2)',
      root_id: sent.add,
      parent_id: null,
      hostname: worker!.hostname,
    });
    expect(of(sent.add, 'task-started')).toHaveLength(1);
    // The traceparent header travels in the task message only: events have no headers.
    const tp = await waitFor(sent.traceparent_task, 'task-succeeded');
    expect(JSON.stringify(of(sent.traceparent_task))).not.toContain('4bf92f3577b34da6');
    expect(tp.result).toBe('3');
  });

  it('links chain steps through parent_id and root_id', async () => {
    expect(sent.chain).toHaveLength(3);
    const [first, second, third] = sent.chain as [string, string, string];
    await waitFor(third, 'task-succeeded');
    expect(await waitFor(first, 'task-sent')).toMatchObject({ root_id: first, parent_id: null });
    // Steps 2 and 3 are sent by the pool process that ran the previous step, on its own
    // connection: their task-sent may even arrive after the worker's task-received, so wait.
    expect(await waitFor(second, 'task-sent')).toMatchObject({
      name: 'proj.mul',
      root_id: first,
      parent_id: first,
    });
    expect(await waitFor(third, 'task-sent')).toMatchObject({
      name: 'proj.add',
      root_id: first,
      parent_id: second,
    });
    expect(of(third, 'task-received')[0]).toMatchObject({ root_id: first, parent_id: second });
    expect(sent.chain.map((id) => of(id, 'task-succeeded')[0]?.result)).toEqual(['2', '4', '5']);
  });

  it('runs group members as unrelated roots', async () => {
    expect(sent.group).toHaveLength(3);
    for (const id of sent.group) {
      await waitFor(id, 'task-succeeded');
      // Nothing in the events ties group members together (no group id field).
      expect(await waitFor(id, 'task-sent')).toMatchObject({ root_id: id, parent_id: null });
    }
  });

  it('sends the chord callback as a child of the last header task', async () => {
    const { header, callback } = sent.chord;
    expect(header).toHaveLength(3);
    const done = await waitFor(callback, 'task-succeeded');
    expect(done.result).toBe('6');
    const callbackSent = await waitFor(callback, 'task-sent');
    expect(callbackSent.name).toBe('proj.xsum');
    expect(header).toContain(callbackSent.parent_id);
    // The callback inherits the root of the header task that completed the chord.
    expect(callbackSent.root_id).toBe(callbackSent.parent_id);
  });

  it('reports a chained exception in task-failed', async () => {
    const failed = await waitFor(sent.fail, 'task-failed');
    expect(failed.exception).toBe("RuntimeError('payment step failed')");
    const traceback = String(failed.traceback);
    expect(traceback).toContain('ValueError: boom: checksum mismatch in order 42');
    expect(traceback).toContain(
      'The above exception was the direct cause of the following exception:',
    );
    expect(traceback).toContain('RuntimeError: payment step failed');
    expect(traceback.match(/in _inner\n/g)?.length).toBeGreaterThanOrEqual(3);
    expect(of(sent.fail, 'task-succeeded')).toHaveLength(0);
  });

  it('retries flaky twice under the same id, then succeeds', async () => {
    const id = sent.flaky;
    const succeeded = await waitFor(id, 'task-succeeded');
    expect(succeeded.result).toBe("'ok'");
    const retried = of(id, 'task-retried');
    expect(retried.map((e) => e.exception)).toEqual([
      "ConnectionError('transient, try 0')",
      "ConnectionError('transient, try 1')",
    ]);
    expect(String(retried[0]!.traceback)).toContain('celery.exceptions.Retry: Retry in 0.2s');
    expect(of(id, 'task-started')).toHaveLength(3);
    // Each retry is a new task-sent (from the worker) with retries+1 and an ETA; surprisingly
    // Celery names the task as its own parent (Task.retry sends from inside the running task).
    await tap!.waitFor((e) => e.uuid === id && e.type === 'task-sent' && e.retries === 2);
    const sends = of(id, 'task-sent').sort((a, b) => Number(a.retries) - Number(b.retries));
    expect(sends.map((e) => e.retries)).toEqual([0, 1, 2]);
    expect(sends[0]).toMatchObject({ parent_id: null, root_id: id, eta: null });
    for (const retry of sends.slice(1)) {
      expect(retry).toMatchObject({ parent_id: id, root_id: id });
      expect(typeof retry.eta).toBe('string');
    }
    expect(of(id, 'task-received').map((e) => e.retries)).toEqual([0, 1, 2]);
  });

  it('names spawn as the parent of the tasks it sends', async () => {
    const done = await waitFor(sent.spawn, 'task-succeeded');
    // spawn returns its children's ids; its result is their Python repr: "['<id>', '<id>']".
    const childIds =
      String(done.result).match(/[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}/g) ?? [];
    expect(childIds).toHaveLength(2);
    for (const childId of childIds) {
      // The children's task-sent comes from the pool process (its own `gen<pid>@host` node) on
      // its own connection, so don't assume it arrived before spawn's task-succeeded.
      const childSent = await waitFor(childId, 'task-sent');
      expect(childSent).toMatchObject({
        name: 'proj.add',
        parent_id: sent.spawn,
        root_id: sent.spawn,
      });
      expect(await waitFor(childId, 'task-received')).toMatchObject({ parent_id: sent.spawn });
      await waitFor(childId, 'task-succeeded');
    }
    const children = events().filter((e) => e.type === 'task-sent' && e.parent_id === sent.spawn);
    expect(children.map((e) => e.uuid).sort()).toEqual([...childIds].sort());
  });

  it('sends task-rejected (and nothing else final) for Reject with acks_late', async () => {
    const rejected = await waitFor(sent.rejected, 'task-rejected');
    expect(rejected).toMatchObject({ requeue: false, hostname: worker!.hostname });
    expect(of(sent.rejected, 'task-started')).toHaveLength(1);
    expect(of(sent.rejected, 'task-failed')).toHaveLength(0);
    expect(of(sent.rejected, 'task-succeeded')).toHaveLength(0);
  });

  it('sends task-revoked with terminated=true for revoke(terminate=True) of a running task', async () => {
    const revoked = await waitFor(sent.terminated, 'task-revoked');
    expect(revoked).toMatchObject({ terminated: true, signum: 15, expired: false });
    expect(of(sent.terminated, 'task-started')).toHaveLength(1);
  });

  it('sends task-revoked, and no task-started, for a revoked ETA task when its ETA comes', async () => {
    const id = sent.revoked;
    expect(of(id, 'task-sent')[0]?.eta).toEqual(expect.any(String));
    const revoked = await waitFor(id, 'task-revoked', (REVOKE_COUNTDOWN_S + 15) * 1000);
    expect(revoked).toMatchObject({ terminated: false, signum: null, expired: false });
    expect(of(id, 'task-received')[0]?.eta).toEqual(expect.any(String));
    expect(of(id, 'task-started')).toHaveLength(0);
    expect(of(id, 'task-succeeded')).toHaveLength(0);
    // By now (seconds after the terminate) the killed slow task has had time to report anything
    // else; Request.on_failure returns early for Terminated when it was already revoked.
    expect(history(sent.terminated)).not.toMatch(/task-failed|task-succeeded/);
    expect(of(sent.terminated, 'task-revoked')).toHaveLength(1);
  });

  it('delivered plenty of events from our worker', () => {
    // (No assertion on tap.errors: other test runs may publish deliberately malformed events on
    // the shared `celeryev` exchange.)
    expect(events().filter((e) => e.hostname === worker!.hostname).length).toBeGreaterThan(40);
  });

  it('sends worker-offline on warm shutdown', async () => {
    await worker!.stop();
    expect(await worker!.exited).toBe(0);
    const offline = await tap!.waitFor(
      (e) => e.type === 'worker-offline' && e.hostname === worker!.hostname,
      5_000,
      'worker-offline',
    );
    expect(offline).toMatchObject({ sw_ident: 'py-celery', pid: worker!.pid });
  });
});
