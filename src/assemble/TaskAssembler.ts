import type { TaskContextEvent, TaskEvent, UpstreamContext } from '../decode/CeleryEvent.js';
import type { TaskCustomEvent } from '../decode/TaskCustomEvent.js';
import { appendAttempt } from './appendAttempt.js';
import { BoundedLru } from './BoundedLru.js';
import { CompactTaskTable } from './CompactTaskTable.js';
import { addCustomEvent } from './customSpanEvents.js';
import { InFlightBytes } from './InFlightBytes.js';
import {
  InterruptedTasks,
  interruptedCompleteness,
  lostAttemptFor,
  MAX_INTERRUPTED_TASKS,
} from './InterruptedTasks.js';
import { spanIdFor, traceIdFor } from '../shared/deterministicIds.js';
import {
  type Attempt,
  type FinishedTask,
  type InFlightState,
  NO_ATTEMPTS,
  NO_TIMES,
  type TaskRecord,
  type TaskSpanLink,
  type TraceAssignment,
} from './TaskRecord.js';
import { stateSince } from './stateSince.js';
import { StringInterner } from './StringInterner.js';

const always = (): boolean => true;

export interface TaskAssemblerOptions {
  /** In-flight tasks kept at most; the oldest is exported as incomplete when one more arrives. */
  readonly maxInFlightTasks: number;
  /**
   * Estimated heap of the in-flight tasks at most (InFlightBytes.ts); past it the oldest tasks
   * are exported as incomplete (`evicted`), as past `maxInFlightTasks`. Default: no limit.
   */
  readonly maxInFlightBytes?: number;
  /**
   * How long a task whose final event arrived is held for events known to be missing (the
   * `task-sent` from another process, an attempt's start or outcome) before it is exported with
   * what arrived. Complete tasks are exported at once.
   */
  readonly finishGraceMs: number;
  /** Ids of exported tasks remembered, so late or duplicate events make no second span. */
  readonly maxFinishedTaskIds: number;
  /** Keep args, kwargs and result (user data): only when the user opted in. */
  readonly captureArgs: boolean;
  readonly captureResult: boolean;
  /**
   * Task trees (root task ids) whose trace context from the worker companion is remembered, and
   * chords whose header tasks are remembered for the callback's links; least recently used go
   * first. Default 100,000.
   */
  readonly maxTraceContexts?: number;
  /**
   * Keep pending tasks (sent / received, not started) in the compact table rather than as
   * objects: default true. False keeps every task an object, the reference behaviour the tests
   * compare the compact one with.
   */
  readonly compactPendingTasks?: boolean;
}

/** The assembler's state as a plain, JSON-serialisable value. */
export interface AssemblerSnapshot {
  readonly tasks: TaskRecord[];
  readonly finishedIds: string[];
}

/**
 * What changed since the previous capture (`snapshot` or `snapshotChanges`): applied in this order
 * to the previous capture, it gives this one (state/replayJournal.ts).
 */
export interface AssemblerChanges {
  /** Tasks no longer in flight and not remembered as exported (pushed out of that memory). */
  readonly removedIds: string[];
  /** Tasks exported since, remembered as exported: they leave the tasks in flight. */
  readonly finishedIds: string[];
  /** Tasks in flight at both captures whose record changed: each keeps its place. */
  readonly changed: TaskRecord[];
  /**
   * Tasks that came in flight since (new, or the continuation of a task exported as lost), in
   * arrival order, after the tasks already there: replacing any older record of the same id.
   */
  readonly added: TaskRecord[];
}

export interface AssemblerCounters {
  /** An event for a task already exported (late, duplicated, or a redelivery after the end). */
  lateEvent(): void;
  duplicateEvent(): void;
  tasksEvicted(count: number): void;
  /** A task tree's (or chord's) trace context was pushed out of its bounded memory. */
  traceContextsEvicted?(count: number): void;
  /** A root task's trace context arrived after spans of its tree were exported. */
  lateTraceContext?(): void;
  /** An attempt past the attempts kept per task (appendAttempt.ts) was left out. */
  tooManyAttempts?(): void;
  /** Custom task events not kept: the task already holds MAX_CUSTOM_EVENTS_PER_TASK. */
  customEventsDropped?(count: number): void;
}

/** Distinct task names, hostnames and queues shared at most; more are kept per task. */
const MAX_INTERNED_STRINGS = 10_000;

/** A task received more often than this is counted no further (redelivery loops). */
const MAX_RECEIVED_TIMES = 64;

/** Clients that send `task-sent` at all are expected to keep doing so for this long. */
const SENT_EVENTS_MEMORY_MS = 10 * 60_000;

/** Workers seen running the companion are expected to keep doing so for this long. */
const CONTEXT_EVENTS_MEMORY_MS = 10 * 60_000;

const DEFAULT_MAX_TRACE_CONTEXTS = 100_000;

/** Span links of one chord callback at most (the OpenTelemetry SDK's default link limit). */
const MAX_CHORD_LINKS = 128;

/** What the worker companion told about a task tree's root task. */
interface TreeContext {
  upstream?: UpstreamContext;
  groupId?: string;
  /** Fixed when the tree's first span is exported; never changes afterwards. */
  decided?: { readonly traceId: string; readonly upstream?: UpstreamContext };
}

interface ChordHeader {
  readonly rootId: string;
  readonly index?: number;
}

/**
 * Turns the stream of task events into one finished record per task id: the place where Celery
 * events become tasks. (export/taskSpans.ts then makes the spans.)
 *
 * Events from different processes arrive in any order: a client's `task-sent` after the worker's
 * `task-received`, the next attempt's `task-started` before the previous attempt's
 * `task-retried`. So nothing here depends on arrival order: attempts are matched by timestamp and
 * host, and a task is only handed on when its final event is in and nothing is known missing, or
 * when the grace period for the missing parts ran out.
 */
export class TaskAssembler {
  /**
   * Every task in flight, in arrival order (eviction takes the first). A number is the task's
   * slot in `compact`: a pending task (sent / received, not started) is kept there, in typed-array
   * columns, rather than as an object, because a backlog of a million waiting tasks is the
   * bridge's largest memory (issue 5: at most 256 bytes per in-flight task). Small integers are
   * stored in the Map as they are (Smis), with no allocation. The first event that does not fit
   * a pending task (its start, a second receive, an ETA, the companion's context...) turns the
   * slot into a TaskRecord in place: `Map.set` on an existing key keeps its position, so the
   * eviction order is the same as if the task had always been an object. Running tasks are
   * bounded by the workers' concurrency, so they stay objects.
   */
  private readonly inFlight = new Map<string, TaskRecord | number>();
  private readonly compact: CompactTaskTable;
  private readonly compactEnabled: boolean;
  /** The reused view of a compact task that `peek` returns: no object per call. */
  private readonly peekView = CompactTaskTable.newView();
  private readonly peekReceived = [0];
  /** Final event seen, waiting for stragglers: task id -> monotonic deadline (ms). */
  private readonly held = new Map<string, number>();
  private readonly finishedIds = new Set<string>();
  /** Task names, hostnames and queues, shared across tasks (bounded). */
  private readonly strings = new StringInterner(MAX_INTERNED_STRINGS);
  private lastSentEventMs = Number.NEGATIVE_INFINITY;
  private lastContextEventMs = Number.NEGATIVE_INFINITY;
  /** Root task id -> the tree's upstream context / group, and the trace once decided. */
  private readonly trees: BoundedLru<string, TreeContext>;
  /** Chord callback task id -> its header tasks, for the callback's span links. */
  private readonly chords: BoundedLru<string, Map<string, ChordHeader>>;
  /** Finished, otherwise complete tasks waiting for their root's context: root -> task ids. */
  private readonly waitingFor = new Map<string, Set<string>>();
  private readonly waitingRoot = new Map<string, string>();
  /** The estimated heap of the tasks in `inFlight`. */
  private readonly bytes = new InFlightBytes();
  /** Tasks exported as lost or cancelled, whose next run continues them (InterruptedTasks). */
  private readonly interrupted = new InterruptedTasks();
  /**
   * Recently exported FAILURE tasks: a second terminal event of the same run (Celery main's
   * `Reject(requeue=False)` sends `task-failed` then `task-rejected`; a hard time limit sends
   * `task-failed` twice) is a duplicate, not a late event.
   */
  private readonly failedIds = new BoundedLru<string, true>(MAX_INTERRUPTED_TASKS);
  /**
   * The tasks touched since the last capture, for the state file's journal (`snapshotChanges`):
   * id -> whether it came in flight since. Every path that changes `inFlight` or a record in it
   * goes through recordFor, handlePending, continueInterrupted, restore, workerLost or finish,
   * which call `track`. Undefined until the first `snapshot` (without a state file nothing is
   * tracked), and again once it holds more ids than a whole snapshot would (the next capture is
   * then a whole one): bounded by maxInFlightTasks + maxFinishedTaskIds.
   */
  private changes: Map<string, boolean> | undefined;

  constructor(
    private readonly options: TaskAssemblerOptions,
    private readonly emit: (task: FinishedTask) => void,
    private readonly counters: AssemblerCounters,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    const max = options.maxTraceContexts ?? DEFAULT_MAX_TRACE_CONTEXTS;
    const evicted = (): void => counters.traceContextsEvicted?.(1);
    this.trees = new BoundedLru(max, evicted);
    this.chords = new BoundedLru(max, evicted);
    this.compact = new CompactTaskTable(this.strings, options.captureArgs);
    // With room for no task at all, a new task evicts itself (see `recordFor`): keep the object
    // path for that degenerate case rather than reproduce it.
    this.compactEnabled = options.compactPendingTasks !== false && options.maxInFlightTasks >= 1;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Of `inFlightCount`, the pending tasks kept in the compact table (diagnostics and tests). */
  get compactInFlightCount(): number {
    return this.compact.size;
  }

  /**
   * The record of a task still in flight, for metrics that need what came before an event.
   *
   * For a compact (pending) task this is one reused object, refilled at each call and valid
   * until the next call to the assembler: Bridge.onEvent peeks at every task event, and neither
   * allocating a record per call nor promoting the task (a `task-sent` followed by its
   * `task-received` would then make every task an object) is acceptable there.
   */
  peek(taskId: string): Readonly<TaskRecord> | undefined {
    const entry = this.inFlight.get(taskId);
    if (typeof entry !== 'number') return entry;
    this.compact.fillView(entry, taskId, this.peekView, this.peekReceived);
    return this.peekView;
  }

  /**
   * Visits every task in flight (sent, waiting, running, or finished and held) with its name and
   * state. The metrics collect this at every scrape: names and states rather than records, so
   * that a million compact tasks cost no object (not even a boxed timestamp) per visit.
   */
  forEachInFlight(visit: (name: string | undefined, state: InFlightState) => void): void {
    // Map#forEach rather than for-of over entries(): no [key, value] array per entry.
    this.inFlight.forEach((entry) => {
      if (typeof entry === 'number') {
        visit(this.compact.nameOf(entry), this.compact.isReceived(entry) ? 'waiting' : 'sent');
        return;
      }
      visit(entry.name, stateOf(entry));
    });
  }

  /**
   * Like `forEachInFlight`, with when the task's state began (stateSince.ts; NaN when unknown)
   * and the worker holding it: for the oldest-age and prefetched gauges, once per collection.
   */
  forEachInFlightSince(
    visit: (
      name: string | undefined,
      state: InFlightState,
      since: number,
      worker: string | undefined,
    ) => void,
  ): void {
    this.inFlight.forEach((entry, id) => {
      if (typeof entry !== 'number') {
        visit(entry.name, stateOf(entry), stateSince(entry), entry.workerHostname);
      } else if (!this.compact.isReceived(entry)) {
        visit(this.compact.nameOf(entry), 'sent', Number.NaN, undefined);
      } else {
        // The reused view: no object per compact task.
        const view = this.peekView;
        this.compact.fillView(entry, id, view, this.peekReceived);
        visit(view.name, 'waiting', view.receivedAt ?? Number.NaN, view.workerHostname);
      }
    });
  }

  /**
   * What a restarted bridge needs to continue: the unfinished tasks and the ids already exported
   * (so a late event makes no second span). Held tasks are saved as they are and held again on
   * restore. See state/StateFile.ts.
   */
  snapshot(): AssemblerSnapshot {
    this.changes = new Map();
    const tasks: TaskRecord[] = [];
    // Compact tasks become records here: the state file's format is one record per task.
    this.inFlight.forEach((entry, id) => {
      tasks.push(typeof entry === 'number' ? this.compact.toRecord(entry, id) : entry);
    });
    return { tasks, finishedIds: [...this.finishedIds] };
  }

  /**
   * What changed since the last `snapshot` or `snapshotChanges`, in proportion to the changes
   * rather than to the tasks in flight; undefined when that is not known (no snapshot taken yet,
   * or more changes than a snapshot holds): take a `snapshot` then.
   */
  snapshotChanges(): AssemblerChanges | undefined {
    const changes = this.changes;
    if (changes === undefined) return undefined;
    this.changes = new Map();
    const out: AssemblerChanges = { removedIds: [], finishedIds: [], changed: [], added: [] };
    changes.forEach((entered, id) => {
      const entry = this.inFlight.get(id);
      if (entry !== undefined) {
        const record = typeof entry === 'number' ? this.compact.toRecord(entry, id) : entry;
        (entered ? out.added : out.changed).push(record);
      } else if (this.finishedIds.has(id)) out.finishedIds.push(id);
      else out.removedIds.push(id);
    });
    return out;
  }

  /**
   * Notes a change to task `id` for `snapshotChanges`. A task that comes in flight or leaves it
   * moves to the end, so the tasks added and the ids finished come out in the order of
   * `inFlight` and `finishedIds`; any other change keeps its first place (the order of the
   * `changed` records does not matter).
   */
  private track(id: string, how: 'changed' | 'entered' | 'left'): void {
    const changes = this.changes;
    if (changes === undefined) return;
    if (how !== 'changed') changes.delete(id);
    else if (changes.has(id)) return;
    changes.set(id, how === 'entered');
    if (changes.size > this.options.maxInFlightTasks + this.options.maxFinishedTaskIds) {
      this.changes = undefined;
    }
  }

  /**
   * Gives up on unfinished tasks with no event for `maxAgeMs` (by their events' own clock), and
   * exports them as `expired`. Held tasks are left to their grace period. Returns how many.
   */
  expireOlderThan(maxAgeMs: number, nowEpochMs: number): number {
    const cutoff = (nowEpochMs - maxAgeMs) / 1000;
    const stale: string[] = [];
    this.inFlight.forEach((entry, id) => {
      if (typeof entry === 'number') {
        if (this.compact.lastEventBefore(entry, cutoff)) stale.push(id);
      } else if (entry.final === undefined && entry.lastEventAt < cutoff) {
        stale.push(id);
      }
    });
    return this.finishAll(stale, 'expired');
  }

  /**
   * A worker went offline or stopped heartbeating: the tasks it was running will send no more
   * events from it. Their open attempt ends as LOST and they are exported as `lost`. Tasks it had
   * only received stay: their unacknowledged messages go back to the queue and run elsewhere.
   */
  workerLost(hostname: string, atEpochSeconds: number): number {
    const lost: TaskRecord[] = [];
    for (const record of this.inFlight.values()) {
      // A compact task was never started: nothing of it runs on the worker.
      if (typeof record === 'number' || record.final !== undefined) continue;
      const open = record.attempts.find(
        (a) => a.endedAt === undefined && a.startedAt !== undefined,
      );
      if (open?.hostname !== hostname) continue;
      open.endedAt = Math.max(atEpochSeconds, open.startedAt ?? atEpochSeconds);
      open.outcome = 'LOST';
      lost.push(record);
      this.track(record.id, 'changed');
    }
    // Held for the finish grace period: its real outcome, `task-cancelled` or a redelivery may
    // still come (InterruptedTasks); then exported as `lost` (finishHeld).
    for (const record of lost) this.hold(record);
    return lost.length;
  }

  /** The unfinished tasks and their last event time, to check later whether they moved on. */
  unfinishedLastEvents(): Map<string, number> {
    const out = new Map<string, number>();
    this.inFlight.forEach((entry, id) => {
      if (typeof entry === 'number') out.set(id, this.compact.lastEventAt(entry));
      else if (entry.final === undefined) out.set(id, entry.lastEventAt);
    });
    return out;
  }

  /**
   * After a broker outage: the tasks of `before` that had no event since are exported as
   * `outage` (their events were lost while the connection was down). Returns how many.
   */
  giveUpUnchanged(before: ReadonlyMap<string, number>): number {
    const stale: string[] = [];
    for (const [id, lastEventAt] of before) {
      const entry = this.inFlight.get(id);
      if (entry === undefined) continue;
      const unfinished = typeof entry === 'number' || entry.final === undefined;
      const last = typeof entry === 'number' ? this.compact.lastEventAt(entry) : entry.lastEventAt;
      if (unfinished && last === lastEventAt) stale.push(id);
    }
    return this.finishAll(stale, 'outage');
  }

  /** Exports the unfinished tasks `ids` as given up on; returns how many. */
  private finishAll(ids: readonly string[], completeness: FinishedTask['completeness']): number {
    let count = 0;
    for (const id of ids) {
      // Giving up on one task never finishes another unfinished one (only final tasks waiting
      // for their root are released), so each id is still in flight here.
      const record = this.recordIfInFlight(id);
      if (record === undefined) continue;
      this.finish(record, completeness);
      count++;
    }
    return count;
  }

  /** Loads a snapshot taken by a previous run, before any event is handled; returns tasks loaded. */
  restore(snapshot: AssemblerSnapshot): number {
    // The newest ids when there are more (a journal replayed on its base can hold more).
    const ids = snapshot.finishedIds;
    for (let i = Math.max(0, ids.length - this.options.maxFinishedTaskIds); i < ids.length; i++) {
      this.finishedIds.add(ids[i] as string);
    }
    let loaded = 0;
    for (const record of snapshot.tasks) {
      if (this.inFlight.size >= this.options.maxInFlightTasks) break;
      if (this.inFlight.has(record.id) || this.finishedIds.has(record.id)) continue;
      // A restart with a backlog of pending tasks must not need more memory than before it.
      const slot = this.compactEnabled ? this.compact.fromRecord(record) : -1;
      this.inFlight.set(record.id, slot < 0 ? record : slot);
      this.track(record.id, 'entered');
      if (slot < 0) this.bytes.update(record);
      else this.bytes.addCompact(record.id);
      loaded++;
    }
    // Tasks whose final event had arrived were held when the state was saved (a checkpoint does
    // not flush them): hold them again, or export them if nothing is missing.
    for (const record of snapshot.tasks) {
      if (record.final !== undefined && this.inFlight.get(record.id) === record)
        this.settle(record);
    }
    this.keepWithinBytes();
    return loaded;
  }

  handle(event: TaskEvent): void {
    if (this.finishedIds.has(event.uuid) && !this.continueInterrupted(event)) {
      if (this.isTerminalEcho(event)) this.counters.duplicateEvent();
      else this.counters.lateEvent();
      return;
    }
    if (!this.handlePending(event)) {
      const record = this.recordFor(event.uuid, event.timestamp);
      this.apply(record, event);
      if (record.final !== undefined) this.settle(record);
      if (this.inFlight.get(record.id) === record) this.bytes.update(record);
    }
    this.keepWithinBytes();
    // A root's context event comes before its task-received (same batch, same order): once that
    // is in, tasks of its tree waiting for the context know there is none.
    if (event.type === 'task-received') this.release(event.uuid);
  }

  /**
   * A custom task event (`self.send_event('task-progress', ...)`): a span event on the task's
   * span. It may come before the task's own events (it is published at once, they are buffered).
   */
  handleCustom(event: TaskCustomEvent): void {
    if (this.finishedIds.has(event.uuid)) {
      this.counters.lateEvent();
      return;
    }
    const record = this.recordFor(event.uuid, event.timestamp);
    if (!addCustomEvent(record, event)) this.counters.customEventsDropped?.(1);
    // Custom events make the record bigger: counted in the byte budget as every other event is.
    if (this.inFlight.get(record.id) === record) this.bytes.update(record);
    this.keepWithinBytes();
  }

  /** Puts the continuation of a task exported as lost or cancelled in flight (InterruptedTasks). */
  private continueInterrupted(event: TaskEvent): boolean {
    const record = this.interrupted.continuation(event);
    if (record === undefined) return false;
    this.finishedIds.delete(record.id);
    this.inFlight.set(record.id, record);
    this.track(record.id, 'entered');
    if (this.inFlight.size > this.options.maxInFlightTasks) this.evictOldest();
    return true;
  }

  /**
   * A second terminal event of an exported FAILURE (see `failedIds`): a duplicate, and for the
   * metrics not a second failure.
   */
  isTerminalEcho(event: TaskEvent): boolean {
    const terminal =
      event.type === 'task-failed' || (event.type === 'task-rejected' && event.requeue !== true);
    return terminal && this.failedIds.has(event.uuid);
  }

  /** Holds an interrupted task for the grace period (finishHeld then exports it). */
  private hold(record: TaskRecord): void {
    if (!this.held.has(record.id)) {
      this.held.set(record.id, this.nowMs() + this.options.finishGraceMs);
    }
  }

  /**
   * The worker companion's `task-otel-context`: the root task's upstream span and group decide
   * the trace of its whole tree; a chord header task names its chord's callback.
   */
  handleContext(event: TaskContextEvent): void {
    this.lastContextEventMs = this.nowMs();
    const root = event.rootId ?? event.uuid;
    if (root === event.uuid && (event.upstream !== undefined || event.group !== undefined)) {
      this.noteTree(root, event.upstream, event.group);
    }
    if (event.chord !== undefined) this.noteChordHeader(event.chord, event.uuid, root, event);
    if (this.finishedIds.has(event.uuid)) {
      this.counters.lateEvent();
      return;
    }
    const record = this.recordFor(event.uuid, event.timestamp);
    if (event.rootId !== undefined) record.rootId ??= event.rootId;
    if (event.parentId !== undefined && event.parentId !== record.id) {
      record.parentId ??= event.parentId;
    }
    record.upstream ??= event.upstream;
    record.groupId ??= event.group;
    record.groupIndex ??= event.groupIndex;
    record.groupSize ??= event.groupSize;
    record.chordCallbackId ??= event.chord;
    if (record.final !== undefined) this.settle(record);
    this.release(event.uuid);
    if (this.inFlight.get(record.id) === record) this.bytes.update(record);
    this.keepWithinBytes();
  }

  /**
   * Applies the event in the compact table if the task is (or, if new, can start as) a pending
   * task there, with the same effects as `recordFor` + `apply` would have. Returns false, with
   * the task now an object if it was compact, when the event needs the object path.
   */
  private handlePending(event: TaskEvent): boolean {
    if (!this.compactEnabled) return false;
    const id = event.uuid;
    const entry = this.inFlight.get(id);
    if (entry === undefined) {
      const slot = this.compact.allocate();
      if (this.compact.tryApply(slot, id, event) === 'promote') {
        this.compact.free(slot);
        return false;
      }
      // `recordFor` inserts, then evicts the oldest when over the limit; evicting first ends with
      // the same order, and finishing the oldest cannot see the new task either way (it has no
      // receive yet for `treeContextKnown` in the object path, and is absent here).
      if (this.inFlight.size >= this.options.maxInFlightTasks) this.evictOldest();
      this.inFlight.set(id, slot);
      this.track(id, 'entered');
      this.bytes.addCompact(id);
    } else if (typeof entry !== 'number') {
      return false;
    } else {
      this.track(id, 'changed');
      const result = this.compact.tryApply(entry, id, event);
      if (result === 'promote') {
        this.promote(id, entry);
        return false;
      }
      if (result === 'duplicate') {
        this.counters.duplicateEvent();
        return true;
      }
    }
    if (event.type === 'task-sent') this.lastSentEventMs = this.nowMs();
    return true;
  }

  /** Turns a compact task into a TaskRecord, in place (same position in `inFlight`). */
  private promote(id: string, slot: number): TaskRecord {
    const record = this.compact.toRecord(slot, id);
    this.inFlight.set(id, record);
    this.compact.free(slot);
    this.bytes.promoted(record);
    return record;
  }

  /** The task's record, a compact one promoted; undefined when not in flight. */
  private recordIfInFlight(id: string): TaskRecord | undefined {
    const entry = this.inFlight.get(id);
    return typeof entry === 'number' ? this.promote(id, entry) : entry;
  }

  private recordFor(id: string, timestamp: number): TaskRecord {
    let record = this.recordIfInFlight(id);
    if (record === undefined) {
      record = { id, receivedTimes: NO_TIMES, lastEventAt: timestamp, attempts: NO_ATTEMPTS };
      this.inFlight.set(id, record);
      this.track(id, 'entered');
      if (this.inFlight.size > this.options.maxInFlightTasks) this.evictOldest();
    } else {
      this.track(id, 'changed');
    }
    if (timestamp > record.lastEventAt) record.lastEventAt = timestamp;
    return record;
  }

  /**
   * Exports held tasks whose grace period is over. Call it on a timer. `mayExport`, asked before
   * each task, holds the rest back while the exporter is behind (they stay held, in order).
   */
  tick(mayExport: () => boolean = always): void {
    const now = this.nowMs();
    // Deadlines are set as now + a constant, so the map is in deadline order.
    for (const [id, deadline] of this.held) {
      if (deadline > now || !mayExport()) break;
      this.held.delete(id);
      this.finishHeld(id);
    }
  }

  /**
   * On shutdown: hand on every task whose final event arrived, complete or not, while `mayExport`
   * allows; returns true once none is held.
   */
  flushHeld(mayExport: () => boolean = always): boolean {
    for (const id of this.held.keys()) {
      if (!mayExport()) return false;
      this.held.delete(id);
      this.finishHeld(id);
    }
    return true;
  }

  /** Exports a held task whose wait is over, with what arrived. */
  private finishHeld(id: string): void {
    const record = this.recordIfInFlight(id);
    if (record === undefined) return;
    if (record.final === undefined) {
      // Held as interrupted (lost / cancelled); if a redelivery came meanwhile, it stays.
      const interrupted = interruptedCompleteness(record);
      if (interrupted !== undefined) this.finish(record, interrupted);
      return;
    }
    // Only waiting for its root's context, which never came: complete in itself.
    const onlyRoot = this.waitingRoot.has(id) && this.isComplete(record);
    this.finish(record, onlyRoot ? 'complete' : 'held_too_long');
  }

  private apply(record: TaskRecord, event: TaskEvent): void {
    switch (event.type) {
      case 'task-sent':
        this.lastSentEventMs = this.nowMs();
        record.sentAt = min(record.sentAt, event.timestamp);
        this.learn(record, event);
        if (event.queue !== undefined && event.queue !== '')
          record.queue = this.strings.intern(event.queue);
        if (event.exchange !== undefined) record.exchange = event.exchange;
        if (event.routingKey !== undefined) record.routingKey = event.routingKey;
        return;
      case 'task-received':
        if (record.receivedTimes.includes(event.timestamp)) {
          this.counters.duplicateEvent();
          return;
        }
        // A new array of exactly the right size: `push` would reserve room for 16 numbers in
        // every in-flight task, for a list that almost always holds one.
        if (record.receivedTimes.length < MAX_RECEIVED_TIMES) {
          record.receivedTimes = [...record.receivedTimes, event.timestamp];
        }
        record.receivedAt = min(record.receivedAt, event.timestamp);
        this.noteWorker(record, event);
        this.learn(record, event);
        return;
      case 'task-started':
        this.startAttempt(record, event);
        return;
      case 'task-succeeded':
        if (this.options.captureResult && event.result !== undefined) record.result = event.result;
        this.endAttempt(record, event, 'SUCCESS');
        record.final ??= { state: 'SUCCESS', at: event.timestamp };
        return;
      case 'task-failed':
        // A second task-failed of the same run (a hard time limit: TimeLimitExceeded from
        // celery/worker/request.py `on_timeout`, then WorkerLostError from `on_failure`).
        if (
          record.final?.state === 'FAILURE' &&
          !record.attempts.some((a) => a.endedAt === undefined)
        ) {
          this.counters.duplicateEvent();
          return;
        }
        this.endAttempt(record, event, 'FAILURE');
        record.final ??= {
          state: 'FAILURE',
          at: event.timestamp,
          exception: event.exception,
          traceback: event.traceback,
        };
        return;
      case 'task-retried':
        this.endAttempt(record, event, 'RETRY');
        return;
      case 'task-revoked':
        // `terminated` revokes kill a running attempt; others drop a task that never ran
        // (celery/worker/request.py `Request.revoked`, `terminate`).
        this.noteWorker(record, event);
        if (record.attempts.some((a) => a.endedAt === undefined)) {
          this.endAttempt(record, event, 'REVOKED');
        }
        record.final ??= {
          state: 'REVOKED',
          at: event.timestamp,
          terminated: event.terminated,
          signum: event.signum,
          expired: event.expired,
        };
        return;
      case 'task-rejected':
        this.noteWorker(record, event);
        if (record.attempts.some((a) => a.endedAt === undefined)) {
          this.endAttempt(record, event, 'REJECTED');
        }
        // A rejected message with requeue=True goes back to the queue and runs again.
        if (event.requeue !== true) record.final ??= { state: 'REJECTED', at: event.timestamp };
        return;
      case 'task-cancelled':
        // The worker killed the run; the message may run again (InterruptedTasks).
        this.endAttempt(record, event, 'CANCELLED');
        if (record.final === undefined) this.hold(record);
        return;
    }
  }

  /**
   * Fields of `task-sent` / `task-received`, which describe the task message. Name and root are
   * the same on every message of a task; per-message fields (eta, args) are taken from the latest
   * message by event time, so the result does not depend on arrival order.
   */
  private learn(record: TaskRecord, event: TaskEvent): void {
    if (event.name !== undefined) record.name = this.strings.intern(event.name);
    // A root task is its own root: share the id's string rather than keep a second copy.
    if (event.rootId !== undefined) {
      record.rootId = event.rootId === record.id ? record.id : event.rootId;
    }
    // A retry re-sends the message naming the task as its own parent (celery/app/task.py
    // `Task.retry` -> `signature_from_request`); keep the real parent, never make a cycle.
    if (
      event.parentId !== undefined &&
      event.parentId !== record.id &&
      record.parentId === undefined
    ) {
      record.parentId = event.parentId;
    }
    if (event.retries !== undefined) record.retries = Math.max(record.retries ?? 0, event.retries);
    if (record.messageAt !== undefined && event.timestamp < record.messageAt) return;
    record.messageAt = event.timestamp;
    record.eta = event.eta;
    record.expires = event.expires;
    if (this.options.captureArgs) {
      if (event.args !== undefined) record.args = event.args;
      if (event.kwargs !== undefined) record.kwargs = event.kwargs;
    }
  }

  private noteWorker(record: TaskRecord, event: TaskEvent): void {
    if (event.hostname === undefined) return;
    if (record.workerHostnameAt !== undefined && event.timestamp < record.workerHostnameAt) return;
    record.workerHostname = this.strings.intern(event.hostname);
    record.workerHostnameAt = event.timestamp;
  }

  private startAttempt(record: TaskRecord, event: TaskEvent): void {
    const at = event.timestamp;
    const host = event.hostname;
    if (record.attempts.some((a) => a.startedAt === at && a.hostname === host)) {
      this.counters.duplicateEvent();
      return;
    }
    // The outcome may have arrived first: attach the start to the earliest outcome after it.
    let best: Attempt | undefined;
    for (const attempt of record.attempts) {
      if (attempt.startedAt !== undefined || attempt.endedAt === undefined) continue;
      if (attempt.endedAt < at || !sameHost(attempt.hostname, host)) continue;
      if (best?.endedAt === undefined || attempt.endedAt < best.endedAt) best = attempt;
    }
    if (best !== undefined) {
      best.startedAt = at;
      best.hostname ??= host;
    } else if (!appendAttempt(record, { startedAt: at, hostname: this.strings.intern(host) })) {
      this.counters.tooManyAttempts?.();
      return;
    }
    this.noteWorker(record, event);
  }

  private endAttempt(record: TaskRecord, event: TaskEvent, outcome: Attempt['outcome']): void {
    const at = event.timestamp;
    const host = event.hostname;
    if (record.attempts.some((a) => a.endedAt === at && a.outcome === outcome)) {
      this.counters.duplicateEvent();
      return;
    }
    // The attempt this ends is the latest open one that started before it on the same worker.
    let best: Attempt | undefined;
    for (const attempt of record.attempts) {
      if (attempt.endedAt !== undefined || attempt.startedAt === undefined) continue;
      if (attempt.startedAt > at || !sameHost(attempt.hostname, host)) continue;
      if (best?.startedAt === undefined || attempt.startedAt > best.startedAt) best = attempt;
    }
    // The bridge's own LOST (its worker went offline) gives way to the real outcome.
    const lost = best === undefined ? lostAttemptFor(record, at, host) : undefined;
    const target = best ?? lost ?? { hostname: this.strings.intern(host) };
    if (best === undefined && lost === undefined && !appendAttempt(record, target)) {
      this.counters.tooManyAttempts?.();
      return;
    }
    target.endedAt = at;
    target.outcome = outcome;
    target.exception = event.exception;
    target.traceback = event.traceback;
    target.runtime = event.runtime;
    this.noteWorker(record, event);
  }

  private settle(record: TaskRecord): void {
    const complete = this.isComplete(record);
    if (complete && this.treeContextKnown(record)) {
      this.held.delete(record.id);
      this.finish(record, 'complete');
      return;
    }
    if (!this.held.has(record.id)) {
      this.held.set(record.id, this.nowMs() + this.options.finishGraceMs);
    }
    if (complete) this.waitForRoot(record);
  }

  /**
   * Whether the trace of the task's tree can be decided now. Only while workers run the
   * companion: then a root's context, if it has one, arrives right before its `task-received`.
   * So the context is known once it arrived, once the root's `task-received` was seen without
   * one, or once the root or another task of the tree was exported (the trace is then fixed).
   */
  private treeContextKnown(record: TaskRecord): boolean {
    if (this.nowMs() - this.lastContextEventMs >= CONTEXT_EVENTS_MEMORY_MS) return true;
    const root = record.rootId ?? record.id;
    if (this.trees.has(root) || this.finishedIds.has(root)) return true;
    const rootEntry = root === record.id ? record : this.inFlight.get(root);
    // A pending root stays compact: only whether it was received matters.
    if (typeof rootEntry === 'number') return this.compact.isReceived(rootEntry);
    return rootEntry?.receivedAt !== undefined;
  }

  private waitForRoot(record: TaskRecord): void {
    const root = record.rootId ?? record.id;
    const before = this.waitingRoot.get(record.id);
    if (before === root) return;
    if (before !== undefined) this.stopWaiting(record.id);
    this.waitingRoot.set(record.id, root);
    const ids = this.waitingFor.get(root) ?? new Set<string>();
    ids.add(record.id);
    this.waitingFor.set(root, ids);
  }

  private stopWaiting(id: string): void {
    const root = this.waitingRoot.get(id);
    if (root === undefined) return;
    this.waitingRoot.delete(id);
    const ids = this.waitingFor.get(root);
    ids?.delete(id);
    if (ids?.size === 0) this.waitingFor.delete(root);
  }

  /** Exports the tasks that waited only for this root's context, if it is known now. */
  private release(root: string): void {
    const ids = this.waitingFor.get(root);
    if (ids === undefined) return;
    for (const id of [...ids]) {
      const record = this.recordIfInFlight(id);
      if (record === undefined || !this.isComplete(record) || !this.treeContextKnown(record)) {
        continue;
      }
      this.held.delete(id);
      this.finish(record, 'complete');
    }
  }

  private noteTree(root: string, upstream: UpstreamContext | undefined, group?: string): void {
    const tree = this.trees.get(root);
    if (tree === undefined) {
      this.trees.set(root, { upstream, groupId: group });
      return;
    }
    const news =
      (upstream !== undefined && tree.upstream === undefined) ||
      (group !== undefined && tree.groupId === undefined);
    if (news && tree.decided !== undefined) this.counters.lateTraceContext?.();
    tree.upstream ??= upstream;
    tree.groupId ??= group;
  }

  private noteChordHeader(
    callbackId: string,
    headerId: string,
    rootId: string,
    event: TaskContextEvent,
  ): void {
    let headers = this.chords.get(callbackId);
    if (headers === undefined) {
      headers = new Map();
      this.chords.set(callbackId, headers);
    }
    if (headers.size < MAX_CHORD_LINKS || headers.has(headerId)) {
      headers.set(headerId, { rootId, index: event.groupIndex });
    }
  }

  /**
   * The trace of the task's tree, fixed by the first of its tasks to be exported: the root
   * message's upstream trace, else its group's trace (trace id from the group id), else the
   * default (trace id from the root task id). Undefined while the companion is not in use, so
   * nothing changes and nothing is remembered without it.
   */
  private assignTrace(record: TaskRecord): TraceAssignment | undefined {
    const root = record.rootId ?? record.id;
    const links = this.chordLinks(record.id);
    let tree = this.trees.get(root);
    if (tree === undefined) {
      const active = this.nowMs() - this.lastContextEventMs < CONTEXT_EVENTS_MEMORY_MS;
      if (!active && links.length === 0) return undefined;
      tree = {};
      this.trees.set(root, tree);
    }
    tree.decided ??= decide(tree, root);
    const isRoot = root === record.id && record.parentId === undefined;
    const upstream = tree.decided.upstream;
    if (isRoot && record.upstream !== undefined && upstream === undefined) {
      // Its context came after the tree's trace was fixed: keep the tree whole, link upstream.
      links.push({
        traceId: record.upstream.traceId,
        spanId: record.upstream.spanId,
        traceState: record.upstream.traceState,
        attributes: { 'celery.link.type': 'upstream' },
      });
    }
    return {
      traceId: tree.decided.traceId,
      remoteParent: isRoot ? upstream : undefined,
      upstream,
      links,
    };
  }

  /** For a chord callback: one link per header task, in group order; forgets the chord. */
  private chordLinks(taskId: string): TaskSpanLink[] {
    const headers = this.chords.peek(taskId);
    if (headers === undefined) return [];
    this.chords.delete(taskId);
    return [...headers]
      .sort(([, a], [, b]) => (a.index ?? Infinity) - (b.index ?? Infinity))
      .map(([headerId, header]) => {
        // The link fixes the header's tree to the trace it points into, like an export does.
        let tree = this.trees.peek(header.rootId);
        if (tree === undefined) {
          tree = {};
          this.trees.set(header.rootId, tree);
        }
        tree.decided ??= decide(tree, header.rootId);
        const traceId = tree.decided.traceId;
        const attributes: Record<string, string | number> = {
          'celery.link.type': 'chord_header',
          'celery.task.id': headerId,
        };
        if (header.index !== undefined) attributes['celery.group.index'] = header.index;
        return { traceId, spanId: spanIdFor(headerId), attributes };
      });
  }

  private isComplete(record: TaskRecord): boolean {
    if (record.name === undefined) return false;
    // Clients that send `task-sent` are expected to for this task too (task_send_sent_event).
    // (A continuation's task-sent is in the first span.)
    const sentExpected =
      record.delivery === undefined && this.nowMs() - this.lastSentEventMs < SENT_EVENTS_MEMORY_MS;
    if (sentExpected && record.sentAt === undefined) return false;
    for (const attempt of record.attempts) {
      if (attempt.startedAt === undefined || attempt.endedAt === undefined) return false;
    }
    return true;
  }

  private finish(record: TaskRecord, completeness: FinishedTask['completeness']): void {
    this.inFlight.delete(record.id);
    this.track(record.id, 'left');
    this.bytes.remove(record.id);
    this.stopWaiting(record.id);
    this.finishedIds.add(record.id);
    if (this.finishedIds.size > this.options.maxFinishedTaskIds) {
      // Sets iterate in insertion order: forget the oldest id.
      const oldest = this.finishedIds.values().next().value;
      if (oldest !== undefined) this.finishedIds.delete(oldest);
    }
    if (completeness === 'lost' || completeness === 'cancelled') {
      this.interrupted.exportedInterrupted(record);
    } else if (record.delivery !== undefined) {
      this.interrupted.exportedOtherwise(record.id);
    }
    if (record.final?.state === 'FAILURE') this.failedIds.set(record.id, true);
    const trace = this.assignTrace(record);
    this.emit(trace === undefined ? { record, completeness } : { record, completeness, trace });
    // The tree's trace is fixed now: its other tasks need not wait any longer.
    if (trace !== undefined) this.release(record.rootId ?? record.id);
  }

  /** Past `maxInFlightBytes`, the oldest tasks go as past `maxInFlightTasks` (evicted). */
  private keepWithinBytes(): void {
    const max = this.options.maxInFlightBytes;
    if (max === undefined) return;
    while (this.bytes.total > max && this.inFlight.size > 0) {
      const before = this.inFlight.size;
      this.evictOldest();
      if (this.inFlight.size === before) return;
    }
  }

  /** The estimated heap of the tasks in flight (InFlightBytes), for metrics and tests. */
  get inFlightBytes(): number {
    return this.bytes.total;
  }

  private evictOldest(): void {
    const oldestId = this.inFlight.keys().next().value;
    if (oldestId === undefined) return;
    const oldest = this.recordIfInFlight(oldestId);
    if (oldest === undefined) return;
    this.held.delete(oldest.id);
    this.counters.tasksEvicted(1);
    this.finish(oldest, oldest.final === undefined ? 'evicted' : 'held_too_long');
  }
}

function decide(tree: TreeContext, root: string): NonNullable<TreeContext['decided']> {
  if (tree.upstream !== undefined)
    return { traceId: tree.upstream.traceId, upstream: tree.upstream };
  return { traceId: traceIdFor(tree.groupId ?? root) };
}

function stateOf(record: Readonly<TaskRecord>): InFlightState {
  if (record.final !== undefined) return 'finished';
  const last = record.attempts[record.attempts.length - 1];
  if (last !== undefined && last.endedAt === undefined) return 'running';
  return record.receivedAt === undefined ? 'sent' : 'waiting';
}

function min(current: number | undefined, value: number): number {
  return current === undefined || value < current ? value : current;
}

/** Unknown hosts match anything: some events are missing a hostname. */
function sameHost(a: string | undefined, b: string | undefined): boolean {
  return a === undefined || b === undefined || a === b;
}
