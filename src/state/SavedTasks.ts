import type { AssemblerSnapshot } from '../assemble/TaskAssembler.js';
import type { Logger } from '../log/Logger.js';
import { describeError } from '../source/describeError.js';
import type { StateFile } from './StateFile.js';

/** What SavedTasks needs of the assembler. */
export interface SnapshotSource {
  snapshot(): AssemblerSnapshot;
  restore(snapshot: AssemblerSnapshot): number;
}

/**
 * The unfinished tasks kept across restarts (`--state-file`): restored at start, saved every
 * `--state-snapshot-interval-ms` and on a graceful stop. A file that cannot be used is reported
 * and ignored; a save that fails is reported and retried at the next interval.
 */
export class SavedTasks {
  private timer: NodeJS.Timeout | undefined;
  /** The save under way: a periodic save skips its turn, the last save waits for it. */
  private saving: Promise<void> | undefined;

  constructor(
    private readonly file: StateFile,
    private readonly assembler: SnapshotSource,
    private readonly logger: Logger,
    private readonly snapshotIntervalMs: number,
  ) {}

  /** Loads what a previous run saved (call before any event is handled), then saves periodically. */
  async start(): Promise<void> {
    await this.restore();
    if (this.snapshotIntervalMs > 0) {
      this.timer = setInterval(() => {
        this.saving ??= this.save('periodic').finally(() => (this.saving = undefined));
      }, this.snapshotIntervalMs).unref();
    }
  }

  /** The last save: call once nothing more will be handled and held tasks were flushed. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    // A periodic save may be writing: let it finish, then save what the stop left.
    await this.saving;
    await this.save('stop');
  }

  private async restore(): Promise<void> {
    try {
      const loaded = await this.file.load();
      if (loaded === undefined) return;
      const restored = this.assembler.restore(loaded.snapshot);
      this.logger.info('restored unfinished tasks from the state file', {
        path: this.file.path,
        savedAt: loaded.savedAt,
        tasks: restored,
        invalidTasks: loaded.invalidTasks,
      });
    } catch (error) {
      this.logger.warn('cannot use the state file; starting without saved tasks', {
        path: this.file.path,
        error: describeError(error),
      });
    }
  }

  private async save(why: 'stop' | 'periodic'): Promise<void> {
    try {
      const snapshot = this.assembler.snapshot();
      await this.file.save(snapshot);
      const log =
        why === 'stop' ? this.logger.info.bind(this.logger) : this.logger.debug.bind(this.logger);
      log('saved unfinished tasks to the state file', {
        path: this.file.path,
        tasks: snapshot.tasks.length,
      });
    } catch (error) {
      this.logger.warn('cannot save the state file', {
        path: this.file.path,
        error: describeError(error),
      });
    }
  }
}
