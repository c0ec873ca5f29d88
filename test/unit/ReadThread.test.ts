import { describe, expect, it } from 'vitest';
import { ReadThread, type ReadThreadStart } from '../../src/brokers/ReadThread.js';
import { BrokerSetupError, BrokerUnreachableError } from '../../src/shared/errors.js';
import { Logger } from '../../src/log/Logger.js';

/** A stand-in read thread: `body` runs with `port` and `data` (its workerData) in scope. */
function script(body: string): URL {
  return new URL(
    'data:text/javascript,' +
      encodeURIComponent(
        "import { parentPort as port, workerData as data } from 'node:worker_threads';" + body,
      ),
  );
}

function setup(url: URL, data: () => unknown = () => ({})) {
  const seen: string[] = [];
  const lines: string[] = [];
  const thread = new ReadThread<unknown, { type: string }, { type: string; n?: number }>(
    'Test',
    url,
    data,
    {
      started: (event: Extract<ReadThreadStart, { type: 'started' }>) =>
        seen.push(`started ${event.detail}`),
      event: (event) => seen.push(`event ${event.type} ${event.n ?? ''}`.trim()),
      exited: () => seen.push('exited'),
      lost: () => seen.push('lost'),
    },
    new Logger('debug', (line) => lines.push(line)),
    undefined,
    500,
  );
  return { thread, seen, lines };
}

const until = async (condition: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 25));
  expect(condition()).toBe(true);
};

describe('ReadThread', () => {
  it('starts once the thread says so, passes its events on in order, and stops it', async () => {
    const { thread, seen } = setup(
      script(
        "port.postMessage({ type: 'started', detail: 'consuming ' + data.name });" +
          "for (let n = 0; n < 3; n++) port.postMessage({ type: 'batch', n });" +
          "port.on('message', (m) => { if (m.type === 'stop') port.close(); else port.postMessage({ type: 'echo:' + m.type }); });",
      ),
      () => ({ name: 'q1' }),
    );
    await thread.start();
    thread.post({ type: 'pull' });
    await until(() => seen.includes('event echo:pull'));
    await thread.stop();
    expect(seen).toEqual([
      'started consuming q1',
      'event batch 0',
      'event batch 1',
      'event batch 2',
      'event echo:pull',
      'exited',
    ]);
  });

  it('rejects with the error the thread names: setup refused, or unreachable', async () => {
    const refused = setup(
      script("port.postMessage({ type: 'failed', setup: true, message: 'refused: delete it' });"),
    );
    await expect(refused.thread.start()).rejects.toThrow(
      new BrokerSetupError('refused: delete it'),
    );
    const unreachable = setup(
      script("port.postMessage({ type: 'failed', setup: false, message: 'cannot reach' });"),
    );
    const error: unknown = await unreachable.thread.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerUnreachableError);
    expect((error as Error).message).toBe('cannot reach');
  });

  it('rejects, and is not left waiting, when the thread throws or just ends before it starts', async () => {
    const thrown = setup(script("throw new Error('no module');"));
    await expect(thrown.thread.start()).rejects.toThrow(/the Test read thread failed: no module/);
    expect(thrown.lines.join('')).toContain('the Test read thread failed');
    const ended = setup(script('port.close();'));
    await expect(ended.thread.start()).rejects.toThrow(
      /the Test read thread exited before it consumed/,
    );
  });

  it('starts a new thread, with fresh workerData, when one ends unasked', async () => {
    let starts = 0;
    const { thread, seen } = setup(
      script(
        "port.postMessage({ type: 'started', detail: 'run ' + data.run });" +
          'if (data.run === 1) setTimeout(() => process.exit(3), 50);' +
          "port.on('message', (m) => { if (m.type === 'stop') port.close(); });",
      ),
      () => ({ run: ++starts }),
    );
    await thread.start();
    await until(() => seen.includes('started run 2'));
    await thread.stop();
    expect(seen).toEqual(['started run 1', 'exited', 'lost', 'started run 2', 'exited']);
  });

  it('terminates a thread that does not stop within its timeout', async () => {
    const { thread, seen } = setup(
      script(
        "port.postMessage({ type: 'started', detail: 'stubborn' });" +
          'setInterval(() => undefined, 1000);',
      ),
    );
    await thread.start();
    // It ignores the stop and keeps an interval: it ends only if terminated.
    await thread.stop();
    expect(seen).toEqual(['started stubborn', 'exited']);
  });
});
