// SavedTasks with the real state file and assembler: checkpoints append to the journal, the
// whole state is written at the first save, on stop and after a failed save, and what a new
// bridge loads after a kill at any checkpoint is the state captured at that checkpoint.
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TaskAssembler } from '../../src/assemble/TaskAssembler.js';
import {
  isTaskContextEvent,
  type TaskContextEvent,
  type TaskEvent,
} from '../../src/decode/CeleryEvent.js';
import { Logger } from '../../src/log/Logger.js';
import { SavedTasks } from '../../src/state/SavedTasks.js';
import { StateFile } from '../../src/state/StateFile.js';
import { amqpCompanionFixtureMessages, amqpFixtureMessages } from '../support/fixtures.js';
import { ASSEMBLER_OPTIONS, assemblerEventsOf, decodeAll } from '../support/pipeline.js';

const root = mkdtempSync(join(tmpdir(), 'saved-tasks-journal-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;

const json = (value: unknown): unknown => JSON.parse(JSON.stringify(value)) as unknown;
const counters = {
  lateEvent: () => undefined,
  duplicateEvent: () => undefined,
  tasksEvicted: () => undefined,
};
const events = assemblerEventsOf(
  decodeAll([...amqpFixtureMessages(), ...amqpCompanionFixtureMessages()]).events,
);

/** A bridge's assembler and saved tasks on one state file, with a twin assembler as reference. */
function bridge(path: string, lines: string[] = []) {
  const assembler = new TaskAssembler(
    ASSEMBLER_OPTIONS,
    () => undefined,
    counters,
    () => 0,
  );
  const twin = new TaskAssembler(
    ASSEMBLER_OPTIONS,
    () => undefined,
    counters,
    () => 0,
  );
  let settle: () => Promise<void> = () => Promise.resolve();
  const logger = new Logger('debug', (line) => lines.push(line));
  const saved = new SavedTasks(new StateFile(path), assembler, logger, 0, () => settle());
  return {
    assembler,
    saved,
    lines,
    feed(items: readonly (TaskEvent | TaskContextEvent)[]) {
      for (const event of items) {
        for (const a of [assembler, twin]) {
          if (isTaskContextEvent(event)) a.handleContext(event);
          else a.handle(event);
        }
      }
    },
    /** The state a whole snapshot would save now. */
    expected: () => json(twin.snapshot()),
    settleWith(next: () => Promise<void>) {
      settle = next;
    },
  };
}

const written = (lines: string[]): string[] =>
  lines
    .map((line) => JSON.parse(line) as { msg: string; written?: string })
    .filter((line) => line.msg === 'saved unfinished tasks to the state file')
    .map((line) => line.written ?? '');

describe('SavedTasks with the journal', () => {
  it('appends checkpoints to the journal; a new bridge loads the last one, whatever the kill point', async () => {
    const path = join(root, `state-${counter++}.json`);
    const first = bridge(path);
    await first.saved.start();
    const step = Math.ceil(events.length / 12);
    for (let at = 0; at < events.length; at += step) {
      first.feed(events.slice(at, at + step));
      expect(await first.saved.checkpoint()).toBe(true);
      // Killed here: what a new bridge loads is this checkpoint's state.
      const loaded = await new StateFile(path).load();
      expect(json(loaded?.snapshot)).toEqual(first.expected());
    }
    const kinds = written(first.lines);
    expect(kinds[0]).toBe('base');
    expect(kinds.slice(1).filter((kind) => kind === 'entry').length).toBeGreaterThan(5);
    expect(kinds.slice(1)).not.toContain('base');
    // The base was written once; everything since went to the journal.
    const lines = readFileSync(`${path}.journal`, 'utf8').split('\n');
    expect(lines.length - 2).toBe(kinds.filter((kind) => kind === 'entry').length);

    const second = bridge(path);
    await second.saved.start();
    expect(json(second.assembler.snapshot())).toEqual(first.expected());
    expect(second.lines.join('\n')).toMatch(/restored unfinished tasks.*"journalEntries":\d+/);
  });

  it('on becoming the owner, removes the temporary file a write killed mid-way left', async () => {
    const path = join(root, `state-${counter++}.json`);
    const first = bridge(path);
    await first.saved.start();
    first.feed(events.slice(0, Math.floor(events.length / 2)));
    expect(await first.saved.checkpoint()).toBe(true);
    // A kill -9 inside replaceFile, after its open and before its rename, two minutes ago.
    const leftover = join(root, `.state-${counter - 1}.json.${'0'.repeat(24)}.tmp`);
    writeFileSync(leftover, '{"format":', { mode: 0o600 });
    const twoMinutesAgo = Date.now() / 1000 - 120;
    utimesSync(leftover, twoMinutesAgo, twoMinutesAgo);

    const second = bridge(path);
    await second.saved.start();
    expect(existsSync(leftover)).toBe(false);
    expect(second.lines.join('\n')).toMatch(/removed temporary state files.*"files":1/);
    expect(json(second.assembler.snapshot())).toEqual(first.expected());
  });

  it('writes the whole state at the first save after a start and on stop', async () => {
    const path = join(root, `state-${counter++}.json`);
    const first = bridge(path);
    await first.saved.start();
    first.feed(events.slice(0, 40));
    await first.saved.checkpoint();
    first.feed(events.slice(40, 80));
    await first.saved.checkpoint();
    expect(written(first.lines)).toEqual(['base', 'entry']);

    const second = bridge(path);
    await second.saved.start(); // restores base + entry
    second.feed(events.slice(80, 120));
    await second.saved.checkpoint(); // not appended to the first bridge's journal
    second.feed(events.slice(120, 160));
    await second.saved.checkpoint();
    const base = statSync(path).ino;
    await second.saved.stop();
    expect(written(second.lines)).toEqual(['base', 'entry', 'base']);
    expect(statSync(path).ino).not.toBe(base);
    expect(readFileSync(`${path}.journal`, 'utf8').split('\n')).toHaveLength(2); // the header
  });

  it('after a failed save, writes the whole state: no entry may miss the failed capture', async () => {
    const path = join(root, `state-${counter++}.json`);
    const b = bridge(path);
    await b.saved.start();
    b.feed(events.slice(0, 40));
    await b.saved.checkpoint();
    b.feed(events.slice(40, 80));
    b.settleWith(() => Promise.reject(new Error('collector gone')));
    expect(await b.saved.checkpoint()).toBe(false); // captured, never written
    b.settleWith(() => Promise.resolve());
    b.feed(events.slice(80, 120));
    expect(await b.saved.checkpoint()).toBe(true);
    expect(written(b.lines)).toEqual(['base', 'base']);
    expect(json((await new StateFile(path).load())?.snapshot)).toEqual(b.expected());
  });

  it('writes what was captured at the checkpoint, not what came while the spans settled', async () => {
    const path = join(root, `state-${counter++}.json`);
    const b = bridge(path);
    await b.saved.start();
    b.feed(events.slice(0, 40));
    await b.saved.checkpoint();
    b.feed(events.slice(40, 80));
    const atCapture = b.expected();
    let release: () => void = () => undefined;
    const captured = new Promise<void>((taken) =>
      b.settleWith(() => {
        taken();
        return new Promise<void>((resolve) => (release = resolve));
      }),
    );
    const done = b.saved.checkpoint();
    await captured; // (saves are spaced: the capture may come a moment after the call)
    b.feed(events.slice(80)); // later events, handled before the entry is written
    release();
    expect(await done).toBe(true);
    expect(written(b.lines)).toEqual(['base', 'entry']);
    expect(json((await new StateFile(path).load())?.snapshot)).toEqual(atCapture);
  });
});
