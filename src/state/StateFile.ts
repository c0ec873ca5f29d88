import { randomBytes } from 'node:crypto';
import type { AssemblerChanges, AssemblerSnapshot } from '../assemble/TaskAssembler.js';
import { StateFileError } from '../shared/errors.js';
import { readOwnFile } from './readOwnFile.js';
import { removeStaleTemporaries, replaceFile } from './replaceFile.js';
import { replayJournal } from './replayJournal.js';
import { StateJournal } from './StateJournal.js';
import {
  type JournalEntry,
  STATE_FORMAT,
  STATE_VERSION,
  type StateFileContent,
  StateSchemaError,
  validateStateFile,
} from './stateFileSchema.js';

/**
 * A state file larger than this is refused unread (and not written): far more than 100,000
 * in-flight tasks take, and below V8's longest string, so JSON.parse never fails for size.
 */
export const MAX_STATE_FILE_BYTES = 256 * 1024 * 1024;

/**
 * The journal is compacted (a new base written, the journal started afresh) once an entry would
 * make it larger than its base, and never below this. Compacting when the journal reaches its
 * base's size writes each byte of state at most twice (once in an entry, once in the next base)
 * however many checkpoints there are, and keeps what the next start reads at most twice the
 * state: base plus a journal no larger than it. A small state compacts only past this floor,
 * since each compaction costs two renames and four fsyncs whatever its size.
 */
export const MIN_COMPACTION_BYTES = 1024 * 1024;

/**
 * A temporary file this much older than the start is taken to be a crashed write's: a write takes
 * milliseconds, and this leaves alone one still under way in a bridge that has not yet noticed it
 * lost the queue to this one.
 */
export const STALE_TEMPORARY_MS = 60_000;

/** A capture encoded at its instant, to write once its spans are settled. */
export type EncodedState =
  | {
      readonly kind: 'base';
      readonly data: Buffer;
      readonly journalId: string;
      readonly tasks: number;
    }
  | { readonly kind: 'entry'; readonly data: Buffer; readonly tasks: number };

/** What `load` found. */
export interface LoadedState {
  readonly snapshot: AssemblerSnapshot;
  /** When the newest part used (the base, or the last journal entry applied) was written. */
  readonly savedAt: string;
  /** Always 0: a base is used whole or not at all, and so is each journal entry. */
  readonly invalidTasks: number;
  /** Journal entries applied on the base. */
  readonly journalEntries: number;
  /** Why part or all of the journal was left out (StateJournal.read), for one warning. */
  readonly journalProblem?: string;
}

/**
 * The in-flight state kept across a bridge restart: a base (the whole state, JSON) and beside it
 * a journal (`<path>.journal`, StateJournal) of what each checkpoint changed since, read back at
 * start as the base with every complete journal entry applied in order.
 *
 * Both are written safely in a directory others may write to (replaceFile: exclusive creation
 * under a random name, fsync, rename, directory fsync; journal appends checked and fdatasynced)
 * and read only when they are regular files of the bridge's own user that nobody else can write,
 * within their size bounds, every field checked (stateFileSchema): a base that is not is refused
 * whole with a StateFileError saying why, never quoting the file; a journal that is not, or from
 * a bad entry on, is left out, and the load says why.
 *
 * Bounds: the base at most MAX_STATE_FILE_BYTES, the journal at most the larger of its base's
 * size and MIN_COMPACTION_BYTES (and never past MAX_JOURNAL_BYTES), so the two together at most
 * twice MAX_STATE_FILE_BYTES, plus one temporary file while a base or a new journal is written.
 */
export class StateFile {
  readonly journal: StateJournal;
  /** The size of the base the journal appended to continues. */
  private baseBytes = 0;

  constructor(readonly path: string) {
    this.journal = new StateJournal(`${path}.journal`);
  }

  async save(snapshot: AssemblerSnapshot): Promise<void> {
    await this.write(this.encode(snapshot));
  }

  /** The base for this snapshot, taken now (later changes to the records do not show). */
  encode(snapshot: AssemblerSnapshot): EncodedState {
    const journal = randomBytes(16).toString('hex');
    const content: StateFileContent = {
      format: STATE_FORMAT,
      version: STATE_VERSION,
      savedAt: new Date().toISOString(),
      journal,
      tasks: snapshot.tasks,
      finishedIds: snapshot.finishedIds,
    };
    const data = Buffer.from(JSON.stringify(content));
    return { kind: 'base', data, journalId: journal, tasks: snapshot.tasks.length };
  }

  /** A journal entry for these changes, taken now; undefined when nothing changed. */
  encodeChanges(changes: AssemblerChanges): EncodedState | undefined {
    const { removedIds, finishedIds, changed, added } = changes;
    const count = removedIds.length + finishedIds.length + changed.length + added.length;
    if (count === 0) return undefined;
    const entry: JournalEntry = {
      savedAt: new Date().toISOString(),
      removedIds,
      finishedIds,
      changed,
      added,
    };
    return {
      kind: 'entry',
      data: StateJournal.encodeEntry(entry),
      tasks: changed.length + added.length,
    };
  }

  /** Whether a journal entry may be written now: this bridge wrote the base it continues. */
  get canAppend(): boolean {
    return this.journal.bytes !== undefined;
  }

  /**
   * Whether `entry` goes in the journal; otherwise write a base instead (see MIN_COMPACTION_BYTES).
   */
  fitsJournal(entry: EncodedState): boolean {
    const bytes = this.journal.bytes;
    if (bytes === undefined) return false;
    return bytes + entry.data.length <= Math.max(this.baseBytes, MIN_COMPACTION_BYTES);
  }

  /**
   * Writes what `encode` or `encodeChanges` returned: a base replaces the file and starts a new
   * journal (in that order: until the new journal is in place, the old one names the old base
   * and is not applied to the new one); an entry is appended to the journal.
   */
  async write(encoded: EncodedState): Promise<void> {
    if (encoded.kind === 'entry') {
      await this.journal.append(encoded.data);
      return;
    }
    if (encoded.data.length > MAX_STATE_FILE_BYTES) {
      throw new StateFileError(
        `the unfinished tasks take more than ${MAX_STATE_FILE_BYTES} bytes, which the next start would refuse: lower --max-in-flight-tasks or --max-captured-length`,
      );
    }
    // Entries of the old journal follow the old base: none may be appended once this is written.
    this.journal.stopAppending();
    await replaceFile(this.path, encoded.data);
    this.baseBytes = encoded.data.length;
    await this.journal.start(encoded.journalId);
  }

  /**
   * The saved state, undefined when there is none; throws StateFileError with the reason when
   * the base is refused.
   */
  async load(): Promise<LoadedState | undefined> {
    const bytes = await readOwnFile(this.path, MAX_STATE_FILE_BYTES, (why) => this.refused(why));
    if (bytes === undefined) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch {
      // V8's message quotes the text around the error: never put it in the log.
      throw this.refused('it is not valid JSON');
    }
    let base: ReturnType<typeof validateStateFile>;
    try {
      base = validateStateFile(parsed);
    } catch (error) {
      if (error instanceof StateSchemaError) throw this.refused(error.message);
      throw error;
    }
    // A base without a journal id is a whole state (written before the journal existed).
    if (base.journal === undefined) {
      return { snapshot: base.snapshot, savedAt: base.savedAt, invalidTasks: 0, journalEntries: 0 };
    }
    const reading = await this.journal.read(base.journal);
    const last = reading.entries[reading.entries.length - 1];
    return {
      snapshot: replayJournal(base.snapshot, reading.entries),
      savedAt: last?.savedAt ?? base.savedAt,
      invalidTasks: 0,
      journalEntries: reading.entries.length,
      ...(reading.problem === undefined ? {} : { journalProblem: reading.problem }),
    };
  }

  /**
   * Removes what writes cut short by a crash left behind (replaceFile's temporary files of the
   * base and the journal); call it before this process writes. Returns how many were removed.
   */
  async removeStaleTemporaries(nowMs: number = Date.now()): Promise<number> {
    return (
      (await removeStaleTemporaries(this.path, STALE_TEMPORARY_MS, nowMs)) +
      (await removeStaleTemporaries(this.journal.path, STALE_TEMPORARY_MS, nowMs))
    );
  }

  private refused(why: string): StateFileError {
    return new StateFileError(`the state file ${this.path} is refused: ${why}`);
  }
}
