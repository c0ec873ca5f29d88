import { OTHER_TASK_NAME } from './MetricLabels.js';
import { RecentLabelValues } from './RecentLabelValues.js';

/**
 * Bounds the `error.type` attribute of `celery.task.exceptions` like task names (MetricLabels):
 * at most `maxTypes` exception classes hold a series of their own at a time, the others are
 * `__other__` (an event can carry any class name); a place unused for a collection is given up.
 */
export class ExceptionTypeLabels {
  private readonly types: RecentLabelValues;
  overflowed = 0;

  constructor(maxTypes: number) {
    this.types = new RecentLabelValues(maxTypes);
  }

  typeOf(type: string | undefined): string {
    if (type === undefined || type === '') return 'unknown';
    if (this.types.admit(type)) return type;
    this.overflowed++;
    return OTHER_TASK_NAME;
  }

  /** At each metric collection (as MetricLabels `collected`). */
  collected(): void {
    this.types.nextGeneration();
  }
}
