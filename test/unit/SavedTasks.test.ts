import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AssemblerSnapshot } from '../../src/assemble/TaskAssembler.js';
import { Logger } from '../../src/log/Logger.js';
import { SavedTasks } from '../../src/state/SavedTasks.js';
import type { StateFile } from '../../src/state/StateFile.js';

afterEach(() => vi.useRealTimers());

/** A state file whose writes finish when the test says so. */
function slowFile() {
  const saved: string[] = [];
  const pending: (() => void)[] = [];
  const file = {
    path: '/state.json',
    load: () => Promise.resolve(undefined),
    encode: (snapshot: AssemblerSnapshot) => snapshot.finishedIds.join(),
    write: (text: string) =>
      new Promise<void>((resolve) =>
        pending.push(() => {
          saved.push(text);
          resolve();
        }),
      ),
  } as unknown as StateFile;
  return { file, saved, pending };
}

const quiet = new Logger('error', () => undefined);

describe('SavedTasks', () => {
  it('makes the last save on stop even while a periodic save is still writing', async () => {
    vi.useFakeTimers();
    const { file, saved, pending } = slowFile();
    let finishedIds = ['a'];
    const assembler = { snapshot: () => ({ tasks: [], finishedIds }), restore: () => 0 };
    const tasks = new SavedTasks(file, assembler, quiet, 1000);
    await tasks.start();

    await vi.advanceTimersByTimeAsync(1000); // a periodic save starts writing ['a']
    expect(pending).toHaveLength(1);
    // Two more periodic saves capture while it writes; they write after it, never beside it.
    await vi.advanceTimersByTimeAsync(2000);
    expect(pending).toHaveLength(1);

    finishedIds = ['a', 'b']; // the stop flushed more
    let stopped = false;
    const stop = tasks.stop().then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(pending).toHaveLength(1); // the last save waits for the others
    for (let released = 0; !stopped && released < 10; released++) {
      pending[released]?.();
      await vi.advanceTimersByTimeAsync(20_000);
      // One write at a time: the next one starts only after this one ended.
      expect(pending.length).toBeLessThanOrEqual(released + 2);
    }
    await stop;
    // In capture order; the stop's save, last, has what the stop flushed.
    expect(saved).toEqual(['a', 'a', 'a', 'a,b']);
  });

  it('captures the next checkpoint while one waits for the collector, and writes them in order', async () => {
    const { file, saved, pending } = slowFile();
    let finishedIds = ['a'];
    const assembler = { snapshot: () => ({ tasks: [], finishedIds }), restore: () => 0 };
    const releases: (() => void)[] = [];
    const settled = () => new Promise<void>((resolve) => releases.push(resolve));
    const tasks = new SavedTasks(file, assembler, quiet, 0, settled);
    await tasks.start();
    const turn = () => new Promise((resolve) => setImmediate(resolve));

    const first = tasks.checkpoint();
    finishedIds = ['a', 'b'];
    const second = tasks.checkpoint(); // captured now, not after the first is written
    await turn();
    expect(releases).toHaveLength(2);
    releases[1]?.(); // the collector accepted the second's spans first
    await turn();
    expect(pending).toHaveLength(0); // still written after the first
    releases[0]?.();
    await turn();
    expect(pending).toHaveLength(1);
    pending[0]?.();
    await turn();
    pending[1]?.();
    expect(await first).toBe(true);
    expect(await second).toBe(true);
    expect(saved).toEqual(['a', 'a,b']);
  });

  it('does not write a capture taken before a write that failed, and says it is not safe', async () => {
    let fail = true;
    const saved: string[] = [];
    const gates: (() => void)[] = [];
    const file = {
      path: '/state.json',
      load: () => Promise.resolve(undefined),
      encode: (snapshot: AssemblerSnapshot) => snapshot.finishedIds.join(),
      write: (text: string) =>
        new Promise<void>((resolve, reject) =>
          gates.push(() => {
            if (fail) reject(new Error('disk full'));
            else {
              saved.push(text);
              resolve();
            }
          }),
        ),
    } as unknown as StateFile;
    let finishedIds = ['a'];
    const assembler = { snapshot: () => ({ tasks: [], finishedIds }), restore: () => 0 };
    const tasks = new SavedTasks(file, assembler, quiet, 0);
    await tasks.start();
    const turn = () => new Promise((resolve) => setImmediate(resolve));

    const first = tasks.checkpoint();
    finishedIds = ['a', 'b'];
    const second = tasks.checkpoint();
    await turn();
    gates[0]?.(); // the first write fails
    expect(await first).toBe(false);
    // The second was captured before the failure: neither a base nor safe to acknowledge.
    expect(await second).toBe(false);
    expect(gates).toHaveLength(1);
    fail = false;
    finishedIds = ['a', 'b', 'c'];
    const third = tasks.checkpoint();
    await turn();
    gates[1]?.();
    expect(await third).toBe(true);
    expect(saved).toEqual(['a,b,c']);
  });

  it('writes a capture only once the spans finished before it were accepted', async () => {
    const { file, saved, pending } = slowFile();
    let finishedIds = ['a'];
    const assembler = { snapshot: () => ({ tasks: [], finishedIds }), restore: () => 0 };
    let release: () => void = () => undefined;
    const settled = () => new Promise<void>((resolve) => (release = resolve));
    const tasks = new SavedTasks(file, assembler, quiet, 0, settled);
    await tasks.start();

    const done = tasks.checkpoint();
    finishedIds = ['a', 'b']; // later events must not change what the capture says
    await new Promise((resolve) => setImmediate(resolve));
    expect(pending).toHaveLength(0); // the collector has not accepted 'a' yet
    release();
    await new Promise((resolve) => setImmediate(resolve));
    expect(pending).toHaveLength(1);
    pending[0]?.();
    expect(await done).toBe(true);
    expect(saved).toEqual(['a']);
  });

  it('gives up the last save after the timeout and leaves the file as it was', async () => {
    const { file, pending } = slowFile();
    const assembler = { snapshot: () => ({ tasks: [], finishedIds: ['a'] }), restore: () => 0 };
    const lines: string[] = [];
    const logger = new Logger('warn', (line) => lines.push(line));
    const tasks = new SavedTasks(file, assembler, logger, 0, () => new Promise<void>(() => {}));
    await tasks.start();
    await tasks.stop(50);
    expect(pending).toHaveLength(0);
    expect(lines.join('\n')).toContain('the collector did not accept the last spans in time');
  });

  it('a bridge that never became active writes nothing (the file is the active one’s)', async () => {
    const { file, pending } = slowFile();
    const assembler = { snapshot: () => ({ tasks: [], finishedIds: ['a'] }), restore: () => 0 };
    const tasks = new SavedTasks(file, assembler, quiet, 1000);
    await tasks.stop();
    expect(await tasks.checkpoint()).toBe(true);
    expect(pending).toHaveLength(0);
  });
});

describe('SavedTasks spacing', () => {
  it('spaces saves by their own cost, so a large state is not written back to back', async () => {
    vi.useFakeTimers();
    const writes: number[] = [];
    const file = {
      path: '/state.json',
      load: () => Promise.resolve(undefined),
      // A whole state (a base): its write counts in the spacing, an entry's fsync does not.
      encode: () => ({ kind: 'base', data: Buffer.from('x'), tasks: 0 }),
      // Each write takes 100 ms of (fake) time.
      write: () =>
        new Promise<void>((resolve) =>
          setTimeout(() => {
            writes.push(Date.now());
            resolve();
          }, 100),
        ),
    } as unknown as StateFile;
    const assembler = { snapshot: () => ({ tasks: [], finishedIds: [] }), restore: () => 0 };
    const tasks = new SavedTasks(file, assembler, quiet, 0);
    await tasks.start();
    const first = tasks.checkpoint();
    await vi.advanceTimersByTimeAsync(100);
    expect(await first).toBe(true);
    const second = tasks.checkpoint(); // at once: it waits as long as the first took (100 ms)
    await vi.advanceTimersByTimeAsync(199);
    expect(writes).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(await second).toBe(true);
    expect(writes).toHaveLength(2);
    expect((writes[1] ?? 0) - (writes[0] ?? 0)).toBe(200);
  });
});
