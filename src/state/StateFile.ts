import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { AssemblerSnapshot } from '../assemble/TaskAssembler.js';
import { StateFileError } from '../shared/errors.js';
import {
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

const { O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_WRONLY, O_DIRECTORY } = constants;

/**
 * The in-flight state kept across a bridge restart: written on a graceful stop (and every
 * `--state-snapshot-interval-ms`, so a `kill -9` loses at most that much), read at start.
 *
 * Written safely in a directory others may write to: a new file under a random name in the same
 * directory, created exclusively without following a symlink (O_CREAT|O_EXCL|O_NOFOLLOW, mode
 * 0600), fsynced, renamed over the old one (rename replaces a symlink, never writes through it),
 * and the directory fsynced, so a crash leaves the old file or the new one, never half of one.
 *
 * Read only when it is a regular file of the bridge's own user that nobody else can write, no
 * larger than MAX_STATE_FILE_BYTES, opened without following a symlink and without blocking (a
 * FIFO at the path would otherwise hang the start), and every field checked (stateFileSchema):
 * anything else is refused whole with a StateFileError saying why, never quoting the file.
 */
export class StateFile {
  constructor(readonly path: string) {}

  async save(snapshot: AssemblerSnapshot): Promise<void> {
    await this.write(this.encode(snapshot));
  }

  /** The file's content for this snapshot, taken now (later changes to the records do not show). */
  encode(snapshot: AssemblerSnapshot): string {
    const content: StateFileContent = {
      format: STATE_FORMAT,
      version: STATE_VERSION,
      savedAt: new Date().toISOString(),
      tasks: snapshot.tasks,
      finishedIds: snapshot.finishedIds,
    };
    return JSON.stringify(content);
  }

  /** Replaces the file with `text` (from `encode`). */
  async write(text: string): Promise<void> {
    if (Buffer.byteLength(text) > MAX_STATE_FILE_BYTES) {
      throw new StateFileError(
        `the unfinished tasks take more than ${MAX_STATE_FILE_BYTES} bytes, which the next start would refuse: lower --max-in-flight-tasks or --max-captured-length`,
      );
    }
    const directory = dirname(this.path);
    await mkdir(directory, { recursive: true, mode: 0o700 });
    const temporary = join(
      directory,
      `.${basename(this.path)}.${randomBytes(12).toString('hex')}.tmp`,
    );
    const handle = await open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    try {
      try {
        await handle.writeFile(text);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, this.path);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
    await syncDirectory(directory);
  }

  /**
   * The saved snapshot, undefined when there is none; throws StateFileError with the reason when
   * the file is refused. `invalidTasks` is always 0: a file is used whole or not at all.
   */
  async load(): Promise<
    { snapshot: AssemblerSnapshot; savedAt: string; invalidTasks: number } | undefined
  > {
    let handle: FileHandle;
    try {
      handle = await open(this.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      if (code === 'ELOOP') throw this.refused('it is a symbolic link');
      throw this.refused(`it cannot be opened (${code ?? 'error'})`);
    }
    let text: string;
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw this.refused('it is not a regular file');
      const uid = process.getuid?.();
      if (uid !== undefined && stat.uid !== uid) {
        throw this.refused(`it belongs to user id ${stat.uid}, not to the bridge's (${uid})`);
      }
      if ((stat.mode & 0o022) !== 0) {
        throw this.refused('its group or other users can write to it (chmod go-w, or delete it)');
      }
      if (stat.size > MAX_STATE_FILE_BYTES) {
        throw this.refused(`it is larger than ${MAX_STATE_FILE_BYTES} bytes`);
      }
      const read = await readAtMost(handle, MAX_STATE_FILE_BYTES);
      if (read === undefined) throw this.refused(`it is larger than ${MAX_STATE_FILE_BYTES} bytes`);
      text = read;
    } finally {
      await handle.close();
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      // V8's message quotes the text around the error: never put it in the log.
      throw this.refused('it is not valid JSON');
    }
    try {
      const { savedAt, snapshot } = validateStateFile(parsed);
      return { snapshot, savedAt, invalidTasks: 0 };
    } catch (error) {
      if (error instanceof StateSchemaError) throw this.refused(error.message);
      throw error;
    }
  }

  private refused(why: string): StateFileError {
    return new StateFileError(`the state file ${this.path} is refused: ${why}`);
  }
}

/** The file's text, undefined past `limit` bytes (a file may grow between stat and read). */
async function readAtMost(handle: FileHandle, limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(Math.min(1024 * 1024, limit + 1 - total));
    const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
    if (bytesRead === 0) break;
    chunks.push(chunk.subarray(0, bytesRead));
    total += bytesRead;
    if (total > limit) return undefined;
  }
  return Buffer.concat(chunks, total).toString('utf8');
}

/** Makes the rename durable: without it a power cut can bring the old file back. */
async function syncDirectory(directory: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(directory, O_RDONLY | O_DIRECTORY);
    await handle.sync();
  } catch {
    // Some file systems cannot fsync a directory (EINVAL); the file itself is synced.
  } finally {
    await handle?.close();
  }
}
