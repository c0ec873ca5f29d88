import type { TaskContextEvent } from '../decode/CeleryEvent.js';
import type { TaskRecord } from './TaskRecord.js';

/**
 * What the worker companion's `task-otel-context` tells of the task itself: its tree, the
 * message's upstream context, its group and chord. The first value of each is kept.
 */
export function applyContextEvent(record: TaskRecord, event: TaskContextEvent): void {
  if (event.rootId !== undefined) record.rootId ??= event.rootId;
  if (event.parentId !== undefined && event.parentId !== record.id) {
    record.parentId ??= event.parentId;
  }
  record.upstream ??= event.upstream;
  record.groupId ??= event.group;
  record.groupIndex ??= event.groupIndex;
  record.groupSize ??= event.groupSize;
  record.chordCallbackId ??= event.chord;
}
