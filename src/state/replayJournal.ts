import type { AssemblerChanges, AssemblerSnapshot } from '../assemble/TaskAssembler.js';
import type { TaskRecord } from '../assemble/TaskRecord.js';

/**
 * The state after `entries`, applied in order to `base`: each entry is what changed between two
 * captures (TaskAssembler.snapshotChanges), so the result is the last capture, tasks in arrival
 * order and exported ids in export order, as `snapshot` would have given it. Exported ids that
 * the assembler's bounded memory had since forgotten may remain: `restore` keeps the newest.
 */
export function replayJournal(
  base: AssemblerSnapshot,
  entries: readonly AssemblerChanges[],
): AssemblerSnapshot {
  if (entries.length === 0) return base;
  const tasks = new Map<string, TaskRecord>();
  for (const record of base.tasks) if (!tasks.has(record.id)) tasks.set(record.id, record);
  const finished = new Set(base.finishedIds);
  for (const entry of entries) {
    for (const id of entry.removedIds) {
      tasks.delete(id);
      finished.delete(id);
    }
    for (const id of entry.finishedIds) {
      tasks.delete(id);
      // Last in export order, as the assembler's own set has it.
      finished.delete(id);
      finished.add(id);
    }
    for (const record of entry.changed) {
      finished.delete(record.id);
      tasks.set(record.id, record); // in place when it is there
    }
    for (const record of entry.added) {
      finished.delete(record.id);
      tasks.delete(record.id); // a continuation goes last, as it did in flight
      tasks.set(record.id, record);
    }
  }
  return { tasks: [...tasks.values()], finishedIds: [...finished] };
}
