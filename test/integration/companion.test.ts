// The worker companion (companion/celery_otel_bridge_companion) against a real Celery 5.2.6
// worker: it must send `task-otel-context` inside the worker's own `task.multi` batches, right
// before the task's `task-received`, on both brokers and with the prefork and solo pools, and
// send nothing for tasks whose message carries no trace context, group or chord.
// Raw events only (test/support/eventTap.ts); the bridge's use of them is in upstreamTraces.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
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
} from '../support/celeryWorker.js';
import {
  tapAmqpEvents,
  tapRedisEvents,
  type EventTap,
  type RawCeleryEvent,
} from '../support/eventTap.js';

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const TRACESTATE = 'congo=t61rcWkgMzE';
const CONTEXT = 'task-otel-context';

const COMPANION_DIR = fileURLToPath(new URL('../../companion/', import.meta.url));

describe('worker companion, Python unit tests', () => {
  it('extracts the fields, sends one event per task through the request, never raises', () => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PYTHONPATH: '.',
      PYTHONDONTWRITEBYTECODE: '1',
    };
    delete env.PYTHONHOME;
    const run = spawnSync(celeryPython(), ['-m', 'unittest', 'discover', '-s', 'tests', '-v'], {
      cwd: COMPANION_DIR,
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/^OK$/m);
  });
});

describe.each([
  { kind: 'amqp' as const, url: AMQP_URL, pool: 'prefork' as const },
  { kind: 'amqp' as const, url: AMQP_URL, pool: 'solo' as const },
  { kind: 'redis' as const, url: REDIS_URL, pool: 'prefork' as const },
  { kind: 'redis' as const, url: REDIS_URL, pool: 'solo' as const },
])('worker companion on $kind with the $pool pool', ({ kind, url, pool }) => {
  const queue = randomName(`companion-${kind}-${pool}`);
  let worker: CeleryWorker | undefined;
  let tap: EventTap | undefined;
  let chain: string[];
  let traced: string;
  let group: string[];
  let chord: { header: string[]; callback: string };
  let plain: string;

  const events = (): RawCeleryEvent[] => tap?.events ?? [];
  const contextOf = (uuid: string): RawCeleryEvent[] =>
    events().filter((e) => e.uuid === uuid && e.type === CONTEXT);

  beforeAll(async () => {
    await requireBroker(kind);
    tap = kind === 'amqp' ? await tapAmqpEvents(url) : await tapRedisEvents(url);
    worker = await startCeleryWorker({
      brokerUrl: url,
      queue,
      pool,
      extraEnv: { CELERY_OTEL_COMPANION: '1' },
    });
    const tracedChain = await produce(url, queue, 'chain', [
      '--traceparent',
      TRACEPARENT,
      '--tracestate',
      TRACESTATE,
      '--trace-scenario',
    ]);
    chain = tracedChain['chain'] as string[];
    traced = tracedChain['traceparent_task'] as string;
    group = (await produce(url, queue, 'group'))['group'] as string[];
    chord = (await produce(url, queue, 'chord'))['chord'] as typeof chord;
    plain = (await produce(url, queue, 'add'))['add'] as string;
    const done = [...chain, traced, ...group, ...chord.header, chord.callback, plain];
    const currentTap = tap;
    await Promise.all(
      done.map((id) =>
        currentTap.waitFor(
          (e) => e.uuid === id && e.type === 'task-succeeded',
          30_000,
          `task-succeeded of ${id}`,
        ),
      ),
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n--- worker log ---\n${worker?.logTail() ?? ''}`);
    });
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    await tap?.close();
    await deleteTestQueue(url, queue).catch(() => undefined);
  });

  it('sends the context of a traced message inside the task.multi batch, right before task-received', () => {
    for (const id of [chain[0] as string, traced]) {
      const [context, ...more] = contextOf(id);
      expect(more).toHaveLength(0);
      expect(context).toMatchObject({
        type: CONTEXT,
        uuid: id,
        traceparent: TRACEPARENT,
        tracestate: TRACESTATE,
        root_id: id,
        hostname: worker?.hostname,
      });
      expect(typeof context?.['timestamp']).toBe('number');
      const batch = tap?.batches.find((b) => b.events.includes(context as RawCeleryEvent));
      expect(batch?.routingKey).toBe('task.multi');
      // Next in the worker's own stream (one connection, so in publish order) is the task's
      // task-received: usually in the same batch, in the next one when the context event filled
      // the buffer (celery/events/dispatcher.py `send`: flush at buffer_limit, 24 events).
      const own = events().filter(
        (e) => e['hostname'] === worker?.hostname && String(e['type']).startsWith('task-'),
      );
      const at = own.indexOf(context as RawCeleryEvent);
      expect(own[at + 1]).toMatchObject({ type: 'task-received', uuid: id });
    }
  });

  it('sends group and chord ids, with the callback id on every chord header task', () => {
    const groupIds = new Set(group.map((id) => contextOf(id)[0]?.['group']));
    expect(groupIds.size).toBe(1);
    expect([...groupIds][0]).toMatch(/^[0-9a-f-]{36}$/);
    const headers = chord.header.map((id) => contextOf(id)[0]);
    expect(headers.map((e) => e?.['chord'])).toEqual(chord.header.map(() => chord.callback));
    expect(headers.map((e) => e?.['group_index'])).toEqual([0, 1, 2]);
    expect(new Set(headers.map((e) => e?.['group'])).size).toBe(1);
    for (const event of headers) expect(event?.['traceparent']).toBeUndefined();
  });

  it('sends nothing for tasks without trace context, group or chord', () => {
    // Chain steps 2 and 3 are sent by the worker without the producer's headers; the chord
    // callback is sent on its own; the plain task never had anything.
    for (const id of [chain[1] as string, chain[2] as string, chord.callback, plain]) {
      expect(contextOf(id), id).toEqual([]);
      expect(events().some((e) => e.uuid === id && e.type === 'task-received')).toBe(true);
    }
  });
});
