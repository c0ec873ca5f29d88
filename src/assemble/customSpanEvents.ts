import type { TaskCustomEvent } from '../decode/TaskCustomEvent.js';
import type { TaskRecord } from './TaskRecord.js';

/**
 * Custom task events kept per task at most (the first ones, in arrival order); later ones are
 * dropped and counted (`celery_otel_bridge.events.rejected{reason="custom_event_limit"}`). Each
 * event is itself bounded by the decoder (TaskCustomEvent.ts: 16 fields, values of 256
 * characters), so a task holds at most about 16 x 16 x 320 characters of them.
 */
export const MAX_CUSTOM_EVENTS_PER_TASK = 16;

/** Adds the event to the task's span events; false when the task already holds the maximum. */
export function addCustomEvent(record: TaskRecord, event: TaskCustomEvent): boolean {
  const events = record.customEvents ?? [];
  if (events.length >= MAX_CUSTOM_EVENTS_PER_TASK) return false;
  // Duplicates (an event redelivered to the bridge) would show twice.
  if (events.some((e) => e.type === event.type && e.at === event.timestamp)) return true;
  record.customEvents = [
    ...events,
    {
      type: event.type,
      at: event.timestamp,
      fields: event.fields,
      droppedFields: event.droppedFields,
    },
  ];
  return true;
}
