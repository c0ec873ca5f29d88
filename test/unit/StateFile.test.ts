import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TaskAssembler } from '../../src/assemble/TaskAssembler.js';
import type { AssemblerSnapshot } from '../../src/assemble/TaskAssembler.js';
import { defaultStateDirectory } from '../../src/config/defaultStateDirectory.js';
import { MAX_STATE_FILE_BYTES, STALE_TEMPORARY_MS, StateFile } from '../../src/state/StateFile.js';
import { amqpCompanionFixtureMessages, amqpFixtureMessages } from '../support/fixtures.js';
import { ASSEMBLER_OPTIONS, assemblerEventsOf, decodeAll } from '../support/pipeline.js';

const root = mkdtempSync(join(tmpdir(), 'state-file-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
/** A directory of its own per case; `missing` leaves it for the state file to create. */
function freshDir(missing = false): string {
  const dir = join(root, `case-${counter++}`);
  if (!missing) mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/** A real snapshot: the captured fixtures' events, cut off half way, so tasks are in flight. */
function fixtureSnapshot(): AssemblerSnapshot {
  const assembler = new TaskAssembler(ASSEMBLER_OPTIONS, () => undefined, {
    lateEvent: () => undefined,
    duplicateEvent: () => undefined,
    tasksEvicted: () => undefined,
  });
  const events = assemblerEventsOf(
    decodeAll([...amqpFixtureMessages(), ...amqpCompanionFixtureMessages()]).events,
  );
  for (const event of events.slice(0, Math.floor(events.length / 2))) {
    if (event.type === 'task-otel-context') assembler.handleContext(event);
    else assembler.handle(event);
  }
  return assembler.snapshot();
}

async function refusal(file: StateFile): Promise<string> {
  const error = await file.load().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'load() should have refused the file').toBeInstanceOf(Error);
  return (error as Error).message;
}

describe('StateFile', () => {
  it('round-trips a real snapshot, in a 0700 directory it creates, as a 0600 file', async () => {
    const dir = join(freshDir(true), 'nested');
    const file = new StateFile(join(dir, 'state.json'));
    const snapshot = fixtureSnapshot();
    expect(snapshot.tasks.length).toBeGreaterThan(0);
    await file.save(snapshot);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(file.path).mode & 0o777).toBe(0o600);
    // Only the file and its journal (started empty) are left: no temporary file.
    expect(readdirSync(dir).sort()).toEqual(['state.json', 'state.json.journal']);
    expect(statSync(file.journal.path).mode & 0o777).toBe(0o600);
    const loaded = await file.load();
    expect(loaded?.snapshot).toEqual(JSON.parse(JSON.stringify(snapshot)));
    expect(loaded?.invalidTasks).toBe(0);
    expect(loaded?.savedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('has nothing to load when there is no file', async () => {
    expect(await new StateFile(join(freshDir(), 'none.json')).load()).toBeUndefined();
  });

  it('replaces a symlink at the path instead of writing through it', async () => {
    const dir = freshDir();
    const file = new StateFile(join(dir, 'state.json'));
    await file.save({ tasks: [], finishedIds: [] });
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious\n');
    rmSync(file.path);
    symlinkSync(victim, file.path);
    await file.save({ tasks: [], finishedIds: ['a'] });
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(statSync(file.path).mode & 0o777).toBe(0o600);
  });

  it('refuses a symlink, a FIFO, a world-writable or foreign file, never quoting it', async () => {
    const dir = freshDir();
    const file = new StateFile(join(dir, 'state.json'));
    await file.save({ tasks: [], finishedIds: [] });
    const secret = join(dir, 'secret');
    writeFileSync(secret, 'TOP-SECRET-CONTENT', { mode: 0o600 });
    rmSync(file.path);
    symlinkSync(secret, file.path);
    const symlink = await refusal(file);
    expect(symlink).toContain('is a symbolic link');
    expect(symlink).not.toContain('TOP-SECRET');

    rmSync(file.path);
    execFileSync('mkfifo', [file.path]);
    // Opened non-blocking: without it this await would never return (no writer on the FIFO).
    expect(await refusal(file)).toContain('is not a regular file');

    rmSync(file.path);
    await file.save({ tasks: [], finishedIds: [] });
    chmodSync(file.path, 0o666);
    expect(await refusal(file)).toContain('group or other users can write to it');

    chmodSync(file.path, 0o600);
    chownSync(file.path, 65534, 65534);
    expect(await refusal(file)).toMatch(/belongs to user id 65534, not to the bridge's \(\d+\)/);
  });

  it('refuses a file over the size cap without reading it', async () => {
    const file = new StateFile(join(freshDir(), 'state.json'));
    await file.save({ tasks: [], finishedIds: [] });
    truncateSync(file.path, MAX_STATE_FILE_BYTES + 1); // sparse: no disk used
    expect(await refusal(file)).toContain(`larger than ${MAX_STATE_FILE_BYTES} bytes`);
  });

  it('refuses a planted file with any wrong field whole, naming the field, not the value', async () => {
    const file = new StateFile(join(freshDir(), 'state.json'));
    const good = {
      format: 'celery-otel-bridge/state',
      version: 1,
      savedAt: '2026-01-02T03:04:05.678Z',
      tasks: [
        {
          id: 'aaaa',
          name: 'proj.add',
          lastEventAt: 1700000000,
          receivedTimes: [1700000000],
          attempts: [{ startedAt: 1700000001, hostname: 'celery@h', outcome: 'RETRY' }],
          final: { state: 'SUCCESS', at: 1700000002 },
        },
      ],
      finishedIds: ['bbbb'],
    };
    const plant = (content: unknown): void =>
      writeFileSync(file.path, JSON.stringify(content), { mode: 0o600 });
    plant(good);
    expect((await file.load())?.snapshot.tasks).toHaveLength(1);

    const task = good.tasks[0] as Record<string, unknown>;
    const cases: [unknown, RegExp][] = [
      [{ ...good, tasks: [{ ...task, name: 12345 }] }, /tasks\[0\]\.name is not a string/],
      [{ ...good, tasks: [{ ...task, lastEventAt: 'SECRET-VALUE' }] }, /tasks\[0\]\.lastEventAt/],
      [{ ...good, tasks: [{ ...task, lastEventAt: 1e13 }] }, /tasks\[0\]\.lastEventAt/],
      [{ ...good, tasks: [{ ...task, attempts: [{ outcome: 'SECRET-VALUE' }] }] }, /outcome/],
      [{ ...good, tasks: [{ ...task, final: { state: 'SUCCESS' } }] }, /final\.at/],
      [{ ...good, tasks: [{ ...task, upstream: { traceId: 'x' } }] }, /upstream\.traceId/],
      [{ ...good, tasks: [{ ...task, 'SECRET-VALUE': 1 }] }, /has a field the format/],
      [{ ...good, tasks: [task, 'SECRET-VALUE'] }, /tasks\[1\] is not a JSON object/],
      [{ ...good, finishedIds: [7] }, /finishedIds\[0\]/],
      [{ ...good, tasks: {} }, /tasks is not a JSON array/],
      [{ ...good, savedAt: 'SECRET-VALUE' }, /savedAt/],
      [{ ...good, version: 2 }, /not a celery-otel-bridge state file of version 1/],
      [['SECRET-VALUE'], /the file is not a JSON object/],
    ];
    for (const [content, expected] of cases) {
      plant(content);
      const message = await refusal(file);
      expect(message).toMatch(expected);
      expect(message).not.toContain('SECRET-VALUE');
    }
    writeFileSync(file.path, '{"format": "SECRET-VALUE", oops', { mode: 0o600 });
    const invalid = await refusal(file);
    expect(invalid).toContain('is not valid JSON');
    expect(invalid).not.toContain('SECRET-VALUE');
  });

  it('refuses to save what the next start would refuse as too large', async () => {
    const dir = freshDir();
    const file = new StateFile(join(dir, 'state.json'));
    const big = 'x'.repeat(1024 * 1024);
    const tasks = Array.from({ length: 260 }, (_, i) => ({
      id: `t${i}`,
      args: big,
      lastEventAt: 1,
      receivedTimes: [],
      attempts: [],
    }));
    await expect(file.save({ tasks, finishedIds: [] })).rejects.toThrow(/more than \d+ bytes/);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('temporary files of writes cut short', () => {
  it('removes the old ones of the base and the journal, and nothing else', async () => {
    const dir = freshDir();
    const path = join(dir, 'state.json');
    const file = new StateFile(path);
    await file.save(fixtureSnapshot());
    const now = Date.now();
    const old = (now - STALE_TEMPORARY_MS - 5_000) / 1000;
    const plant = (name: string, mtimeSeconds: number): void => {
      writeFileSync(join(dir, name), 'half a state file', { mode: 0o600 });
      utimesSync(join(dir, name), mtimeSeconds, mtimeSeconds);
    };
    const random = (digit: string): string => digit.repeat(24);
    // What a kill -9 between replaceFile's open and its rename leaves: removed.
    plant(`.state.json.${random('a')}.tmp`, old);
    plant(`.state.json.journal.${random('b')}.tmp`, old);
    // A write that may still be under way in another process: kept.
    plant(`.state.json.${random('c')}.tmp`, now / 1000);
    // Names replaceFile never makes for this file: kept.
    plant(`.state.json.${random('d')}x.tmp`, old);
    plant(`.other.json.${random('e')}.tmp`, old);
    plant('notes.tmp', old);
    mkdirSync(join(dir, `.state.json.${random('f')}.tmp`));

    expect(await file.removeStaleTemporaries(now)).toBe(2);
    expect(readdirSync(dir).sort()).toEqual(
      [
        `.other.json.${random('e')}.tmp`,
        `.state.json.${random('c')}.tmp`,
        `.state.json.${random('d')}x.tmp`,
        `.state.json.${random('f')}.tmp`,
        'notes.tmp',
        'state.json',
        'state.json.journal',
      ].sort(),
    );
    // The state itself is untouched.
    expect((await file.load())?.snapshot.tasks.length).toBeGreaterThan(0);
  });

  it('finds nothing to remove where nothing was written yet', async () => {
    const file = new StateFile(join(freshDir(true), 'state.json'));
    expect(await file.removeStaleTemporaries()).toBe(0);
  });
});

describe('defaultStateDirectory', () => {
  it('follows systemd, then XDG, then root or the home directory, never /tmp', () => {
    const home = '/home/celery';
    expect(defaultStateDirectory({ env: {}, uid: 1000, home })).toBe(
      '/home/celery/.local/state/celery-otel-bridge',
    );
    expect(defaultStateDirectory({ env: {}, uid: 0, home: '/root' })).toBe(
      '/var/lib/celery-otel-bridge',
    );
    expect(
      defaultStateDirectory({ env: { XDG_STATE_HOME: '/xdg/state' }, uid: 0, home: '/root' }),
    ).toBe('/xdg/state/celery-otel-bridge');
    // Relative XDG paths are ignored, as the XDG Base Directory Specification says.
    expect(defaultStateDirectory({ env: { XDG_STATE_HOME: 'rel' }, uid: 1000, home })).toBe(
      '/home/celery/.local/state/celery-otel-bridge',
    );
    expect(
      defaultStateDirectory({
        env: { STATE_DIRECTORY: '/var/lib/bridge:/var/lib/other', XDG_STATE_HOME: '/xdg' },
        uid: 0,
        home: '/root',
      }),
    ).toBe('/var/lib/bridge');
  });
});
