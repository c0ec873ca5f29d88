import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { type FileHandle, mkdir, open, rename, unlink } from 'node:fs/promises';
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
  const temporary = join(directory, `.${basename(path)}.${randomBytes(12).toString('hex')}.tmp`);
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
