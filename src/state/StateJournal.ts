import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { StateFileError } from '../shared/errors.js';
import { distrust, readOwnFile } from './readOwnFile.js';
import { replaceFile } from './replaceFile.js';
import {
  JOURNAL_FORMAT,
  JOURNAL_VERSION,
  type JournalEntry,
  type JournalHeader,
  StateSchemaError,
  validateJournalEntry,
  validateJournalHeader,
} from './stateFileSchema.js';

/**
 * A journal larger than this is refused unread, and never written: the state file compacts long
 * before (StateFile.fitsJournal keeps it no larger than its base, itself at most this size).
 */
export const MAX_JOURNAL_BYTES = 256 * 1024 * 1024;

const { O_APPEND, O_NOFOLLOW, O_NONBLOCK, O_WRONLY } = constants;

/** What `read` found in the journal. */
export interface JournalReading {
  /** Every complete, valid entry before the first that is not, in order. */
  readonly entries: JournalEntry[];
  /** Why some or all of the journal was left out (for one warning); undefined when none was. */
  readonly problem?: string;
  /**
   * The journal continues another base than the one read: the bridge stopped between writing a
   * new base and starting its journal. That base holds everything: the journal is not needed.
   */
  readonly stale?: boolean;
}

/**
 * The state file's append-only journal, beside it: a header line naming the base it continues,
 * then one line of JSON per checkpoint with what changed since the one before (AssemblerChanges),
 * so a checkpoint writes in proportion to the changes rather than to the tasks in flight.
 *
 * Started afresh (an exclusively created file renamed into place, as the base is written) each
 * time a base is written, so a journal is only ever appended to by the bridge that created it, in
 * this run. Each append opens the file for appending without following a symlink, checks it is
 * still that file (same device and inode, the size the bridge wrote, the bridge's own, nobody
 * else can write to it), writes one line and fdatasyncs it before the checkpoint resolves.
 * A crash mid-append leaves a last line without its newline: `read` ignores it (its checkpoint
 * never resolved, so its messages were not acknowledged).
 */
export class StateJournal {
  /** The journal this bridge appends to, as it left it; undefined until a base starts one. */
  private current:
    { readonly bytes: number; readonly dev: number; readonly ino: number } | undefined;

  constructor(readonly path: string) {}

  /** Bytes in the journal this bridge appends to; undefined when it has none to append to. */
  get bytes(): number | undefined {
    return this.current?.bytes;
  }

  /** Appends no more (a new base is being written); `start` begins the next journal. */
  stopAppending(): void {
    this.current = undefined;
  }

  /** Replaces the journal with an empty one continuing base `baseId`. */
  async start(baseId: string): Promise<void> {
    this.current = undefined;
    const header: JournalHeader = {
      format: JOURNAL_FORMAT,
      version: JOURNAL_VERSION,
      base: baseId,
    };
    const data = Buffer.from(`${JSON.stringify(header)}\n`);
    const stat = await replaceFile(this.path, data);
    this.current = { bytes: data.length, dev: stat.dev, ino: stat.ino };
  }

  /**
   * Appends one entry (a line from `encodeEntry`), durably. On any failure the journal is no
   * longer appended to (the next save writes a base): it may end in part of this entry.
   */
  async append(data: Buffer): Promise<void> {
    const current = this.current;
    if (current === undefined) throw this.refused('the bridge has not started it');
    this.current = undefined;
    if (current.bytes + data.length > MAX_JOURNAL_BYTES) {
      throw this.refused(`it would grow past ${MAX_JOURNAL_BYTES} bytes`);
    }
    let handle: FileHandle;
    try {
      handle = await open(this.path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw this.refused(
        code === 'ELOOP' ? 'it is a symbolic link' : `it cannot be opened (${code ?? 'error'})`,
      );
    }
    try {
      const stat = await handle.stat();
      const why =
        distrust(stat, MAX_JOURNAL_BYTES) ??
        (stat.dev !== current.dev || stat.ino !== current.ino
          ? 'it is not the file the bridge created'
          : stat.size !== current.bytes
            ? 'it does not hold what the bridge wrote'
            : undefined);
      if (why !== undefined) throw this.refused(why);
      await handle.writeFile(data);
      // fdatasync(2) also flushes the file size, which reading the entry back needs.
      await handle.datasync();
    } finally {
      await handle.close();
    }
    this.current = { ...current, bytes: current.bytes + data.length };
  }

  /** One entry as a journal line: JSON never holds a raw newline, so lines cannot merge. */
  static encodeEntry(entry: JournalEntry): Buffer {
    return Buffer.from(`${JSON.stringify(entry)}\n`);
  }

  /**
   * The entries continuing base `baseId`. Never throws for what the file holds: a journal that
   * cannot be trusted or read gives no entries, a bad or incomplete entry ends them, and
   * `problem` says why without quoting the file.
   */
  async read(baseId: string): Promise<JournalReading> {
    let bytes: Buffer | undefined;
    try {
      bytes = await readOwnFile(this.path, MAX_JOURNAL_BYTES, (why) => this.refused(why));
    } catch (error) {
      if (error instanceof StateFileError) return { entries: [], problem: error.message };
      throw error;
    }
    if (bytes === undefined) return { entries: [] };
    const text = bytes.toString('utf8');
    let end = text.indexOf('\n');
    if (end < 0)
      return { entries: [], problem: this.refused('its first line is incomplete').message };
    try {
      if (validateJournalHeader(parse(text.slice(0, end))) !== baseId) {
        return { entries: [], stale: true };
      }
    } catch (error) {
      if (error instanceof StateSchemaError) {
        return { entries: [], problem: this.refused(error.message).message };
      }
      throw error;
    }
    const entries: JournalEntry[] = [];
    for (let start = end + 1; start < text.length; start = end + 1) {
      end = text.indexOf('\n', start);
      const number = entries.length + 1;
      if (end < 0) {
        const problem = `the state journal ${this.path} ends in an incomplete entry (entry ${number}), as when the bridge is killed while writing it: it is ignored (its checkpoint never completed, so its messages were not acknowledged)`;
        return { entries, problem };
      }
      try {
        entries.push(validateJournalEntry(parse(text.slice(start, end))));
      } catch (error) {
        if (!(error instanceof StateSchemaError)) throw error;
        const after = countLines(text, end + 1);
        const problem = `entry ${number} of the state journal ${this.path} is refused: ${error.message}; it and the ${after} entries after it are ignored`;
        return { entries, problem };
      }
    }
    return { entries };
  }

  private refused(why: string): StateFileError {
    return new StateFileError(`the state journal ${this.path} is refused: ${why}`);
  }
}

function parse(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    // V8's message quotes the text around the error: never put it in the log.
    throw new StateSchemaError('it is not valid JSON');
  }
}

/** Lines (complete or not) from `start` on. */
function countLines(text: string, start: number): number {
  let count = 0;
  for (let at = start; at < text.length; count++) {
    const end = text.indexOf('\n', at);
    if (end < 0) return count + 1;
    at = end + 1;
  }
  return count;
}
