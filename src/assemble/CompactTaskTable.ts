import type { TaskEvent } from '../decode/CeleryEvent.js';
import type { StringInterner } from './StringInterner.js';
import { NO_ATTEMPTS, NO_TIMES, type TaskRecord } from './TaskRecord.js';

/** What `tryApply` did with an event. */
export type CompactApplyResult = 'applied' | 'duplicate' | 'promote';

/** A TaskRecord whose fields can be refilled: the reused view of a compact task. */
export type TaskRecordView = { -readonly [K in keyof TaskRecord]: TaskRecord[K] };

/** Column value for "no string" (interned string indexes are below it). */
const NO_STRING = 0xffff;
/** Column value for "no `retries` seen"; higher counts do not fit. */
const NO_RETRIES = 0xff;

/** What `rootId` is: absent, the task's own id (a root task), or another task's id. */
const ROOT_NONE = 0;
const ROOT_SELF = 1;
const ROOT_OTHER = 2;

/** Slots per chunk of columns: 2^14, about 700 KB of columns per chunk. */
const CHUNK_BITS = 14;
const CHUNK_SLOTS = 1 << CHUNK_BITS;
const SLOT_MASK = CHUNK_SLOTS - 1;

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
 * The state of a slot is exactly the state the assembler's object path (TaskAssembler `apply`)
 * would build from the same events, restricted to what a pending task can hold:
 * - at most one distinct `task-sent` time and one distinct `task-received` time (a duplicate
 *   receive is reported as such); so `receivedTimes` is `[receivedAt]`, the last event time is
 *   the later of the two, and so is `messageAt` (every sent / received is a message event);
 * - `workerHostnameAt` is `receivedAt` when a worker is known (only `task-received` names one);
 * - no `eta`, `expires`, captured `args` / `kwargs`, attempts, final state or companion context.
 * Any event that does not fit makes `tryApply` answer `promote`, changing nothing: the caller
 * turns the slot into a TaskRecord (`toRecord`) and applies the event to that.
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

  constructor(
    private readonly strings: StringInterner,
    /** As TaskAssemblerOptions.captureArgs: captured args / kwargs do not fit. */
    private readonly captureArgs: boolean,
  ) {}

  /** An object for `fillView`, with every property of a TaskRecord, all undefined. */
  static newView(): TaskRecordView {
    return {
      id: '',
      name: undefined,
      rootId: undefined,
      parentId: undefined,
      queue: undefined,
      exchange: undefined,
      routingKey: undefined,
      eta: undefined,
      expires: undefined,
      retries: undefined,
      workerHostname: undefined,
      workerHostnameAt: undefined,
      messageAt: undefined,
      args: undefined,
      kwargs: undefined,
      result: undefined,
      sentAt: undefined,
      receivedAt: undefined,
      receivedTimes: NO_TIMES,
      lastEventAt: 0,
      attempts: NO_ATTEMPTS,
      final: undefined,
      upstream: undefined,
      groupId: undefined,
      groupIndex: undefined,
      groupSize: undefined,
      chordCallbackId: undefined,
    };
  }

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
   * Applies a `task-sent` / `task-received` of task `id` as TaskAssembler would, if the result
   * still fits (see the class comment); otherwise changes nothing and answers `promote`. A
   * `task-received` at a time already seen is a `duplicate` and changes nothing, as in the object
   * path.
   */
  tryApply(slot: number, id: string, event: TaskEvent): CompactApplyResult {
    const c = this.chunk(slot);
    const i = slot & SLOT_MASK;
    const t = event.timestamp;
    const sent = event.type === 'task-sent';
    if (!sent && event.type !== 'task-received') return 'promote';
    if (!sent && c.receivedAt[i] === t) return 'duplicate';
    const known = sent ? c.sentAt[i] : c.receivedAt[i];
    if (known === undefined || !Number.isFinite(t) || !(Number.isNaN(known) || known === t)) {
      return 'promote';
    }
    if (event.eta !== undefined || event.expires !== undefined) return 'promote';
    if (this.captureArgs && (event.args !== undefined || event.kwargs !== undefined)) {
      return 'promote';
    }
    let retries = c.retries[i] ?? NO_RETRIES;
    if (event.retries !== undefined) {
      retries = Math.max(retries === NO_RETRIES ? 0 : retries, event.retries);
      if (!Number.isInteger(retries) || retries >= NO_RETRIES) return 'promote';
    }
    // Indexes of the strings the event sets (-1: too many distinct strings to share).
    const name = this.indexOf(event.name);
    const worker = sent ? NO_STRING : this.indexOf(event.hostname);
    const queue = sent && event.queue !== '' ? this.indexOf(event.queue) : NO_STRING;
    const exchange = sent ? this.indexOf(event.exchange) : NO_STRING;
    const routingKey = sent ? this.indexOf(event.routingKey) : NO_STRING;
    if (name < 0 || worker < 0 || queue < 0 || exchange < 0 || routingKey < 0) return 'promote';

    // Fits: what TaskAssembler `apply` / `learn` / `noteWorker` do, on columns.
    if (sent) {
      c.sentAt[i] = t;
      if (queue !== NO_STRING) c.queue[i] = queue;
      if (exchange !== NO_STRING) c.exchange[i] = exchange;
      if (routingKey !== NO_STRING) c.routingKey[i] = routingKey;
    } else {
      c.receivedAt[i] = t;
      if (worker !== NO_STRING) c.worker[i] = worker;
    }
    if (name !== NO_STRING) c.name[i] = name;
    if (event.rootId !== undefined) {
      const self = event.rootId === id;
      c.rootKind[i] = self ? ROOT_SELF : ROOT_OTHER;
      if (self) {
        if (c.rootIds !== undefined) c.rootIds[i] = undefined;
      } else {
        (c.rootIds ??= strings_(CHUNK_SLOTS))[i] = event.rootId;
      }
    }
    if (event.parentId !== undefined && event.parentId !== id && c.parentIds?.[i] === undefined) {
      (c.parentIds ??= strings_(CHUNK_SLOTS))[i] = event.parentId;
    }
    c.retries[i] = retries;
    return 'applied';
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
   * task, like `toRecord` but allocating no object. `receivedTimes` is `single` (a reused
   * one-element array) or a shared empty list. (Timestamps stored into a field that may also
   * hold undefined are boxed: a few short-lived HeapNumbers, no record.)
   */
  fillView(slot: number, id: string, view: TaskRecordView, single: number[]): void {
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
    const { id, sentAt, receivedAt, receivedTimes, retries, rootId, parentId } = r;
    if (typeof id !== 'string') return -1;
    if (!Array.isArray(r.attempts) || r.attempts.length > 0) return -1;
    if (!optionalFinite(sentAt) || !optionalFinite(receivedAt)) return -1;
    if (sentAt === undefined && receivedAt === undefined) return -1;
    if (!Array.isArray(receivedTimes)) return -1;
    if (receivedAt === undefined ? receivedTimes.length > 0 : receivedTimes.length !== 1) return -1;
    if (receivedAt !== undefined && receivedTimes[0] !== receivedAt) return -1;
    const last =
      sentAt === undefined || (receivedAt !== undefined && receivedAt >= sentAt)
        ? receivedAt
        : sentAt;
    if (r.lastEventAt !== last || r.messageAt !== last) return -1;
    // Only `task-received` names the worker, so its time is the receive time.
    if (r.workerHostnameAt !== (r.workerHostname === undefined ? undefined : receivedAt)) return -1;
    if (r.workerHostname !== undefined && receivedAt === undefined) return -1;
    if (
      retries !== undefined &&
      !(typeof retries === 'number' && Number.isInteger(retries) && retries >= 0)
    ) {
      return -1;
    }
    if (typeof retries === 'number' && retries >= NO_RETRIES) return -1;
    if (rootId !== undefined && typeof rootId !== 'string') return -1;
    if (parentId !== undefined && typeof parentId !== 'string') return -1;
    const name = this.indexOfUnknown(r.name);
    const worker = this.indexOfUnknown(r.workerHostname);
    const queue = this.indexOfUnknown(r.queue);
    const exchange = this.indexOfUnknown(r.exchange);
    const routingKey = this.indexOfUnknown(r.routingKey);
    if (name < 0 || worker < 0 || queue < 0 || exchange < 0 || routingKey < 0) return -1;

    const slot = this.allocate();
    const c = this.chunk(slot);
    const i = slot & SLOT_MASK;
    if (sentAt !== undefined) c.sentAt[i] = sentAt;
    if (receivedAt !== undefined) c.receivedAt[i] = receivedAt;
    c.name[i] = name;
    c.worker[i] = worker;
    c.queue[i] = queue;
    c.exchange[i] = exchange;
    c.routingKey[i] = routingKey;
    if (retries !== undefined) c.retries[i] = retries;
    if (rootId !== undefined) {
      c.rootKind[i] = rootId === id ? ROOT_SELF : ROOT_OTHER;
      if (rootId !== id) (c.rootIds ??= strings_(CHUNK_SLOTS))[i] = rootId;
    }
    if (parentId !== undefined) (c.parentIds ??= strings_(CHUNK_SLOTS))[i] = parentId;
    return slot;
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

  private indexOfUnknown(value: unknown): number {
    if (value === undefined) return NO_STRING;
    return typeof value === 'string' ? this.indexOf(value) : -1;
  }
}

/** The columns of CHUNK_SLOTS consecutive slots. */
interface Chunk {
  /** Epoch seconds; NaN when not seen (an event time is never NaN: JSON has no NaN). */
  readonly sentAt: Float64Array;
  readonly receivedAt: Float64Array;
  /** StringInterner indexes, NO_STRING when absent. */
  readonly name: Uint16Array;
  readonly worker: Uint16Array;
  readonly queue: Uint16Array;
  readonly exchange: Uint16Array;
  readonly routingKey: Uint16Array;
  readonly retries: Uint8Array;
  readonly rootKind: Uint8Array;
  /**
   * Only for ROOT_OTHER; a root task (the common case) stores nothing here. Both string columns
   * are created with the chunk's first task that needs them: a backlog of root tasks (no
   * parent) then costs 16 bytes less per task.
   */
  rootIds?: (string | undefined)[];
  parentIds?: (string | undefined)[];
}

function newChunk(): Chunk {
  return {
    sentAt: new Float64Array(CHUNK_SLOTS),
    receivedAt: new Float64Array(CHUNK_SLOTS),
    name: new Uint16Array(CHUNK_SLOTS),
    worker: new Uint16Array(CHUNK_SLOTS),
    queue: new Uint16Array(CHUNK_SLOTS),
    exchange: new Uint16Array(CHUNK_SLOTS),
    routingKey: new Uint16Array(CHUNK_SLOTS),
    retries: new Uint8Array(CHUNK_SLOTS),
    rootKind: new Uint8Array(CHUNK_SLOTS),
  };
}

function rootIdOf(c: Chunk, i: number, id: string): string | undefined {
  const kind = c.rootKind[i];
  // A root task shares its id's string, as TaskAssembler `learn` does.
  if (kind === ROOT_SELF) return id;
  return kind === ROOT_OTHER ? c.rootIds?.[i] : undefined;
}

/**
 * A string column of exactly `length` elements. `new Array(n).fill()` makes a fast (not
 * dictionary-mode) array with no spare capacity: 8 bytes per element, measured on Node 20.
 */
function strings_(length: number): (string | undefined)[] {
  return new Array<string | undefined>(length).fill(undefined);
}

function numberOrUndefined(value: number | undefined): number | undefined {
  return value === undefined || Number.isNaN(value) ? undefined : value;
}

function optionalFinite(value: unknown): value is number | undefined {
  return value === undefined || (typeof value === 'number' && Number.isFinite(value));
}
