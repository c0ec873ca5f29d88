import type { TaskEvent } from '../decode/CeleryEvent.js';
import { noteWorker } from './noteWorker.js';
import type { StringInterner } from './StringInterner.js';
import type { TaskRecord } from './TaskRecord.js';

/**
 * What a `task-sent` or `task-received` (the events that describe the task message) reads and
 * changes of a task. A TaskRecord is one; so is the reused view CompactTaskTable loads a pending
 * task into, which is how both tiers of the in-flight table follow this one set of rules.
 */
export type TaskMessageFields = Pick<
  TaskRecord,
  | 'id'
  | 'name'
  | 'rootId'
  | 'parentId'
  | 'queue'
  | 'exchange'
  | 'routingKey'
  | 'eta'
  | 'expires'
  | 'retries'
  | 'workerHostname'
  | 'workerHostnameAt'
  | 'messageAt'
  | 'args'
  | 'kwargs'
  | 'sentAt'
  | 'receivedAt'
  | 'receivedTimes'
>;

export interface TaskMessageRules {
  /** Task names, hostnames and queues, shared across tasks. */
  readonly strings: StringInterner;
  /** Keep args and kwargs (user data): only when the user opted in. */
  readonly captureArgs: boolean;
}

/** A task received more often than this is counted no further (redelivery loops). */
export const MAX_RECEIVED_TIMES = 64;

/**
 * Applies a `task-sent` or `task-received` to `task`. `duplicate`, changing nothing, for a
 * `task-received` at a time already seen (the same message reported twice). Pure apart from
 * interning strings: applying it to a copy and then to the original gives the same result.
 */
export function applyTaskMessage(
  task: TaskMessageFields,
  event: TaskEvent,
  rules: TaskMessageRules,
): 'applied' | 'duplicate' {
  const at = event.timestamp;
  if (event.type === 'task-sent') {
    task.sentAt = min(task.sentAt, at);
    learnMessage(task, event, rules);
    if (event.queue !== undefined && event.queue !== '')
      task.queue = rules.strings.intern(event.queue);
    if (event.exchange !== undefined) task.exchange = event.exchange;
    if (event.routingKey !== undefined) task.routingKey = event.routingKey;
    return 'applied';
  }
  if (task.receivedTimes.includes(at)) return 'duplicate';
  // A new array of exactly the right size: `push` would reserve room for 16 numbers in every
  // in-flight task, for a list that almost always holds one.
  if (task.receivedTimes.length < MAX_RECEIVED_TIMES) {
    task.receivedTimes = [...task.receivedTimes, at];
  }
  task.receivedAt = min(task.receivedAt, at);
  noteWorker(task, event, rules.strings);
  learnMessage(task, event, rules);
  return 'applied';
}

/**
 * Fields of the task message. Name and root are the same on every message of a task;
 * per-message fields (eta, args) are taken from the latest message by event time, so the result
 * does not depend on arrival order.
 */
function learnMessage(task: TaskMessageFields, event: TaskEvent, rules: TaskMessageRules): void {
  if (event.name !== undefined) task.name = rules.strings.intern(event.name);
  // A root task is its own root: share the id's string rather than keep a second copy.
  if (event.rootId !== undefined) task.rootId = event.rootId === task.id ? task.id : event.rootId;
  // A retry re-sends the message naming the task as its own parent (celery/app/task.py
  // `Task.retry` -> `signature_from_request`); keep the real parent, never make a cycle.
  if (event.parentId !== undefined && event.parentId !== task.id && task.parentId === undefined) {
    task.parentId = event.parentId;
  }
  if (event.retries !== undefined) task.retries = Math.max(task.retries ?? 0, event.retries);
  if (task.messageAt !== undefined && event.timestamp < task.messageAt) return;
  task.messageAt = event.timestamp;
  task.eta = event.eta;
  task.expires = event.expires;
  if (rules.captureArgs) {
    if (event.args !== undefined) task.args = event.args;
    if (event.kwargs !== undefined) task.kwargs = event.kwargs;
  }
}

function min(current: number | undefined, value: number): number {
  return current === undefined || value < current ? value : current;
}
