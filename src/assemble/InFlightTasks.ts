import type { TaskEvent } from '../decode/CeleryEvent.js';
import { applyTaskMessage, type TaskMessageRules } from './applyTaskMessage.js';
import { CompactTaskTable } from './CompactTaskTable.js';
import { compactTaskBytes, recordBytes } from './InFlightBytes.js';
import { stateSince } from './stateSince.js';
import type { StringInterner } from './StringInterner.js';
import { type InFlightState, NO_ATTEMPTS, NO_TIMES, type TaskRecord } from './TaskRecord.js';
import { newTaskRecordView, resetMessageFields } from './TaskRecordView.js';

export interface InFlightTasksOptions {
  /** Tasks kept at most; past it the oldest goes to `evict`. */
  readonly maxTasks: number;
  /** Estimated heap (InFlightBytes.ts) kept at most, checked by `keepWithinBytes`. */
  readonly maxBytes?: number;
  /** Keep pending tasks in the compact table (TaskAssemblerOptions.compactPendingTasks). */
  readonly compact: boolean;
}

/** How a task changed: came in flight (new, a continuation, restored), changed, or left. */
export type TaskChange = 'entered' | 'changed' | 'left';

/** A task kept as an object, with its share of the byte estimate. */
class ObjectEntry {
  constructor(
    readonly record: TaskRecord,
    public bytes: number,
  ) {}
}

/** Visits one in-flight task: its name, state, when that state began (NaN: unknown), its worker. */
export type InFlightSinceVisitor = (
  name: string | undefined,
  state: InFlightState,
  since: number,
  worker: string | undefined,
) => void;

/**
 * Every task in flight, in arrival order (eviction takes the first), and the estimate of the heap
 * they hold. The only place that knows a task can be kept two ways:
 *
 * - A pending task (sent / received, not started) is a slot of the CompactTaskTable, in
 *   typed-array columns, rather than an object, because a backlog of a million waiting tasks is
 *   the bridge's largest memory. Small integers are stored in the Map as they are (Smis), with no
 *   allocation. A `task-sent` / `task-received` changes the slot by the same rules as an object
 *   (applyTaskMessage.ts, on a reused view); the first change that does not fit a pending task
 *   (its start, a second receive, an ETA, the companion's context...) turns the slot into a
 *   TaskRecord in place: `Map.set` on an existing key keeps its position, so the eviction order is
 *   the same as if the task had always been an object.
 * - Every other task is a TaskRecord. Running tasks are bounded by the workers' concurrency.
 *
 * Every change of the table goes through `changed`, so that it can be tracked in one place.
 */
export class InFlightTasks {
  private readonly entries = new Map<string, ObjectEntry | number>();
  private readonly compact: CompactTaskTable;
  private readonly compactEnabled: boolean;
  /** The reused view of a compact task that `peek` returns: no object per call. */
  private readonly peekView = newTaskRecordView();
  private readonly peekReceived = [0];
  /** The reused view a compact task is changed in. */
  private readonly scratch = newTaskRecordView();
  private readonly scratchReceived = [0];
  private totalBytes = 0;
  /** The oldest task, found as FinishedTaskIds finds its oldest id; created at first use. */
  private oldestIds: Iterator<string> | undefined;

  constructor(
    private readonly options: InFlightTasksOptions,
    strings: StringInterner,
    private readonly rules: TaskMessageRules,
    /** Exports the oldest task as evicted: it must leave the table (`delete`). */
    private readonly evict: (record: TaskRecord) => void,
    /** Called for every task that comes in flight, changes, or leaves: the one place to track. */
    private readonly changed: (id: string, how: TaskChange) => void = () => undefined,
  ) {
    this.compact = new CompactTaskTable(strings);
    // With room for no task at all, a new task evicts itself (see `recordFor`): keep the object
    // path for that degenerate case rather than reproduce it.
    this.compactEnabled = options.compact && options.maxTasks >= 1;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Of `size`, the pending tasks kept in the compact table (diagnostics and tests). */
  get compactSize(): number {
    return this.compact.size;
  }

  /** The estimated heap of the tasks in flight (InFlightBytes). */
  get bytes(): number {
    return this.totalBytes;
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  /**
   * The task as it stands, without changing how it is kept. For a compact task this is one
   * reused object, refilled at each call and valid until the next call to the table.
   */
  peek(id: string): Readonly<TaskRecord> | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    if (typeof entry !== 'number') return entry.record;
    this.compact.load(entry, id, this.peekView, this.peekReceived);
    return this.peekView;
  }

  /** The task's record to change (a compact one becomes an object); undefined if not in flight. */
  record(id: string): TaskRecord | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    return typeof entry === 'number' ? this.promote(id, entry) : entry.record;
  }

  /**
   * The task's record to change, a new one if it is not in flight (evicting the oldest past
   * `maxTasks`), its `lastEventAt` moved to `timestamp` if later.
   */
  recordFor(id: string, timestamp: number): TaskRecord {
    let record = this.record(id);
    if (record === undefined) {
      record = { id, receivedTimes: NO_TIMES, lastEventAt: timestamp, attempts: NO_ATTEMPTS };
      this.insert(record);
    }
    if (timestamp > record.lastEventAt) record.lastEventAt = timestamp;
    return record;
  }

  /** Puts a new record in flight (evicting the oldest past `maxTasks`). */
  insert(record: TaskRecord): void {
    this.entries.set(record.id, new ObjectEntry(record, 0));
    this.changed(record.id, 'entered');
    if (this.entries.size > this.options.maxTasks) this.evictOldest();
  }

  /**
   * Applies a `task-sent` / `task-received` if the task is (or, if new, can start as) a compact
   * one, with the effects `recordFor` and applyTaskMessage would have on an object. Undefined
   * when the event needs the task as an object (`recordFor` then gives it, promoted).
   */
  applyPending(event: TaskEvent): 'applied' | 'duplicate' | undefined {
    if (!this.compactEnabled) return undefined;
    if (event.type !== 'task-sent' && event.type !== 'task-received') return undefined;
    const id = event.uuid;
    const entry = this.entries.get(id);
    if (entry !== undefined && typeof entry !== 'number') return undefined;
    const view = this.scratch;
    if (entry === undefined) {
      resetMessageFields(view, id, event.timestamp);
    } else {
      this.compact.load(entry, id, view, this.scratchReceived);
      if (event.timestamp > view.lastEventAt) view.lastEventAt = event.timestamp;
    }
    if (applyTaskMessage(view, event, this.rules) === 'duplicate') return 'duplicate';
    if (entry !== undefined) {
      if (!this.compact.store(entry, view)) {
        this.promote(id, entry);
        return undefined;
      }
      this.changed(id, 'changed');
      return 'applied';
    }
    const slot = this.compact.allocate();
    if (!this.compact.store(slot, view)) {
      this.compact.free(slot);
      return undefined;
    }
    // `recordFor` inserts, then evicts the oldest when over the limit; evicting first ends with
    // the same order, and finishing the oldest cannot see the new task either way (it has no
    // receive yet for a tree's context in the object path, and is absent here).
    if (this.entries.size >= this.options.maxTasks) this.evictOldest();
    this.entries.set(id, slot);
    this.totalBytes += compactTaskBytes(id);
    this.changed(id, 'entered');
    return 'applied';
  }

  /** `record` (from `record` / `recordFor`) was changed; nothing if it left the table since. */
  updated(record: TaskRecord): void {
    const entry = this.entries.get(record.id);
    if (entry === undefined || typeof entry === 'number' || entry.record !== record) return;
    const estimate = recordBytes(record);
    this.totalBytes += estimate - entry.bytes;
    entry.bytes = estimate;
    this.changed(record.id, 'changed');
  }

  delete(id: string): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    this.entries.delete(id);
    if (typeof entry === 'number') {
      this.compact.free(entry);
      this.totalBytes -= compactTaskBytes(id);
    } else {
      this.totalBytes -= entry.bytes;
    }
    this.changed(id, 'left');
  }

  /** Whether the task is in flight and was received by a worker. */
  wasReceived(id: string): boolean {
    const entry = this.entries.get(id);
    if (entry === undefined) return false;
    if (typeof entry === 'number') return this.compact.isReceived(entry);
    return entry.record.receivedAt !== undefined;
  }

  /**
   * Visits every task in flight with its name and state: names and states rather than records,
   * so that a million compact tasks cost no object (not even a boxed timestamp) per visit.
   */
  forEach(visit: (name: string | undefined, state: InFlightState) => void): void {
    // Map#forEach rather than for-of over entries(): no [key, value] array per entry.
    this.entries.forEach((entry) => {
      if (typeof entry === 'number') {
        visit(this.compact.nameOf(entry), this.compact.isReceived(entry) ? 'waiting' : 'sent');
        return;
      }
      visit(entry.record.name, stateOf(entry.record));
    });
  }

  /** Like `forEach`, with when the task's state began (stateSince.ts) and its worker. */
  forEachSince(visit: InFlightSinceVisitor): void {
    this.entries.forEach((entry, id) => {
      if (typeof entry !== 'number') {
        const record = entry.record;
        visit(record.name, stateOf(record), stateSince(record), record.workerHostname);
      } else if (!this.compact.isReceived(entry)) {
        visit(this.compact.nameOf(entry), 'sent', Number.NaN, undefined);
      } else {
        // The reused view: no object per compact task.
        const view = this.peekView;
        this.compact.load(entry, id, view, this.peekReceived);
        visit(view.name, 'waiting', view.receivedAt ?? Number.NaN, view.workerHostname);
      }
    });
  }

  /** The unfinished tasks (no final event) whose last event is older than `cutoff` (epoch s). */
  unfinishedIdsBefore(cutoff: number): string[] {
    const ids: string[] = [];
    this.entries.forEach((entry, id) => {
      if (typeof entry === 'number') {
        if (this.compact.lastEventBefore(entry, cutoff)) ids.push(id);
      } else if (entry.record.final === undefined && entry.record.lastEventAt < cutoff) {
        ids.push(id);
      }
    });
    return ids;
  }

  /** The unfinished tasks and their last event time. */
  unfinishedLastEvents(): Map<string, number> {
    const out = new Map<string, number>();
    this.entries.forEach((entry, id) => {
      if (typeof entry === 'number') out.set(id, this.compact.lastEventAt(entry));
      else if (entry.record.final === undefined) out.set(id, entry.record.lastEventAt);
    });
    return out;
  }

  /** The task's last event time if it is in flight and unfinished. */
  unfinishedLastEventAt(id: string): number | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    if (typeof entry === 'number') return this.compact.lastEventAt(entry);
    return entry.record.final === undefined ? entry.record.lastEventAt : undefined;
  }

  /** Visits the unfinished tasks that have attempts (a pending task has none), to change them. */
  forEachUnfinishedWithAttempts(visit: (record: TaskRecord) => void): void {
    this.entries.forEach((entry) => {
      if (typeof entry === 'number') return;
      const record = entry.record;
      if (record.final === undefined && record.attempts.length > 0) visit(record);
    });
  }

  /** The task as a record of its own (a compact one converted, and left compact). */
  copy(id: string): TaskRecord | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    return typeof entry === 'number' ? this.compact.toRecord(entry, id) : entry.record;
  }

  /** Every task as a record, in arrival order (compact ones converted): for the state file. */
  records(): TaskRecord[] {
    const records: TaskRecord[] = [];
    this.entries.forEach((entry, id) => {
      records.push(typeof entry === 'number' ? this.compact.toRecord(entry, id) : entry.record);
    });
    return records;
  }

  /**
   * Puts a record of a saved state in flight, compact if it fits: a restart with a backlog of
   * pending tasks must not need more memory than before it. No eviction (the caller stops at
   * `maxTasks`); `keepWithinBytes` after the last.
   */
  restore(record: TaskRecord): void {
    const slot = this.compactEnabled ? this.compact.fromRecord(record) : -1;
    if (slot < 0) {
      const estimate = recordBytes(record);
      this.entries.set(record.id, new ObjectEntry(record, estimate));
      this.totalBytes += estimate;
    } else {
      this.entries.set(record.id, slot);
      this.totalBytes += compactTaskBytes(record.id);
    }
    this.changed(record.id, 'entered');
  }

  /** Past `maxBytes`, the oldest tasks go as past `maxTasks` (evicted). */
  keepWithinBytes(): void {
    const max = this.options.maxBytes;
    if (max === undefined) return;
    while (this.totalBytes > max && this.entries.size > 0) {
      const before = this.entries.size;
      this.evictOldest();
      if (this.entries.size === before) return;
    }
  }

  private evictOldest(): void {
    const id = this.oldestId();
    if (id === undefined) return;
    const oldest = this.record(id);
    if (oldest !== undefined) this.evict(oldest);
  }

  private oldestId(): string | undefined {
    let next = this.oldestIds?.next();
    if (next === undefined || next.done === true) {
      // A finished iterator stays finished: start a new one.
      this.oldestIds = this.entries.keys();
      next = this.oldestIds.next();
    }
    return next.done === true ? undefined : next.value;
  }

  /** Turns a compact task into a TaskRecord, in place (same position in `entries`). */
  private promote(id: string, slot: number): TaskRecord {
    const record = this.compact.toRecord(slot, id);
    const estimate = recordBytes(record);
    this.entries.set(id, new ObjectEntry(record, estimate));
    this.compact.free(slot);
    this.totalBytes += estimate - compactTaskBytes(id);
    return record;
  }
}

function stateOf(record: Readonly<TaskRecord>): InFlightState {
  if (record.final !== undefined) return 'finished';
  const last = record.attempts[record.attempts.length - 1];
  if (last !== undefined && last.endedAt === undefined) return 'running';
  return record.receivedAt === undefined ? 'sent' : 'waiting';
}
