// Values learnt from events (series, workers, queues) are bounded, and a flood of made-up ones
// gives their places back once it is over.
import { hrTime } from '@opentelemetry/core';
import { describe, expect, it } from 'vitest';
import { Logger } from '../../src/log/Logger.js';
import { LEARNED_QUEUE_MEMORY_MS, QueueLengthPoller } from '../../src/metrics/QueueLengthPoller.js';
import type { QueueLengthReader } from '../../src/brokers/QueueLengthReader.js';
import { SeriesCounter } from '../../src/metrics/SeriesCounter.js';
import { SeriesHistogram } from '../../src/metrics/SeriesHistogram.js';
import { WorkerLiveness } from '../../src/assemble/WorkerLiveness.js';

describe('series past the cap', () => {
  it('a counter: an idle series makes room after two collections; overflow while all are in use', () => {
    const counter = new SeriesCounter({ name: 'c', unit: '1', description: '', maxSeries: 3 });
    const points = (): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const point of counter.toMetricData(hrTime()).dataPoints) {
        out[String(point.attributes['k'] ?? 'overflow')] = point.value;
      }
      return out;
    };
    const add = (key: string): void => counter.add(key, () => ({ k: key }));
    for (const key of ['flood1', 'flood2', 'flood3', 'real']) add(key);
    expect(points()).toEqual({ flood1: 1, flood2: 1, flood3: 1, overflow: 1 });
    add('real');
    add('flood2');
    points();
    add('real');
    // flood1 (the least recently used) went unused for two collections: it gave its place.
    expect(points()).toEqual({ flood2: 2, flood3: 1, real: 1, overflow: 2 });
  });

  it('a histogram: the same', () => {
    const histogram = new SeriesHistogram({
      name: 'h',
      unit: 's',
      description: '',
      boundaries: [1],
      maxSeries: 2,
    });
    const keys = (): unknown[] =>
      histogram.toMetricData(hrTime()).dataPoints.map((p) => p.attributes['k'] ?? 'overflow');
    for (const key of ['flood1', 'flood2', 'real']) histogram.record(key, () => ({ k: key }), 1);
    expect(keys()).toEqual(['flood1', 'flood2', 'overflow']);
    histogram.record('flood2', () => ({ k: 'flood2' }), 1);
    keys();
    keys();
    histogram.record('real', () => ({ k: 'real' }), 1);
    expect(keys()).toEqual(['flood2', 'real', 'overflow']);
  });
});

describe('workers tracked past the cap', () => {
  it('a new worker takes the place of the least recently seen one once it is down and reported', () => {
    let now = 0;
    const liveness = new WorkerLiveness(600_000, 2, () => now);
    const beat = (hostname: string): void =>
      liveness.onEvent({ type: 'worker-heartbeat', hostname, timestamp: 1, freq: 2 });
    beat('fake-1');
    beat('fake-2');
    beat('real');
    expect(liveness.statuses().map((s) => s.hostname)).toEqual(['fake-1', 'fake-2']);
    now += 10_000; // both fakes silent: down
    beat('fake-2'); // ... but fake-2 beats again
    expect(liveness.takeNewlyDown()).toEqual(['fake-1']);
    beat('real');
    expect(liveness.statuses().map((s) => s.hostname)).toEqual(['fake-2', 'real']);
    // Nobody down: no place for another.
    beat('other');
    expect(liveness.statuses().map((s) => s.hostname)).toEqual(['fake-2', 'real']);
  });
});

describe('queues learnt from task-sent events', () => {
  function poller() {
    let now = 0;
    const reads: { queues: string[]; learned: string[] }[] = [];
    const existing = new Set(['celery', 'real-later', 'configured']);
    const reader: QueueLengthReader = {
      read(queues, learned) {
        reads.push({ queues: [...queues], learned: [...(learned ?? [])] });
        return Promise.resolve(
          new Map(queues.filter((q) => existing.has(q)).map((q) => [q, 1] as [string, number])),
        );
      },
      close: () => Promise.resolve(),
    };
    const instance = new QueueLengthPoller(
      reader,
      ['configured'],
      1000,
      new Logger('error'),
      () => now,
    );
    return { instance, reads, advance: (ms: number) => (now += ms) };
  }

  it('polls only what exists, at most 256 learnt queues, the least recently named forgotten first', async () => {
    const { instance, reads, advance } = poller();
    instance.noteQueue('celery');
    advance(2000);
    for (let i = 0; i < 1000; i++) instance.noteQueue(`made-up-${i}`);
    instance.noteQueue('real-later');
    await instance.poll();
    const read = reads.at(-1);
    expect(read?.queues).toContain('configured');
    expect(read?.queues).toContain('real-later');
    // 'celery' was named before the flood: forgotten to make room.
    expect(read?.queues).not.toContain('celery');
    expect(read?.learned).toHaveLength(256);
    expect(read?.learned).not.toContain('configured');
    expect([...instance.latest.keys()].sort()).toEqual(['configured', 'real-later']);
  });

  it(`forgets a learnt queue no task-sent named for ${LEARNED_QUEUE_MEMORY_MS / 60_000} minutes`, async () => {
    const { instance, reads, advance } = poller();
    instance.noteQueue('celery');
    await instance.poll();
    expect(reads.at(-1)?.queues).toEqual(['configured', 'celery']);
    advance(LEARNED_QUEUE_MEMORY_MS + 1);
    await instance.poll();
    expect(reads.at(-1)?.queues).toEqual(['configured']);
  });
});
