import type { StringInterner } from './StringInterner.js';
import { NO_ATTEMPTS, NO_TIMES, type TaskRecord } from './TaskRecord.js';
import type { TaskRecordView } from './TaskRecordView.js';
import {
  type Chunk,
  CHUNK_BITS,
  CHUNK_SLOTS,
  newChunk,
  NO_RETRIES,
  NO_STRING,
  ROOT_NONE,
  ROOT_OTHER,
  ROOT_SELF,
  rootIdOf,
  SLOT_MASK,
  strings_,
} from './compactChunk.js';

/** The properties a compactly stored record may have; any other must be undefined. */
const COMPACT_KEYS: ReadonlySet<string> = new Set<keyof TaskRecord>([
  'id',
  'name',
  'rootId',
  'parentId',
  'queue',
  'exchange',
  'routingKey',
  'retries',
  'workerHostname',
  'workerHostnameAt',
  'messageAt',
  'sentAt',
  'receivedAt',
  'receivedTimes',
  'lastEventAt',
  'attempts',
]);

/** The properties of a compactly stored record that hold strings. */
const STRING_KEYS = [
  'name',
  'rootId',
  'parentId',
  'queue',
  'exchange',
  'routingKey',
  'workerHostname',
] as const;

/**
 * The records of pending tasks (sent and/or received, never started), one slot per task, in
 * columns of typed arrays instead of one object each.
 *
 * Why: at a million waiting tasks (a backlog behind busy workers), a TaskRecord object per task
 * cost ~400 bytes of heap: about 13 properties (most out of object, in a separate property
 * array), each timestamp a boxed 16-byte HeapNumber, a one-element `receivedTimes` array. A
 * pending task holds little that varies: two timestamps, five strings out of a small set (task
 * name, worker, queue, exchange, routing key: interned, stored as 16-bit indexes), a retry
 * count, and its root and parent ids. Here that is 28 bytes per slot (8 + 8 + 5 x 2 + 1 + 1),
 * and two 8-byte pointers to the root and parent id strings in chunks that hold a task with a
 * parent (a root task is its own root and has none: a backlog of them needs neither column).
 *
 * The columns come in chunks of CHUNK_SLOTS slots, added as needed and never copied: growing by
 * doubling one big array per column would leave up to half of it unused, and the copies freed
 * along the way stay in the process's RSS (glibc keeps freed blocks of that size in its heap).
 * Free slots form a list threaded through their `sentAt` column, so it costs no memory.
 *
 * The table knows nothing of events: a slot holds a task record, of the restricted kind a pending
 * task is, exactly (`store` answers false for any other, changing nothing):
 * - at most one `task-sent` time and one `task-received` time; so `receivedTimes` is
 *   `[receivedAt]`, the last event time is the later of the two, and so is `messageAt` (every
 *   sent / received is a message event);
 * - `workerHostnameAt` is `receivedAt` when a worker is known (only `task-received` names one);
 * - no `eta`, `expires`, captured `args` / `kwargs`, attempts, final state or companion context.
 * Events change a slot as they change an object: the in-flight table (InFlightTasks) `load`s the
 * slot into a view, applies the one set of rules (applyTaskMessage.ts) and `store`s the result,
 * or, when it does not fit, turns the slot into a TaskRecord (`toRecord`).
 *
 * Slot numbers are reused. Slots hold no id: the caller keeps the id -> slot map.
 */
export class CompactTaskTable {
  private chunks: Chunk[] = [];
  /** Slots below this were handed out at least once. */
  private used = 0;
  private live = 0;
  /** First free slot below `used`, -1 when none; each free slot's `sentAt` holds the next. */
  private freeHead = -1;

  constructor(private readonly strings: StringInterner) {}

  /** Slots in use. */
  get size(): number {
    return this.live;
  }

  /** Slots the columns have room for (for tests and diagnostics). */
  get slotCapacity(): number {
    return this.chunks.length * CHUNK_SLOTS;
  }

  /** A slot for a new task, in the state of a record before its first event. */
  allocate(): number {
    let slot = this.freeHead;
    if (slot >= 0) {
      this.freeHead = this.chunk(slot).sentAt[slot & SLOT_MASK] ?? -1;
    } else {
      slot = this.used++;
      if (slot >>> CHUNK_BITS === this.chunks.length) this.chunks.push(newChunk());
    }
    const c = this.chunk(slot);
    const i = slot & SLOT_MASK;
    c.sentAt[i] = NaN;
    c.receivedAt[i] = NaN;
    c.name[i] = NO_STRING;
    c.worker[i] = NO_STRING;
    c.queue[i] = NO_STRING;
    c.exchange[i] = NO_STRING;
    c.routingKey[i] = NO_STRING;
    c.retries[i] = NO_RETRIES;
    c.rootKind[i] = ROOT_NONE;
    this.live++;
    return slot;
  }

  /** Gives the slot back. Its strings are dropped now, so the ids can be collected. */
  free(slot: number): void {
    const c = this.chunk(slot);
    const i = slot & SLOT_MASK;
    if (c.rootIds !== undefined) c.rootIds[i] = undefined;
    if (c.parentIds !== undefined) c.parentIds[i] = undefined;
    this.live--;
    if (this.live === 0) {
      // After a backlog drained, give the chunks' memory back rather than keep the peak size;
      // keep one, so that a quiet bridge (tasks come and go one by one) does not allocate a
      // chunk per task. Only when empty: live slots are scattered, and the caller holds their
      // numbers.
      this.chunks.length = Math.min(this.chunks.length, 1);
      this.used = 0;
      this.freeHead = -1;
      // No slot refers to a shared string now: a table filled by a flood can start over.
      this.strings.clearIfFull();
      return;
    }
    c.sentAt[i] = this.freeHead;
    this.freeHead = slot;
  }

  /**
   * Stores `task` in the slot if the slot can hold it exactly, so that `toRecord` gives back an
   * equal record: a pending task (see the class comment), whose strings can be shared. Otherwise
   * changes nothing and answers false: the task needs an object. Only the fields a pending task
   * can have are looked at; the caller vouches that the others are absent (`load` leaves them so,
   * `fromRecord` checks them).
   */
  store(slot: number, task: Readonly<TaskRecord>): boolean {
    const { sentAt, receivedAt, receivedTimes, retries } = task;
    if (!optionalFinite(sentAt) || !optionalFinite(receivedAt)) return false;
    if (sentAt === undefined && receivedAt === undefined) return false;
    if (receivedAt === undefined ? receivedTimes.length > 0 : receivedTimes.length !== 1) {
      return false;
    }
    if (receivedAt !== undefined && receivedTimes[0] !== receivedAt) return false;
    // One send and one receive time are kept: the last event is the later of the two, and so is
    // the latest message (every sent / received is a message event).
    const last =
      sentAt === undefined || (receivedAt !== undefined && receivedAt >= sentAt)
        ? receivedAt
        : sentAt;
    if (task.lastEventAt !== last || task.messageAt !== last) return false;
    // Only `task-received` names the worker, so its time is the receive time.
    const worker = task.workerHostname;
    if (task.workerHostnameAt !== (worker === undefined ? undefined : receivedAt)) return false;
    if (worker !== undefined && receivedAt === undefined) return false;
    if (
      retries !== undefined &&
      !(Number.isInteger(retries) && retries >= 0 && retries < NO_RETRIES)
    ) {
      return false;
    }
    if (task.eta !== undefined || task.expires !== undefined) return false;
    if (task.args !== undefined || task.kwargs !== undefined || task.attempts.length > 0)
      return false;
    const c = this.chunk(slot);
    const i = slot & SLOT_MASK;
    // Indexes of the strings (-1: too many distinct strings to share); unchanged ones are kept.
    const name = this.indexIn(c.name, i, task.name);
    const workerIndex = this.indexIn(c.worker, i, worker);
    const queue = this.indexIn(c.queue, i, task.queue);
    const exchange = this.indexIn(c.exchange, i, task.exchange);
    const routingKey = this.indexIn(c.routingKey, i, task.routingKey);
    if (name < 0 || workerIndex < 0 || queue < 0 || exchange < 0 || routingKey < 0) return false;

    c.sentAt[i] = sentAt ?? NaN;
    c.receivedAt[i] = receivedAt ?? NaN;
    c.name[i] = name;
    c.worker[i] = workerIndex;
    c.queue[i] = queue;
    c.exchange[i] = exchange;
    c.routingKey[i] = routingKey;
    c.retries[i] = retries ?? NO_RETRIES;
    const { id, rootId, parentId } = task;
    if (rootId === undefined) {
      c.rootKind[i] = ROOT_NONE;
    } else {
      c.rootKind[i] = rootId === id ? ROOT_SELF : ROOT_OTHER;
    }
    if (rootId !== undefined && rootId !== id) (c.rootIds ??= strings_(CHUNK_SLOTS))[i] = rootId;
    else if (c.rootIds !== undefined) c.rootIds[i] = undefined;
    if (parentId !== undefined) (c.parentIds ??= strings_(CHUNK_SLOTS))[i] = parentId;
    else if (c.parentIds !== undefined) c.parentIds[i] = undefined;
    return true;
  }

  lastEventAt(slot: number): number {
    const c = this.chunk(slot);
    const i = slot & SLOT_MASK;
    const sent = c.sentAt[i] ?? NaN;
    const received = c.receivedAt[i] ?? NaN;
    // Math.max would give NaN when either is absent.
    if (Number.isNaN(sent)) return received;
    return Number.isNaN(received) || sent > received ? sent : received;
  }

  /**
   * Whether the task was received. (A boolean, for loops over every slot: a timestamp returned
   * from a call that is not inlined is boxed into a new HeapNumber.)
   */
  isReceived(slot: number): boolean {
    return !Number.isNaN(this.chunk(slot).receivedAt[slot & SLOT_MASK] ?? NaN);
  }

  /** Whether its last event is older than `cutoff` (epoch seconds); a boolean, as `isReceived`. */
  lastEventBefore(slot: number, cutoff: number): boolean {
    return this.lastEventAt(slot) < cutoff;
  }

  nameOf(slot: number): string | undefined {
    return this.stringAt(this.chunk(slot).name[slot & SLOT_MASK]);
  }

  /**
   * The task as a new TaskRecord, equal (as JSON, and for `toEqual`) to the record the object
   * path would have built from the same events.
   */
  toRecord(slot: number, id: string): TaskRecord {
    const c = this.chunk(slot);
    const i = slot & SLOT_MASK;
    const record: TaskRecord = {
      id,
      receivedTimes: NO_TIMES,
      lastEventAt: this.lastEventAt(slot),
      attempts: NO_ATTEMPTS,
    };
    const sentAt = numberOrUndefined(c.sentAt[i]);
    const receivedAt = numberOrUndefined(c.receivedAt[i]);
    if (sentAt !== undefined) record.sentAt = sentAt;
    if (receivedAt !== undefined) {
      record.receivedAt = receivedAt;
      record.receivedTimes = [receivedAt];
    }
    const worker = this.stringAt(c.worker[i]);
    if (worker !== undefined) {
      record.workerHostname = worker;
      record.workerHostnameAt = receivedAt;
    }
    const name = this.stringAt(c.name[i]);
    if (name !== undefined) record.name = name;
    const rootId = rootIdOf(c, i, id);
    if (rootId !== undefined) record.rootId = rootId;
    const parentId = c.parentIds?.[i];
    if (parentId !== undefined) record.parentId = parentId;
    const retries = c.retries[i];
    if (retries !== undefined && retries !== NO_RETRIES) record.retries = retries;
    record.messageAt = record.lastEventAt;
    const queue = this.stringAt(c.queue[i]);
    if (queue !== undefined) record.queue = queue;
    const exchange = this.stringAt(c.exchange[i]);
    if (exchange !== undefined) record.exchange = exchange;
    const routingKey = this.stringAt(c.routingKey[i]);
    if (routingKey !== undefined) record.routingKey = routingKey;
    return record;
  }

  /**
   * Fills `view` (every property of a TaskRecord present, so its shape never changes) with the
   * task, like `toRecord` but allocating no object: for a look at the task, or to change it with
   * the rules objects follow and `store` it back. `receivedTimes` is `single` (a reused
   * one-element array) or a shared empty list. (Timestamps stored into a field that may also
   * hold undefined are boxed: a few short-lived HeapNumbers, no record.)
   */
  load(slot: number, id: string, view: TaskRecordView, single: number[]): void {
    const c = this.chunk(slot);
    const i = slot & SLOT_MASK;
    const receivedAt = numberOrUndefined(c.receivedAt[i]);
    const worker = this.stringAt(c.worker[i]);
    const retries = c.retries[i];
    const lastEventAt = this.lastEventAt(slot);
    view.id = id;
    view.name = this.stringAt(c.name[i]);
    view.rootId = rootIdOf(c, i, id);
    view.parentId = c.parentIds?.[i];
    view.queue = this.stringAt(c.queue[i]);
    view.exchange = this.stringAt(c.exchange[i]);
    view.routingKey = this.stringAt(c.routingKey[i]);
    view.eta = undefined;
    view.expires = undefined;
    view.retries = retries === undefined || retries === NO_RETRIES ? undefined : retries;
    view.workerHostname = worker;
    view.workerHostnameAt = worker === undefined ? undefined : receivedAt;
    view.messageAt = lastEventAt;
    view.args = undefined;
    view.kwargs = undefined;
    view.result = undefined;
    view.sentAt = numberOrUndefined(c.sentAt[i]);
    view.receivedAt = receivedAt;
    if (receivedAt === undefined) {
      view.receivedTimes = NO_TIMES;
    } else {
      single[0] = receivedAt;
      view.receivedTimes = single;
    }
    view.lastEventAt = lastEventAt;
    view.attempts = NO_ATTEMPTS;
    view.final = undefined;
    view.upstream = undefined;
    view.groupId = undefined;
    view.groupIndex = undefined;
    view.groupSize = undefined;
    view.chordCallbackId = undefined;
  }

  /**
   * Stores a record compactly if `toRecord` would give it back equal (for a snapshot restored
   * from the state file: see state/StateFile.ts); returns its slot, or -1 when it does not fit.
   * The record comes from a file, so every field's type is checked, not assumed.
   */
  fromRecord(record: Readonly<TaskRecord>): number {
    const r = record as Readonly<Record<string, unknown>>;
    // Anything else (attempts, a final state, the companion's context...) needs an object.
    for (const key of Object.keys(r)) {
      if (!COMPACT_KEYS.has(key) && r[key] !== undefined) return -1;
    }
    if (typeof r.id !== 'string' || !Array.isArray(r.attempts) || !Array.isArray(r.receivedTimes)) {
      return -1;
    }
    if (r.retries !== undefined && typeof r.retries !== 'number') return -1;
    for (const key of STRING_KEYS) {
      if (r[key] !== undefined && typeof r[key] !== 'string') return -1;
    }
    const slot = this.allocate();
    if (this.store(slot, record)) return slot;
    this.free(slot);
    return -1;
  }

  private chunk(slot: number): Chunk {
    const chunk = this.chunks[slot >>> CHUNK_BITS];
    if (chunk === undefined || slot < 0 || slot >= this.used) {
      throw new RangeError(`no compact task slot ${slot}`);
    }
    return chunk;
  }

  private stringAt(index: number | undefined): string | undefined {
    return index === undefined || index === NO_STRING ? undefined : this.strings.at(index);
  }

  /** NO_STRING for undefined; -1 when it cannot be shared (table full, or index too large). */
  private indexOf(value: string | undefined): number {
    if (value === undefined) return NO_STRING;
    const index = this.strings.indexOf(value);
    return index >= NO_STRING ? -1 : index;
  }

  /** As `indexOf`, the index already in `column` when it stands for `value` (no lookup). */
  private indexIn(column: Uint16Array, i: number, value: string | undefined): number {
    const known = column[i] ?? NO_STRING;
    if (known !== NO_STRING && value !== undefined && this.strings.at(known) === value)
      return known;
    return this.indexOf(value);
  }
}

function numberOrUndefined(value: number | undefined): number | undefined {
  return value === undefined || Number.isNaN(value) ? undefined : value;
}

function optionalFinite(value: unknown): value is number | undefined {
  return value === undefined || (typeof value === 'number' && Number.isFinite(value));
}
