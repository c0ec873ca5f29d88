import { constants, type Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';

const { O_NOFOLLOW, O_NONBLOCK, O_RDONLY } = constants;

/**
 * Why the bridge must not trust the file of `stat`, undefined when it may: it is not a regular
 * file, belongs to another user, others can write to it, or is larger than `maxBytes`. The state
 * file and its journal are read (and the journal appended to) only when this says nothing.
 */
export function distrust(stat: Stats, maxBytes: number): string | undefined {
  if (!stat.isFile()) return 'it is not a regular file';
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) {
    return `it belongs to user id ${stat.uid}, not to the bridge's (${uid})`;
  }
  if ((stat.mode & 0o022) !== 0) {
    return 'its group or other users can write to it (chmod go-w, or delete it)';
  }
  if (stat.size > maxBytes) return `it is larger than ${maxBytes} bytes`;
  return undefined;
}

/**
 * The content of a file of the bridge's own (see `distrust`), undefined when there is none.
 * Opened without following a symlink and without blocking (a FIFO at the path would otherwise
 * hang the start), read no further than `maxBytes`. Throws `refused(why)` otherwise, where `why`
 * never quotes the file.
 */
export async function readOwnFile(
  path: string,
  maxBytes: number,
  refused: (why: string) => Error,
): Promise<Buffer | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw refused('it is a symbolic link');
    throw refused(`it cannot be opened (${code ?? 'error'})`);
  }
  try {
    const why = distrust(await handle.stat(), maxBytes);
    if (why !== undefined) throw refused(why);
    const read = await readAtMost(handle, maxBytes);
    if (read === undefined) throw refused(`it is larger than ${maxBytes} bytes`);
    return read;
  } finally {
    await handle.close();
  }
}

/** The file's bytes, undefined past `limit` bytes (a file may grow between stat and read). */
async function readAtMost(handle: FileHandle, limit: number): Promise<Buffer | undefined> {
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
  return Buffer.concat(chunks, total);
}
