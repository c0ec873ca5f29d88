import type { TaskEventReport } from './applyTaskEvent.js';
import type { TaskRecord } from './TaskRecord.js';
import type { TraceTreeCounters } from './TraceTrees.js';

/*
 * What the assembler (TaskAssembler) is configured with, reports through, and saves: its
 * interface to the Bridge, the configuration and the state file.
 */

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

export interface AssemblerCounters extends TaskEventReport, TraceTreeCounters {
  /** An event for a task already exported (late, duplicated, or a redelivery after the end). */
  lateEvent(): void;
  tasksEvicted(count: number): void;
  /** Custom task events not kept: the task already holds MAX_CUSTOM_EVENTS_PER_TASK. */
  customEventsDropped?(count: number): void;
}
