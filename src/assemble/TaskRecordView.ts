import { NO_ATTEMPTS, NO_TIMES, type TaskRecord } from './TaskRecord.js';

/**
 * A TaskRecord whose fields can be refilled: one object reused to look at, or change, a task
 * kept in the compact table (CompactTaskTable `load` / `store`) without allocating a record.
 */
export type TaskRecordView = { -readonly [K in keyof TaskRecord]: TaskRecord[K] };

/** A view with every property of a TaskRecord, all undefined, so that its shape never changes. */
export function newTaskRecordView(): TaskRecordView {
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

/** The view in the state of a record before its first event (only what the rules look at). */
export function resetMessageFields(view: TaskRecordView, id: string, at: number): void {
  view.id = id;
  view.name = undefined;
  view.rootId = undefined;
  view.parentId = undefined;
  view.queue = undefined;
  view.exchange = undefined;
  view.routingKey = undefined;
  view.eta = undefined;
  view.expires = undefined;
  view.retries = undefined;
  view.workerHostname = undefined;
  view.workerHostnameAt = undefined;
  view.messageAt = undefined;
  view.args = undefined;
  view.kwargs = undefined;
  view.sentAt = undefined;
  view.receivedAt = undefined;
  view.receivedTimes = NO_TIMES;
  view.lastEventAt = at;
}
