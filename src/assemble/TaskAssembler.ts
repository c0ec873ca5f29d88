import type { TaskContextEvent, TaskEvent } from '../decode/CeleryEvent.js';
import type { TaskCustomEvent } from '../decode/TaskCustomEvent.js';
import { expiredTaskIds, loseWorkerRuns, unchangedTaskIds } from './abandonedTasks.js';
import { applyContextEvent } from './applyContextEvent.js';
import { applyTaskEvent, type TaskEventRules } from './applyTaskEvent.js';
import { addCustomEvent } from './customSpanEvents.js';
import { FinishedTaskIds } from './FinishedTaskIds.js';
import { HeldTasks } from './HeldTasks.js';
import { type InFlightSinceVisitor, InFlightTasks, type TaskChange } from './InFlightTasks.js';
import { InterruptedTasks, interruptedCompleteness } from './InterruptedTasks.js';
import type { FinishedTask, InFlightState, TaskRecord } from './TaskRecord.js';
import { StringInterner } from './StringInterner.js';
import type {
  AssemblerChanges,
  AssemblerCounters,
  AssemblerSnapshot,
  TaskAssemblerOptions,
} from './TaskAssemblerOptions.js';
import { TraceTrees } from './TraceTrees.js';

export type { AssemblerChanges, AssemblerCounters, AssemblerSnapshot, TaskAssemblerOptions };

const always = (): boolean => true;

/** Distinct task names, hostnames and queues shared at most; more are kept per task. */
const MAX_INTERNED_STRINGS = 10_000;

/** Clients that send `task-sent` at all are expected to keep doing so for this long. */
const SENT_EVENTS_MEMORY_MS = 10 * 60_000;

const DEFAULT_MAX_TRACE_CONTEXTS = 100_000;

/**
 * Turns the stream of task events into one finished record per task id: the place where Celery
 * events become tasks. (export/taskSpans.ts then makes the spans.)
 *
 * Events from different processes arrive in any order: a client's `task-sent` after the worker's
 * `task-received`, the next attempt's `task-started` before the previous attempt's
 * `task-retried`. So nothing here depends on arrival order: attempts are matched by timestamp and
 * host (applyTaskEvent.ts), and a task is only handed on when its final event is in and nothing
 * is known missing, or when the grace period for the missing parts ran out (HeldTasks).
 *
 * This class decides when a task is handed on; the parts it delegates to: the tasks in flight
 * (InFlightTasks), how events change them (applyTaskEvent.ts), the trace of each task tree
 * (TraceTrees), held tasks (HeldTasks), the ids already handed on (FinishedTaskIds), the
 * continuation of interrupted tasks (InterruptedTasks) and the tasks given up on
 * (abandonedTasks.ts).
 */
export class TaskAssembler {
  private readonly tasks: InFlightTasks;
  private readonly held: HeldTasks;
  private readonly finishedIds: FinishedTaskIds;
  private readonly trees: TraceTrees;
  /** Tasks exported as lost or cancelled, whose next run continues them (InterruptedTasks). */
  private readonly interrupted = new InterruptedTasks();
  private readonly rules: TaskEventRules;
  private lastSentEventMs = Number.NEGATIVE_INFINITY;
  /**
   * The tasks touched since the last capture, for the state file's journal (`snapshotChanges`):
   * id -> whether it came in flight since. InFlightTasks reports every task that comes in
   * flight, changes or leaves (`track`). Undefined until the first `snapshot` (without a state
   * file nothing is tracked), and again once it holds more ids than a whole snapshot would (the
   * next capture is then a whole one): bounded by maxInFlightTasks + maxFinishedTaskIds.
   */
  private changes: Map<string, boolean> | undefined;

  constructor(
    private readonly options: TaskAssemblerOptions,
    private readonly emit: (task: FinishedTask) => void,
    private readonly counters: AssemblerCounters,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    const strings = new StringInterner(MAX_INTERNED_STRINGS);
    this.rules = {
      strings,
      captureArgs: options.captureArgs,
      captureResult: options.captureResult,
    };
    this.tasks = new InFlightTasks(
      {
        maxTasks: options.maxInFlightTasks,
        maxBytes: options.maxInFlightBytes,
        compact: options.compactPendingTasks !== false,
      },
      strings,
      this.rules,
      (record) => this.evict(record),
      (id, how) => this.track(id, how),
    );
    this.held = new HeldTasks(options.finishGraceMs);
    this.finishedIds = new FinishedTaskIds(options.maxFinishedTaskIds);
    this.trees = new TraceTrees(
      options.maxTraceContexts ?? DEFAULT_MAX_TRACE_CONTEXTS,
      counters,
      nowMs,
    );
  }

  get inFlightCount(): number {
    return this.tasks.size;
  }

  /** Of `inFlightCount`, the pending tasks kept in the compact table (diagnostics and tests). */
  get compactInFlightCount(): number {
    return this.tasks.compactSize;
  }

  /** The estimated heap of the tasks in flight (InFlightBytes), for metrics and tests. */
  get inFlightBytes(): number {
    return this.tasks.bytes;
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
    return this.tasks.peek(taskId);
  }

  /**
   * Visits every task in flight (sent, waiting, running, or finished and held) with its name and
   * state. The metrics collect this at every scrape.
   */
  forEachInFlight(visit: (name: string | undefined, state: InFlightState) => void): void {
    this.tasks.forEach(visit);
  }

  /**
   * Like `forEachInFlight`, with when the task's state began (stateSince.ts; NaN when unknown)
   * and the worker holding it: for the oldest-age and prefetched gauges, once per collection.
   */
  forEachInFlightSince(visit: InFlightSinceVisitor): void {
    this.tasks.forEachSince(visit);
  }

  /**
   * What a restarted bridge needs to continue: the unfinished tasks and the ids already exported
   * (so a late event makes no second span). Held tasks are saved as they are and held again on
   * restore. See state/StateFile.ts.
   */
  snapshot(): AssemblerSnapshot {
    this.changes = new Map();
    return { tasks: this.tasks.records(), finishedIds: this.finishedIds.toArray() };
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
      const record = this.tasks.copy(id);
      if (record !== undefined) (entered ? out.added : out.changed).push(record);
      else if (this.finishedIds.has(id)) out.finishedIds.push(id);
      else out.removedIds.push(id);
    });
    return out;
  }

  /**
   * Gives up on unfinished tasks with no event for `maxAgeMs` (by their events' own clock), and
   * exports them as `expired`. Held tasks are left to their grace period. Returns how many.
   */
  expireOlderThan(maxAgeMs: number, nowEpochMs: number): number {
    return this.finishAll(expiredTaskIds(this.tasks, maxAgeMs, nowEpochMs), 'expired');
  }

  /**
   * A worker went offline or stopped heartbeating: the tasks it was running end their open
   * attempt as LOST and are exported as `lost` (abandonedTasks.ts). Returns how many.
   */
  workerLost(hostname: string, atEpochSeconds: number): number {
    const lost = loseWorkerRuns(this.tasks, hostname, atEpochSeconds);
    // Held for the finish grace period: its real outcome, `task-cancelled` or a redelivery may
    // still come (InterruptedTasks); then exported as `lost` (finishHeld).
    for (const record of lost) {
      this.tasks.updated(record);
      this.held.hold(record.id, this.nowMs());
    }
    return lost.length;
  }

  /** The unfinished tasks and their last event time, to check later whether they moved on. */
  unfinishedLastEvents(): Map<string, number> {
    return this.tasks.unfinishedLastEvents();
  }

  /**
   * After a broker outage: the tasks of `before` that had no event since are exported as
   * `outage` (their events were lost while the connection was down). Returns how many.
   */
  giveUpUnchanged(before: ReadonlyMap<string, number>): number {
    return this.finishAll(unchangedTaskIds(this.tasks, before), 'outage');
  }

  /** Loads a snapshot taken by a previous run, before any event is handled; returns tasks loaded. */
  restore(snapshot: AssemblerSnapshot): number {
    // The newest ids when there are more (a journal replayed on its base can hold more).
    const ids = snapshot.finishedIds;
    for (let i = Math.max(0, ids.length - this.options.maxFinishedTaskIds); i < ids.length; i++) {
      this.finishedIds.add(ids[i] as string, false);
    }
    let loaded = 0;
    for (const record of snapshot.tasks) {
      if (this.tasks.size >= this.options.maxInFlightTasks) break;
      if (this.tasks.has(record.id) || this.finishedIds.has(record.id)) continue;
      this.tasks.restore(record);
      loaded++;
    }
    // Tasks whose final event had arrived were held when the state was saved (a checkpoint does
    // not flush them): hold them again, or export them if nothing is missing.
    for (const record of snapshot.tasks) {
      if (record.final !== undefined && this.tasks.peek(record.id) === record) this.settle(record);
    }
    this.tasks.keepWithinBytes();
    return loaded;
  }

  /**
   * `terminalEcho`: what `isTerminalEcho` answered for this event, when the caller asked already
   * (Bridge does, for the metrics).
   */
  handle(event: TaskEvent, terminalEcho?: boolean): void {
    if (this.finishedIds.has(event.uuid) && !this.continueInterrupted(event)) {
      if (terminalEcho ?? this.isTerminalEcho(event)) this.counters.duplicateEvent();
      else this.counters.lateEvent();
      return;
    }
    const pending = this.tasks.applyPending(event);
    if (pending === 'duplicate') {
      this.counters.duplicateEvent();
    } else if (pending === 'applied') {
      if (event.type === 'task-sent') this.lastSentEventMs = this.nowMs();
    } else {
      const record = this.tasks.recordFor(event.uuid, event.timestamp);
      applyTaskEvent(record, event, this.rules, this.counters);
      if (event.type === 'task-sent') this.lastSentEventMs = this.nowMs();
      // The worker killed the run; the message may run again (InterruptedTasks).
      if (event.type === 'task-cancelled' && record.final === undefined) {
        this.held.hold(record.id, this.nowMs());
      }
      if (record.final !== undefined) this.settle(record);
      this.tasks.updated(record);
    }
    this.tasks.keepWithinBytes();
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
    const record = this.tasks.recordFor(event.uuid, event.timestamp);
    if (!addCustomEvent(record, event)) this.counters.customEventsDropped?.(1);
    // Custom events make the record bigger: counted in the byte budget as every other event is.
    this.tasks.updated(record);
    this.tasks.keepWithinBytes();
  }

  /**
   * The worker companion's `task-otel-context`: the root task's upstream span and group decide
   * the trace of its whole tree; a chord header task names its chord's callback (TraceTrees).
   */
  handleContext(event: TaskContextEvent): void {
    this.trees.noteContext(event);
    if (this.finishedIds.has(event.uuid)) {
      this.counters.lateEvent();
      return;
    }
    const record = this.tasks.recordFor(event.uuid, event.timestamp);
    applyContextEvent(record, event);
    if (record.final !== undefined) this.settle(record);
    this.release(event.uuid);
    this.tasks.updated(record);
    this.tasks.keepWithinBytes();
  }

  /**
   * A second terminal event of an exported FAILURE: a duplicate, and for the metrics not a
   * second failure. (Celery main's `Reject(requeue=False)` sends `task-failed` then
   * `task-rejected`; a hard time limit sends `task-failed` twice.)
   */
  isTerminalEcho(event: TaskEvent): boolean {
    const terminal =
      event.type === 'task-failed' || (event.type === 'task-rejected' && event.requeue !== true);
    return terminal && this.finishedIds.failed(event.uuid);
  }

  /**
   * Exports held tasks whose grace period is over. Call it on a timer. `mayExport`, asked before
   * each task, holds the rest back while the exporter is behind (they stay held, in order).
   */
  tick(mayExport: () => boolean = always): void {
    this.held.releaseDue(this.nowMs(), mayExport, (id) => this.finishHeld(id));
  }

  /**
   * On shutdown: hand on every task whose final event arrived, complete or not, while `mayExport`
   * allows; returns true once none is held.
   */
  flushHeld(mayExport: () => boolean = always): boolean {
    return this.held.releaseAll(mayExport, (id) => this.finishHeld(id));
  }

  /** Puts the continuation of a task exported as lost or cancelled in flight (InterruptedTasks). */
  private continueInterrupted(event: TaskEvent): boolean {
    const record = this.interrupted.continuation(event);
    if (record === undefined) return false;
    this.finishedIds.delete(record.id);
    this.tasks.insert(record);
    return true;
  }

  /**
   * Notes a change to task `id` for `snapshotChanges`. A task that comes in flight or leaves it
   * moves to the end, so the tasks added and the ids finished come out in the order of the
   * in-flight table and `finishedIds`; any other change keeps its first place (the order of the
   * `changed` records does not matter).
   */
  private track(id: string, how: TaskChange): void {
    const changes = this.changes;
    if (changes === undefined) return;
    if (how !== 'changed') changes.delete(id);
    else if (changes.has(id)) return;
    changes.set(id, how === 'entered');
    if (changes.size > this.options.maxInFlightTasks + this.options.maxFinishedTaskIds) {
      this.changes = undefined;
    }
  }

  /** Exports the unfinished tasks `ids` as given up on; returns how many. */
  private finishAll(ids: readonly string[], completeness: FinishedTask['completeness']): number {
    let count = 0;
    for (const id of ids) {
      // Giving up on one task never finishes another unfinished one (only final tasks waiting
      // for their root are released), so each id is still in flight here.
      const record = this.tasks.record(id);
      if (record === undefined) continue;
      this.finish(record, completeness);
      count++;
    }
    return count;
  }

  /** Exports a held task whose wait is over, with what arrived. */
  private finishHeld(id: string): void {
    const record = this.tasks.record(id);
    if (record === undefined) return;
    if (record.final === undefined) {
      // Held as interrupted (lost / cancelled); if a redelivery came meanwhile, it stays.
      const interrupted = interruptedCompleteness(record);
      if (interrupted !== undefined) this.finish(record, interrupted);
      return;
    }
    // Only waiting for its root's context, which never came: complete in itself.
    const onlyRoot = this.held.isWaitingForRoot(id) && this.isComplete(record);
    this.finish(record, onlyRoot ? 'complete' : 'held_too_long');
  }

  private settle(record: TaskRecord): void {
    const complete = this.isComplete(record);
    if (complete && this.treeContextKnown(record)) {
      this.held.unhold(record.id);
      this.finish(record, 'complete');
      return;
    }
    this.held.hold(record.id, this.nowMs());
    if (complete) this.held.waitForRoot(record.id, record.rootId ?? record.id);
  }

  /**
   * Whether the trace of the task's tree can be decided now. Only while workers run the
   * companion: then a root's context, if it has one, arrives right before its `task-received`.
   * So the context is known once it arrived, once the root's `task-received` was seen without
   * one, or once the root or another task of the tree was exported (the trace is then fixed).
   */
  private treeContextKnown(record: TaskRecord): boolean {
    if (!this.trees.companionActive) return true;
    const root = record.rootId ?? record.id;
    if (this.trees.has(root) || this.finishedIds.has(root)) return true;
    if (root === record.id) return record.receivedAt !== undefined;
    return this.tasks.wasReceived(root);
  }

  /** Exports the tasks that waited only for this root's context, if it is known now. */
  private release(root: string): void {
    const ids = this.held.waitingOn(root);
    if (ids === undefined) return;
    for (const id of ids) {
      const record = this.tasks.record(id);
      if (record === undefined || !this.isComplete(record) || !this.treeContextKnown(record)) {
        continue;
      }
      this.held.unhold(id);
      this.finish(record, 'complete');
    }
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

  /** Past `maxInFlightTasks` or `maxInFlightBytes`, the oldest task goes (InFlightTasks). */
  private evict(oldest: TaskRecord): void {
    this.held.unhold(oldest.id);
    this.counters.tasksEvicted(1);
    this.finish(oldest, oldest.final === undefined ? 'evicted' : 'held_too_long');
  }

  private finish(record: TaskRecord, completeness: FinishedTask['completeness']): void {
    this.tasks.delete(record.id);
    this.held.stopWaiting(record.id);
    this.finishedIds.add(record.id, record.final?.state === 'FAILURE');
    if (completeness === 'lost' || completeness === 'cancelled') {
      this.interrupted.exportedInterrupted(record);
    } else if (record.delivery !== undefined) {
      this.interrupted.exportedOtherwise(record.id);
    }
    const trace = this.trees.assign(record);
    this.emit(trace === undefined ? { record, completeness } : { record, completeness, trace });
    // The tree's trace is fixed now: its other tasks need not wait any longer.
    if (trace !== undefined) this.release(record.rootId ?? record.id);
  }
}
