import type { TaskRecord } from './TaskRecord.js';

/*
 * An estimate of the heap the in-flight tasks hold, kept up to date as they change (by
 * InFlightTasks, beside each task), so that the assembler can bound its memory in bytes
 * (`--max-in-flight-bytes`) and not only in tasks: one task can hold kilobytes (tracebacks of
 * its attempts, captured arguments) where another holds a few hundred bytes.
 *
 * The estimate errs high: every string counts its header and two bytes per character (V8 keeps
 * ASCII strings in one byte per character, and task names, hostnames and queues are shared
 * between tasks), objects count their usual size on 64-bit V8 with pointer compression off.
 * A pending task in the compact table counts a fixed size plus its ids.
 */

/** An object's header and a Map entry pointing at it. */
const OBJECT_BYTES = 48;
const MAP_ENTRY_BYTES = 40;
/** A TaskRecord's properties (in object and out of object), boxed timestamps included. */
const RECORD_BYTES = 400;
const ATTEMPT_BYTES = 120;
const FINAL_BYTES = 100;
const UPSTREAM_BYTES = 120;
/** Columns of one slot, the Map entry and the table's share of root / parent id pointers. */
const COMPACT_SLOT_BYTES = 100;

// Records restored from the state file are checked there (state/StateFile.ts); the estimate
// still takes nothing for granted, so that it can never be what throws.
function stringBytes(value: string | undefined): number {
  return typeof value === 'string' ? 16 + 2 * value.length : 0;
}

function listOf<T>(value: readonly T[]): readonly T[] {
  const unknownValue: unknown = value;
  return Array.isArray(unknownValue) ? value : [];
}

/** A compact task: its slot, its id, and a root and parent id of the same length at most. */
export function compactTaskBytes(id: string): number {
  return COMPACT_SLOT_BYTES + 3 * stringBytes(id);
}

/** The estimate of one task kept as an object. */
export function recordBytes(record: TaskRecord): number {
  let bytes = MAP_ENTRY_BYTES + RECORD_BYTES;
  bytes += stringBytes(record.id) + stringBytes(record.name) + stringBytes(record.rootId);
  bytes += stringBytes(record.parentId) + stringBytes(record.queue) + stringBytes(record.exchange);
  bytes += stringBytes(record.routingKey) + stringBytes(record.eta) + stringBytes(record.expires);
  bytes += stringBytes(record.workerHostname) + stringBytes(record.args);
  bytes += stringBytes(record.kwargs) + stringBytes(record.result);
  bytes += stringBytes(record.groupId) + stringBytes(record.chordCallbackId);
  const attempts = listOf(record.attempts);
  bytes += OBJECT_BYTES + 8 * listOf(record.receivedTimes).length;
  bytes += OBJECT_BYTES + 8 * attempts.length;
  for (const attempt of attempts) {
    bytes += ATTEMPT_BYTES + stringBytes(attempt.hostname);
    bytes += stringBytes(attempt.exception) + stringBytes(attempt.traceback);
  }
  const final = record.final;
  if (final !== undefined) {
    bytes += FINAL_BYTES + stringBytes(final.exception) + stringBytes(final.traceback);
    bytes += stringBytes(final.signum);
  }
  if (record.upstream !== undefined) {
    bytes += UPSTREAM_BYTES + stringBytes(record.upstream.traceState);
  }
  for (const event of listOf(record.customEvents ?? [])) {
    bytes += OBJECT_BYTES + stringBytes(event.type);
    for (const [key, value] of Object.entries(event.fields)) {
      bytes += 8 + stringBytes(key) + (typeof value === 'string' ? stringBytes(value) : 8);
    }
  }
  return bytes;
}
