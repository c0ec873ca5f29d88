import type { AssemblerChanges, AssemblerSnapshot } from '../assemble/TaskAssembler.js';
import type { Logger } from '../log/Logger.js';
import { describeError } from '../shared/describeError.js';
import type { EncodedState, StateFile } from './StateFile.js';

/**
 * A save starts no sooner than the previous one cost after it ended: encoding it, plus writing it
 * when it was a whole state (a base, written when the journal outgrew it). So saving is at most
 * half of the time however many tasks are in flight. Appending a journal entry is not counted:
 * its fsync is a wait, not work, and the saves pipelined behind it absorb it. A wider spacing
 * slows the RabbitMQ backlog drain, since acknowledgements wait for saves (docs/benchmark.md).
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
 * Saves captured and not yet written, at most: each waits for the collector (`spansSettled`)
 * while the next is captured, so acknowledgements follow one another instead of each waiting for
 * the one before to be written. Past it, callers share one save queued behind them.
 */
const MAX_PENDING_SAVES = 4;

/**
 * The unfinished tasks kept across restarts (`--state-file`): restored when the bridge becomes
 * the active consumer, saved at every acknowledgement checkpoint, every
 * `--state-snapshot-interval-ms`, and on a graceful stop. Checkpoints overlap: each captures the
 * state at once and waits for its spans, and the captures are written in the order they were
 * taken (at most {@link MAX_PENDING_SAVES} under way; more callers share one queued save).
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
  /** Saves captured, not yet ended, oldest first; and the one queued for callers past them. */
  private readonly pending: Promise<boolean>[] = [];
  private queued: Promise<boolean> | undefined;
  /** The newest save's write (or its skip): the next save writes after it, in capture order. */
  private lastWrite: Promise<unknown> = Promise.resolve();
  /** Writes that failed: an entry captured before one follows a gap and is not written. */
  private writeFailures = 0;
  /**
   * A pending save holds a whole state (a base): no other save starts until it ends, so the
   * captures held in memory are at most one base, or {@link MAX_PENDING_SAVES} journal entries.
   */
  private basePending = false;
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
   * Saves the state as it is now; resolves true once written (false if the write failed). While
   * the spacing wait runs or {@link MAX_PENDING_SAVES} are under way, calls share one more save
   * after them, so writes never pile up.
   */
  checkpoint(): Promise<boolean> {
    if (!this.owner) return this.spansSettled().then(() => true);
    const wait = this.nextSaveAtMs - Date.now();
    const full = this.pending.length >= MAX_PENDING_SAVES || this.basePending;
    if (this.queued === undefined && !full && wait <= 0) return this.startSave('checkpoint');
    if (this.queued === undefined) {
      const oldest = full ? this.pending[0] : undefined;
      this.queued = (oldest ?? Promise.resolve(true))
        .catch(() => false)
        .then(() => sleepMs(this.nextSaveAtMs - Date.now()))
        .then(() => {
          this.queued = undefined;
          return this.checkpoint();
        });
    }
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
      // The last save comes after every other: each journal entry follows the capture before it.
      while (this.pending.length > 0 || this.queued !== undefined) {
        await this.pending[this.pending.length - 1];
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

  /** Captures now and starts a save; it is pending until it ends, and writes after the one before. */
  private startSave(why: 'stop' | 'checkpoint'): Promise<boolean> {
    const after = this.lastWrite;
    let written: () => void = () => undefined;
    this.lastWrite = new Promise<void>((resolve) => (written = resolve));
    const saving = this.save(why, after, written).finally(() => {
      const index = this.pending.indexOf(saving);
      if (index !== -1) void this.pending.splice(index, 1);
    });
    this.pending.push(saving);
    return saving;
  }

  private async save(
    why: 'stop' | 'checkpoint',
    /** The previous save's write: this one writes after it. */
    after: Promise<unknown>,
    /** Lets the next save write. */
    written: () => void,
  ): Promise<boolean> {
    let ownsBase = false;
    try {
      // Captured now, encoded: later events must not change what this save says.
      const failuresBefore = this.writeFailures;
      const startedMs = Date.now();
      const encoded = this.capture(why);
      const encodedMs = Date.now();
      if (encoded?.kind === 'base') {
        this.basePending = true;
        ownsBase = true;
      }
      await this.spansSettled();
      await after;
      // A write failed after this capture: its changes are not in the file, and an entry (or
      // "nothing changed") relative to it would leave them out. The next save is whole.
      if (this.writeFailures !== failuresBefore && encoded?.kind !== 'base') return false;
      const writingMs = Date.now();
      if (encoded !== undefined) await this.file.write(encoded);
      if (this.writeFailures === failuresBefore) this.needsWhole = false;
      // A base's cost grows with the tasks in flight: the next save waits as long as this one
      // cost (SAVE_SPACING; the waits for the collector and for an entry's fsync not counted),
      // so saving takes a bounded share of the bridge's time.
      const costMs =
        encodedMs - startedMs + (encoded?.kind === 'base' ? Date.now() - writingMs : 0);
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
      this.writeFailures++;
      this.logger.warn('cannot save the state file', {
        path: this.file.path,
        error: describeError(error),
      });
      return false;
    } finally {
      if (ownsBase) this.basePending = false;
      written();
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
