import { describe, expect, it } from 'vitest';
import { attemptSpanIdFor, spanIdFor, traceIdFor } from '../../src/shared/deterministicIds.js';
import { parsePythonException } from '../../src/decode/parsePythonException.js';
import { hrTime } from '../../src/export/taskSpans.js';
import { truncateMiddle } from '../../src/shared/truncate.js';

describe('deterministic ids', () => {
  it('uses a UUID root id as the trace id and hashes anything else', () => {
    expect(traceIdFor('8abf5333-9416-4b4b-a788-283abf1d7402')).toBe(
      '8abf533394164b4ba788283abf1d7402',
    );
    expect(traceIdFor('8ABF5333-9416-4B4B-A788-283ABF1D7402')).toBe(
      '8abf533394164b4ba788283abf1d7402',
    );
    const custom = traceIdFor('order-42');
    expect(custom).toMatch(/^[0-9a-f]{32}$/);
    expect(custom).toBe(traceIdFor('order-42'));
    expect(traceIdFor('00000000-0000-0000-0000-000000000000')).not.toBe('0'.repeat(32));
  });

  it('gives distinct stable span ids to tasks and their attempts', () => {
    const id = 'bcc07010-147c-4dfd-9dfe-230cf1439d4e';
    const all = [
      spanIdFor(id),
      attemptSpanIdFor(id, 0),
      attemptSpanIdFor(id, 1),
      spanIdFor('other'),
    ];
    expect(new Set(all).size).toBe(4);
    for (const spanId of all) expect(spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(spanIdFor(id)).toBe(spanIdFor(id));
  });
});

describe('parsePythonException', () => {
  it('prefers the qualified name and message from the traceback when they agree', () => {
    expect(
      parsePythonException(
        "PaymentError('card declined')",
        'Traceback ...\n  File "x"\nproj.errors.PaymentError: card declined\n',
      ),
    ).toEqual({
      type: 'proj.errors.PaymentError',
      message: 'card declined',
    });
  });

  it('uses the repr for retries, whose traceback ends in celery.exceptions.Retry', () => {
    expect(
      parsePythonException(
        "ConnectionError('transient, try 0')",
        "...\ncelery.exceptions.Retry: Retry in 0.2s: ConnectionError('transient, try 0')\n",
      ),
    ).toEqual({ type: 'ConnectionError', message: 'transient, try 0' });
  });

  it('unquotes Python string literals and leaves other arguments readable', () => {
    expect(parsePythonException('KeyError("it\'s \\\\ here\\n")', undefined)).toEqual({
      type: 'KeyError',
      message: "it's \\ here\n",
    });
    expect(parsePythonException("ValueError('a', 3)", undefined)).toEqual({
      type: 'ValueError',
      message: "'a', 3",
    });
    expect(parsePythonException('TimeLimitExceeded(30,)', undefined)).toEqual({
      type: 'TimeLimitExceeded',
      message: '30,',
    });
    expect(parsePythonException(undefined, undefined)).toEqual({ type: 'Exception', message: '' });
    expect(parsePythonException('WorkerLostError()', undefined)).toEqual({
      type: 'WorkerLostError',
      message: '',
    });
  });
});

describe('span helpers', () => {
  it('converts epoch seconds to HrTime at microsecond precision', () => {
    expect(hrTime(1795736645.1673448)).toEqual([1795736645, 167345000]);
    expect(hrTime(1795736645.99999)).toEqual([1795736645, 999990000]);
    expect(hrTime(1795736645.9999996)).toEqual([1795736646, 0]); // eslint-disable-line no-loss-of-precision
    expect(hrTime(0)).toEqual([0, 0]);
  });

  it('truncates long values keeping head and tail', () => {
    const traceback = `Traceback (most recent call last):\n${'  File "x", line 1\n'.repeat(10_000)}RuntimeError: the end`;
    const cut = truncateMiddle(traceback, 2000);
    expect(cut.length).toBeLessThanOrEqual(2000);
    expect(cut.startsWith('Traceback (most recent call last):')).toBe(true);
    expect(cut.endsWith('RuntimeError: the end')).toBe(true);
    expect(cut).toContain('characters truncated');
    expect(truncateMiddle('short', 10)).toBe('short');
  });
});

describe('task span start', () => {
  it('is the earliest sign of the task, even when task-sent is stamped after the start', async () => {
    const { assemble } = await import('../support/pipeline.js');
    const run = assemble([
      { type: 'task-received', uuid: 't', timestamp: 10.2, name: 'proj.add', hostname: 'w' },
      { type: 'task-started', uuid: 't', timestamp: 10.25, hostname: 'w' },
      // Celery stamps task-sent after publishing; a busy client can be later than the worker.
      { type: 'task-sent', uuid: 't', timestamp: 10.3, name: 'proj.add', hostname: 'client' },
      { type: 'task-succeeded', uuid: 't', timestamp: 10.4, runtime: 0.15, hostname: 'w' },
    ]);
    const task = run.spans.find((s) => s.name === 'proj.add');
    const attempt = run.spans.find((s) => s.name === 'run/proj.add');
    expect(task?.startTime).toEqual(hrTime(10.2));
    expect(attempt?.startTime).toEqual(hrTime(10.25));
  });
});
