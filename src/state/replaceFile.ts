import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { type FileHandle, lstat, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const { O_CREAT, O_EXCL, O_NOFOLLOW, O_RDONLY, O_WRONLY, O_DIRECTORY } = constants;

/**
 * Replaces the file at `path` with `data`, safely in a directory others may write to: a new file
 * under a random name in the same directory, created exclusively without following a symlink
 * (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), fsynced, renamed over the old one (rename replaces a
 * symlink, never writes through it), and the directory fsynced, so a crash leaves the old file
 * or the new one, never half of one. Creates the directory (mode 0700) when missing. Returns the
 * new file's stat, which names it (device and inode) for later checks.
 */
export async function replaceFile(path: string, data: Uint8Array): Promise<Stats> {
  const directory = dirname(path);
  await mkdir(directory, { recursive: true, mode: 0o700 });
  const temporary = join(directory, temporaryName(path));
  const handle = await open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  let stat: Stats;
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
      stat = await handle.stat();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
  await syncDirectory(directory);
  return stat;
}

/** Random bytes in a temporary file's name: hex-encoded, twice as many digits. */
const RANDOM_BYTES = 12;

/** A new temporary file name for `path`: `.<name>.<random hex>.tmp`, beside it. */
function temporaryName(path: string): string {
  return `.${basename(path)}.${randomBytes(RANDOM_BYTES).toString('hex')}.tmp`;
}

/** Whether `name` is one `temporaryName(path)` could have made. */
function isTemporaryName(path: string, name: string): boolean {
  const prefix = `.${basename(path)}.`;
  if (!name.startsWith(prefix) || !name.endsWith('.tmp')) return false;
  const random = name.slice(prefix.length, -'.tmp'.length);
  return random.length === 2 * RANDOM_BYTES && /^[0-9a-f]+$/.test(random);
}

/**
 * Removes the temporary files `replaceFile` left beside `path` when the process was killed
 * between creating one and renaming it (a `kill -9` or a power cut mid-write): without this,
 * every such crash would leave a file of up to the state file's size for good. Only files of this
 * user whose name `replaceFile` could have made and that were last written `olderThanMs` ago or
 * more are removed, so a write under way in another process (a bridge that has not noticed yet
 * that it lost the queue) is left alone. Returns how many were removed; never throws.
 */
export async function removeStaleTemporaries(
  path: string,
  olderThanMs: number,
  nowMs: number = Date.now(),
): Promise<number> {
  const directory = dirname(path);
  let names: string[];
  try {
    names = await readdir(directory);
  } catch {
    return 0; // no directory yet: nothing was written
  }
  const uid = process.getuid?.();
  let removed = 0;
  for (const name of names) {
    if (!isTemporaryName(path, name)) continue;
    const file = join(directory, name);
    try {
      const stat = await lstat(file);
      if (!stat.isFile() || (uid !== undefined && stat.uid !== uid)) continue;
      if (nowMs - stat.mtimeMs < olderThanMs) continue;
      await unlink(file);
      removed++;
    } catch {
      // Gone meanwhile, or not ours to remove: leave it.
    }
  }
  return removed;
}

/** Makes a rename durable: without it a power cut can bring the old file back. */
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
