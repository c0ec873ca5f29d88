import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AssemblerSnapshot } from '../../src/assemble/TaskAssembler.js';
import { Logger } from '../../src/log/Logger.js';
import { SavedTasks } from '../../src/state/SavedTasks.js';
import type { StateFile } from '../../src/state/StateFile.js';

afterEach(() => vi.useRealTimers());

describe('SavedTasks', () => {
  it('makes the last save on stop even while a periodic save is still writing', async () => {
    vi.useFakeTimers();
    const saved: string[] = [];
    const pending: (() => void)[] = [];
    const file = {
      path: '/state.json',
      load: () => Promise.resolve(undefined),
      save: (snapshot: AssemblerSnapshot) =>
        new Promise<void>((resolve) =>
          pending.push(() => {
            saved.push(snapshot.finishedIds.join());
            resolve();
          }),
        ),
    } as unknown as StateFile;
    let finishedIds = ['a'];
    const assembler = { snapshot: () => ({ tasks: [], finishedIds }), restore: () => 0 };
    const tasks = new SavedTasks(file, assembler, new Logger('error', () => undefined), 1000);
    await tasks.start();

    vi.advanceTimersByTime(1000); // a periodic save starts writing ['a']
    expect(pending).toHaveLength(1);
    vi.advanceTimersByTime(1000); // its next turn is skipped: one save at a time
    expect(pending).toHaveLength(1);

    finishedIds = ['a', 'b']; // the stop flushed more
    const stopped = tasks.stop();
    await vi.advanceTimersByTimeAsync(0);
    expect(pending).toHaveLength(1); // the last save waits for the periodic one
    pending[0]?.();
    await vi.advanceTimersByTimeAsync(0);
    expect(pending).toHaveLength(2);
    pending[1]?.();
    await stopped;
    expect(saved).toEqual(['a', 'a,b']);
  });
});
