import type { TaskEvent } from '../decode/CeleryEvent.js';
import type { StringInterner } from './StringInterner.js';
import type { TaskRecord } from './TaskRecord.js';

/** The fields `noteWorker` keeps up to date. */
export type TaskWorkerFields = Pick<TaskRecord, 'workerHostname' | 'workerHostnameAt'>;

/**
 * Keeps the worker of the task's latest worker event, by event time rather than arrival, so that
 * the result does not depend on the order events from several processes arrive in.
 */
export function noteWorker(
  task: TaskWorkerFields,
  event: TaskEvent,
  strings: StringInterner,
): void {
  if (event.hostname === undefined) return;
  if (task.workerHostnameAt !== undefined && event.timestamp < task.workerHostnameAt) return;
  task.workerHostname = strings.intern(event.hostname);
  task.workerHostnameAt = event.timestamp;
}
