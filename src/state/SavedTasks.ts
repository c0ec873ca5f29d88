import type { AssemblerChanges, AssemblerSnapshot } from '../assemble/TaskAssembler.js';
import type { Logger } from '../log/Logger.js';
import { describeError } from '../shared/describeError.js';
import type { EncodedState, StateFile } from './StateFile.js';

/**
 * A save waits as long as the previous one took: saving is at most half of the time, however many
 * tasks are in flight (a journal entry costs little; a base, written when the journal outgrew
 * it, is paid for by a longer wait). A wider spacing slows the RabbitMQ backlog drain, since
 * acknowledgements wait for saves (docs/benchmark.md).
 */
const SAVE_SPACING = 1;

function sleepMs(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms).unref()) : Promise.resolve();
}

/** What SavedTasks needs of the assembler. */
export interface SnapshotSource {
  snapshot(): AssemblerSnapshot;
  /** What changed since the last capture (TaskAssembler): without it, every save is whole. */
  snapshotChanges?(): AssemblerChanges | undefined;
  restore(snapshot: AssemblerSnapshot): number;
}

/**
 * The unfinished tasks kept across restarts (`--state-file`): restored when the bridge becomes
 * the active consumer, saved at every acknowledgement checkpoint (coalesced: one write at a time,
 * the newest state), every `--state-snapshot-interval-ms`, and on a graceful stop.
 *
 * A checkpoint appends what changed since the previous one to the file's journal; the whole
 * state (a new base, the journal started afresh) is written by the first save after the start,
 * on a graceful stop, after a failed write, and when the journal would outgrow its base
 * (StateFile.fitsJournal), so the cost of saving follows what changed, not what is in flight.
 *
 * A save captures the state at one instant and writes it only once every span finished up to
 * that instant was accepted by the collector (`spansSettled`): a state file never says a task
 * was exported while its span could still be lost, so after a `kill -9` the redelivered events of
 * such a task rebuild it instead of being dropped as late. A file that cannot be used is
 * reported and ignored; a save that fails is reported and the next one retried.
 */
export class SavedTasks {
  private timer: NodeJS.Timeout | undefined;
  /** The save under way, and the one queued behind it for callers that came meanwhile. */
  private saving: Promise<boolean> | undefined;
  private queued: Promise<boolean> | undefined;
  /** Restored: this bridge is the one whose state the file holds, so it may write it. */
  private owner = false;
  /** Saves are spaced by their own cost (see `save`). */
  private nextSaveAtMs = 0;
  /**
   * A capture was taken and not written (a failed write or wait): journal entries, which are
   * relative to the previous capture, would miss its changes, so the next save is whole.
   */
  private needsWhole = false;

  constructor(
    private readonly file: StateFile,
    private readonly assembler: SnapshotSource,
    private readonly logger: Logger,
    private readonly snapshotIntervalMs: number,
    /** Called at the capture instant; resolves once the spans finished until then are settled. */
    private readonly spansSettled: () => Promise<void> = () => Promise.resolve(),
  ) {}

  /**
   * Loads what a previous run (or the previous active bridge) saved, before any event is handled,
   * then saves periodically. Later calls do nothing.
   */
  async start(): Promise<void> {
    if (this.owner) return;
    this.owner = true;
    await this.restore();
    if (this.snapshotIntervalMs > 0) {
      this.timer = setInterval(() => void this.checkpoint(), this.snapshotIntervalMs).unref();
    }
  }

  /**
   * Saves the state as it is now; resolves true once written (false if the write failed). Calls
   * while a save runs share one more save after it, so writes never pile up.
   */
  checkpoint(): Promise<boolean> {
    if (!this.owner) return this.spansSettled().then(() => true);
    const wait = this.nextSaveAtMs - Date.now();
    if (this.saving === undefined && wait <= 0) return this.startSave('checkpoint');
    this.queued ??= (this.saving ?? Promise.resolve(true))
      .then(() => sleepMs(this.nextSaveAtMs - Date.now()))
      .then(() => {
        this.queued = undefined;
        return this.checkpoint();
      });
    return this.queued;
  }

  /**
   * The last save: call once nothing more will be handled and held tasks were flushed. Gives up
   * after `timeoutMs` (the collector is failing): the file then keeps the previous state, which
   * the unacknowledged messages complete after a restart.
   */
  async stop(timeoutMs = Number.POSITIVE_INFINITY): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    if (!this.owner) return; // a standby never took over: the file is the active bridge's
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'timeout'>((resolve) => {
      if (Number.isFinite(timeoutMs)) timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const saved = (async () => {
      // Saves never overlap: each journal entry follows the capture written before it.
      while (this.saving !== undefined || this.queued !== undefined) {
        await this.saving;
        await this.queued;
      }
      return this.startSave('stop');
    })();
    const result = await Promise.race([saved, gaveUp]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.logger.warn(
        'the collector did not accept the last spans in time: the state file keeps the previous state, and the events since stay in the broker (RabbitMQ) for the next start',
        { path: this.file.path, waitedMs: timeoutMs },
      );
    }
  }

  private async restore(): Promise<void> {
    const removed = await this.file.removeStaleTemporaries();
    if (removed > 0) {
      this.logger.info('removed temporary state files left by a write cut short (a crash)', {
        path: this.file.path,
        files: removed,
      });
    }
    try {
      const loaded = await this.file.load();
      if (loaded === undefined) return;
      if (loaded.journalProblem !== undefined) {
        this.logger.warn(
          'part of the state journal cannot be used; restoring the state saved before it',
          { path: this.file.path, reason: loaded.journalProblem },
        );
      }
      const restored = this.assembler.restore(loaded.snapshot);
      this.logger.info('restored unfinished tasks from the state file', {
        path: this.file.path,
        savedAt: loaded.savedAt,
        tasks: restored,
        invalidTasks: loaded.invalidTasks,
        journalEntries: loaded.journalEntries,
      });
    } catch (error) {
      this.logger.warn('cannot use the state file; starting without saved tasks', {
        path: this.file.path,
        error: describeError(error),
      });
    }
  }

  /** Starts a save; it is `saving` until it ends, so no other starts meanwhile. */
  private startSave(why: 'stop' | 'checkpoint'): Promise<boolean> {
    const saving = this.save(why).finally(() => {
      if (this.saving === saving) this.saving = undefined;
    });
    this.saving = saving;
    return saving;
  }

  private async save(why: 'stop' | 'checkpoint'): Promise<boolean> {
    try {
      // Captured now, encoded: later events must not change what this save says.
      const startedMs = Date.now();
      const encoded = this.capture(why);
      const encodedMs = Date.now();
      await this.spansSettled();
      const writingMs = Date.now();
      if (encoded !== undefined) await this.file.write(encoded);
      this.needsWhole = false;
      // A base's cost grows with the tasks in flight: the next save waits as long as this one
      // took (SAVE_SPACING) (the wait for the collector not counted), so saving takes a bounded
      // share of the bridge's time.
      const costMs = encodedMs - startedMs + (Date.now() - writingMs);
      this.nextSaveAtMs = Date.now() + SAVE_SPACING * costMs;
      const log =
        why === 'stop' ? this.logger.info.bind(this.logger) : this.logger.debug.bind(this.logger);
      log('saved unfinished tasks to the state file', {
        path: this.file.path,
        tasks: encoded?.tasks ?? 0,
        written: encoded?.kind ?? 'nothing changed',
      });
      return true;
    } catch (error) {
      this.needsWhole = true;
      this.logger.warn('cannot save the state file', {
        path: this.file.path,
        error: describeError(error),
      });
      return false;
    }
  }

  /**
   * This instant's state, encoded: a journal entry of what changed when the file can take one
   * (a checkpoint, the journal this bridge started, not outgrowing its base), else the whole
   * state; undefined when nothing changed since the last capture.
   */
  private capture(why: 'stop' | 'checkpoint'): EncodedState | undefined {
    if (why === 'checkpoint' && !this.needsWhole && this.file.canAppend) {
      const changes = this.assembler.snapshotChanges?.();
      if (changes !== undefined) {
        const entry = this.file.encodeChanges(changes);
        if (entry === undefined || this.file.fitsJournal(entry)) return entry;
      }
    }
    return this.file.encode(this.assembler.snapshot());
  }
}
