import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { AssemblerChanges, AssemblerSnapshot } from '../../src/assemble/TaskAssembler.js';
import type { TaskRecord } from '../../src/assemble/TaskRecord.js';
import { type EncodedState, MIN_COMPACTION_BYTES, StateFile } from '../../src/state/StateFile.js';
import { MAX_JOURNAL_BYTES } from '../../src/state/StateJournal.js';

const root = mkdtempSync(join(tmpdir(), 'state-journal-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
function freshFile(): StateFile {
  const dir = join(root, `case-${counter++}`);
  mkdirSync(dir, { mode: 0o700 });
  return new StateFile(join(dir, 'state.json'));
}

const SECRET = 'SECRET-VALUE';

const task = (id: string, lastEventAt = 1_700_000_000): TaskRecord => ({
  id,
  name: 'proj.add',
  lastEventAt,
  receivedTimes: [lastEventAt],
  attempts: [],
});

const changes = (partial: Partial<AssemblerChanges>): AssemblerChanges => ({
  removedIds: [],
  finishedIds: [],
  changed: [],
  added: [],
  ...partial,
});

function entry(file: StateFile, partial: Partial<AssemblerChanges>): EncodedState {
  const encoded = file.encodeChanges(changes(partial));
  if (encoded === undefined) throw new Error('no entry for these changes');
  return encoded;
}

/** A base of a and b, then: c added, a changed, b exported. */
async function baseAndTwoEntries(file: StateFile): Promise<AssemblerSnapshot> {
  await file.save({ tasks: [task('a'), task('b')], finishedIds: ['old'] });
  await file.write(entry(file, { added: [task('c')] }));
  await file.write(entry(file, { changed: [task('a', 1_700_000_001)], finishedIds: ['b'] }));
  return { tasks: [task('a', 1_700_000_001), task('c')], finishedIds: ['old', 'b'] };
}

async function loaded(file: StateFile) {
  const state = await file.load();
  expect(state).toBeDefined();
  return state as NonNullable<typeof state>;
}

describe('the state file journal', () => {
  it('loads the base with every entry applied, both files 0600, no temporary file left', async () => {
    const file = freshFile();
    const expected = await baseAndTwoEntries(file);
    const state = await loaded(file);
    expect(state.snapshot).toEqual(expected);
    expect(state.journalEntries).toBe(2);
    expect(state.journalProblem).toBeUndefined();
    expect(statSync(file.path).mode & 0o777).toBe(0o600);
    expect(statSync(file.journal.path).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(file.path, '..')).sort()).toEqual(['state.json', 'state.json.journal']);
    // Nothing changed: no entry to write.
    expect(file.encodeChanges(changes({}))).toBeUndefined();
  });

  it('appends only to a journal this bridge started, never to one it loaded', async () => {
    const file = freshFile();
    await baseAndTwoEntries(file);
    const restarted = new StateFile(file.path);
    await restarted.load();
    expect(restarted.canAppend).toBe(false);
    await expect(restarted.write(entry(restarted, { added: [task('d')] }))).rejects.toThrow(
      /has not started it/,
    );
    expect((await loaded(restarted)).journalEntries).toBe(2);
  });

  it('compacts once the journal would outgrow its base (and not below the floor)', async () => {
    const file = freshFile();
    const big = 'x'.repeat(2 * MIN_COMPACTION_BYTES);
    await file.save({ tasks: [{ ...task('a'), args: big }], finishedIds: [] });
    const bulk = { ...task('b'), args: 'y'.repeat(MIN_COMPACTION_BYTES / 2 + 1000) };
    expect(file.fitsJournal(entry(file, { changed: [bulk] }))).toBe(true);
    await file.write(entry(file, { changed: [bulk] }));
    await file.write(entry(file, { changed: [bulk] }));
    await file.write(entry(file, { changed: [bulk] }));
    // A fourth would make the journal larger than its base.
    expect(file.fitsJournal(entry(file, { changed: [bulk] }))).toBe(false);
    await file.save({ tasks: [task('z')], finishedIds: [] });
    // A new base starts the journal afresh; a small base lets it grow to the floor.
    expect(statSync(file.journal.path).size).toBeLessThan(200);
    expect((await loaded(file)).journalEntries).toBe(0);
    expect(file.fitsJournal(entry(file, { changed: [bulk] }))).toBe(true);
  });

  it('ignores an entry cut short by a kill, with the reason, keeping the ones before', async () => {
    const file = freshFile();
    const expected = await baseAndTwoEntries(file);
    const torn = entry(file, { added: [{ ...task('d'), name: SECRET }] }).data;
    appendFileSync(file.journal.path, torn.subarray(0, torn.length - 7));
    const state = await loaded(file);
    expect(state.snapshot).toEqual(expected);
    expect(state.journalEntries).toBe(2);
    expect(state.journalProblem).toMatch(/ends in an incomplete entry \(entry 3\)/);
    expect(state.journalProblem).not.toContain(SECRET);
  });

  it('stops at a corrupt entry, naming the field and not the value, never refusing the base', async () => {
    const good = entry(freshFile(), { added: [task('later')] }).data.toString();
    const cases: [string, RegExp][] = [
      [
        `${JSON.stringify({ ...JSON.parse(good), added: [{ ...task('d'), name: 7 }] })}`,
        /added\[0\]\.name is not a string/,
      ],
      [
        `${JSON.stringify({ ...JSON.parse(good), finishedIds: [SECRET.length] })}`,
        /finishedIds\[0\]/,
      ],
      [
        `${JSON.stringify({ ...JSON.parse(good), [SECRET]: 1 })}`,
        /has a field the format does not have/,
      ],
      [
        `${JSON.stringify({ ...JSON.parse(good), savedAt: SECRET })}`,
        /"savedAt" is not an ISO 8601/,
      ],
      [`{"added": "${SECRET}", oops`, /is not valid JSON/],
      [`"${SECRET}"`, /the entry is not a JSON object/],
    ];
    for (const [line, reason] of cases) {
      const file = freshFile();
      await file.save({ tasks: [task('a')], finishedIds: [] });
      await file.write(entry(file, { added: [task('b')] }));
      appendFileSync(file.journal.path, `${line}\n${good}`);
      const state = await loaded(file);
      expect(state.snapshot.tasks.map((t) => t.id)).toEqual(['a', 'b']);
      expect(state.journalEntries).toBe(1);
      expect(state.journalProblem).toMatch(reason);
      expect(state.journalProblem).toMatch(
        /entry 2 of the state journal .* the 1 entries after it are ignored/,
      );
      expect(state.journalProblem).not.toContain(SECRET);
    }
  });

  it('ignores the journal of an earlier base (a stop between writing a base and its journal)', async () => {
    const file = freshFile();
    await baseAndTwoEntries(file);
    const earlier = `${file.journal.path}.earlier`;
    copyFileSync(file.journal.path, earlier);
    await file.save({ tasks: [task('new')], finishedIds: [] });
    renameSync(earlier, file.journal.path);
    const state = await loaded(file);
    expect(state.snapshot.tasks.map((t) => t.id)).toEqual(['new']);
    expect(state.journalEntries).toBe(0);
    expect(state.journalProblem).toBeUndefined();
    // No journal at all (the stop came before it was created): the base alone, quietly.
    rmSync(file.journal.path);
    expect((await loaded(file)).journalProblem).toBeUndefined();
  });

  it('loads a file of the format without a journal whole, ignoring any journal beside it', async () => {
    const file = freshFile();
    await baseAndTwoEntries(file); // a journal that would change the state
    writeFileSync(
      file.path,
      JSON.stringify({
        format: 'celery-otel-bridge/state',
        version: 1,
        savedAt: '2026-01-02T03:04:05.678Z',
        tasks: [task('only')],
        finishedIds: ['done'],
      }),
      { mode: 0o600 },
    );
    const state = await loaded(file);
    expect(state.snapshot).toEqual({ tasks: [task('only')], finishedIds: ['done'] });
    expect(state.journalEntries).toBe(0);
    expect(state.savedAt).toBe('2026-01-02T03:04:05.678Z');
  });

  it('refuses a planted journal (symlink, FIFO, writable by others, foreign, oversized, not one), using the base alone', async () => {
    const plants: [string, (path: string) => void, RegExp][] = [
      [
        'symlink',
        (path) => {
          writeFileSync(`${path}.secret`, `${SECRET}\n`, { mode: 0o600 });
          symlinkSync(`${path}.secret`, path);
        },
        /is a symbolic link/,
      ],
      ['fifo', (path) => execFileSync('mkfifo', [path]), /is not a regular file/],
      ['writable', (path) => chmodSync(path, 0o666), /group or other users can write to it/],
      ['foreign', (path) => chownSync(path, 65534, 65534), /belongs to user id 65534/],
      [
        'oversized',
        (path) => truncateSync(path, MAX_JOURNAL_BYTES + 1), // sparse: no disk used
        new RegExp(`larger than ${MAX_JOURNAL_BYTES} bytes`),
      ],
      [
        'another format',
        (path) => writeFileSync(path, `{"format":"${SECRET}","version":1}\n`, { mode: 0o600 }),
        /not a celery-otel-bridge state journal of version 1/,
      ],
      [
        'no header',
        (path) => writeFileSync(path, SECRET, { mode: 0o600 }),
        /first line is incomplete/,
      ],
    ];
    for (const [name, plant, reason] of plants) {
      const file = freshFile();
      await baseAndTwoEntries(file);
      if (name !== 'writable' && name !== 'foreign' && name !== 'oversized')
        rmSync(file.journal.path);
      plant(file.journal.path);
      const state = await loaded(file);
      expect(state.snapshot, name).toEqual({ tasks: [task('a'), task('b')], finishedIds: ['old'] });
      expect(state.journalEntries, name).toBe(0);
      expect(state.journalProblem, name).toMatch(reason);
      expect(state.journalProblem, name).not.toContain(SECRET);
    }
  });

  it('refuses to append to a journal replaced or changed behind its back, then compacts', async () => {
    const tamper: [string, (path: string) => void, RegExp][] = [
      [
        'symlink',
        (path) => {
          writeFileSync(`${path}.victim`, 'precious\n', { mode: 0o600 });
          rmSync(path);
          symlinkSync(`${path}.victim`, path);
        },
        /is a symbolic link/,
      ],
      [
        'another file',
        (path) => {
          copyFileSync(path, `${path}.copy`);
          renameSync(`${path}.copy`, path);
        },
        /is not the file the bridge created/,
      ],
      [
        'appended to',
        (path) => appendFileSync(path, '{}\n'),
        /does not hold what the bridge wrote/,
      ],
      ['made writable', (path) => chmodSync(path, 0o666), /group or other users can write/],
      ['given away', (path) => chownSync(path, 65534, 65534), /belongs to user id 65534/],
    ];
    for (const [name, change, reason] of tamper) {
      const file = freshFile();
      await baseAndTwoEntries(file);
      change(file.journal.path);
      await expect(file.write(entry(file, { added: [task('d')] })), name).rejects.toThrow(reason);
      expect(file.canAppend, name).toBe(false);
      if (name === 'symlink') {
        expect(readFileSync(`${file.journal.path}.victim`, 'utf8')).toBe('precious\n');
      }
      // The next base replaces whatever is at the path with a journal of the bridge's own.
      await file.save({ tasks: [task('e')], finishedIds: [] });
      await file.write(entry(file, { added: [task('f')] }));
      const state = await loaded(file);
      expect(
        state.snapshot.tasks.map((t) => t.id),
        name,
      ).toEqual(['e', 'f']);
      expect(statSync(file.journal.path).uid).toBe(process.getuid?.());
      expect(statSync(file.journal.path).mode & 0o777).toBe(0o600);
    }
  });
});
