import { readFile, rename, writeFile } from 'node:fs/promises';
import type { AssemblerSnapshot } from '../assemble/TaskAssembler.js';
import type { TaskRecord } from '../assemble/TaskRecord.js';

const FORMAT = 'celery-otel-bridge/state';
const VERSION = 1;

interface StateFileContent {
  readonly format: typeof FORMAT;
  readonly version: typeof VERSION;
  readonly savedAt: string;
  readonly tasks: TaskRecord[];
  readonly finishedIds: string[];
}

/**
 * The in-flight state kept across a bridge restart: written on a graceful stop (and every
 * `--state-snapshot-interval-ms`, so a `kill -9` loses at most that much), read at start.
 * Written to a temporary file and renamed, so a crash mid-write never leaves half a file. A file
 * that cannot be read or is not ours is reported and ignored: the bridge then starts empty.
 */
export class StateFile {
  constructor(readonly path: string) {}

  async save(snapshot: AssemblerSnapshot): Promise<void> {
    await this.write(this.encode(snapshot));
  }

  /** The file's content for this snapshot, taken now (later changes to the records do not show). */
  encode(snapshot: AssemblerSnapshot): string {
    const content: StateFileContent = {
      format: FORMAT,
      version: VERSION,
      savedAt: new Date().toISOString(),
      tasks: snapshot.tasks,
      finishedIds: snapshot.finishedIds,
    };
    return JSON.stringify(content);
  }

  /** Replaces the file with `text` (from `encode`). */
  async write(text: string): Promise<void> {
    const temporary = `${this.path}.${process.pid}.tmp`;
    await writeFile(temporary, text, { mode: 0o600 });
    await rename(temporary, this.path);
  }

  /** The saved snapshot, undefined when there is none; throws with a reason when unusable. */
  async load(): Promise<
    { snapshot: AssemblerSnapshot; savedAt: string; invalidTasks: number } | undefined
  > {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const parsed = JSON.parse(text) as Partial<StateFileContent> | null;
    if (parsed?.format !== FORMAT || parsed.version !== VERSION) {
      throw new Error(`${this.path} is not a celery-otel-bridge state file of version ${VERSION}`);
    }
    const tasks = Array.isArray(parsed.tasks) ? parsed.tasks.filter(isTaskRecord) : [];
    const finishedIds = Array.isArray(parsed.finishedIds)
      ? parsed.finishedIds.filter((id): id is string => typeof id === 'string')
      : [];
    return {
      snapshot: { tasks, finishedIds },
      savedAt: typeof parsed.savedAt === 'string' ? parsed.savedAt : 'unknown',
      invalidTasks: (Array.isArray(parsed.tasks) ? parsed.tasks.length : 0) - tasks.length,
    };
  }
}

/** Enough of a TaskRecord's shape that the assembler can work on it. */
function isTaskRecord(value: unknown): value is TaskRecord {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  return (
    typeof record['id'] === 'string' &&
    typeof record['lastEventAt'] === 'number' &&
    Array.isArray(record['attempts']) &&
    record['attempts'].every((a) => typeof a === 'object' && a !== null) &&
    Array.isArray(record['receivedTimes'])
  );
}
