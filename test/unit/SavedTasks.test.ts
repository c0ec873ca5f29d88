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
    removeStaleTemporaries: () => Promise.resolve(0),
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
    await vi.advanceTimersByTimeAsync(2000); // two more turns: one save queued behind it
    expect(pending).toHaveLength(1);

    finishedIds = ['a', 'b']; // the stop flushed more
    const stopped = tasks.stop();
    await vi.advanceTimersByTimeAsync(0);
    expect(pending).toHaveLength(1); // the last save waits for the periodic one
    pending[0]?.();
    // Saves are spaced by what the last one cost (its write took two seconds here).
    await vi.advanceTimersByTimeAsync(20_000);
    pending[1]?.(); // the queued one, which captured after the first ended
    await vi.advanceTimersByTimeAsync(20_000);
    expect(pending).toHaveLength(3);
    pending[2]?.();
    await stopped;
    expect(saved).toEqual(['a', 'a,b', 'a,b']);
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
      removeStaleTemporaries: () => Promise.resolve(0),
      encode: () => 'x',
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
