import { OTHER_TASK_NAME } from './MetricLabels.js';

/**
 * Bounds the `error.type` attribute of `celery.task.exceptions` like task names
 * (MetricLabels): at most `maxTypes` distinct exception classes get series of their own, later
 * ones are `__other__` (an event can carry any class name).
 */
export class ExceptionTypeLabels {
  private readonly types = new Set<string>();
  overflowed = 0;

  constructor(private readonly maxTypes: number) {}

  typeOf(type: string | undefined): string {
    if (type === undefined || type === '') return 'unknown';
    if (this.types.has(type)) return type;
    if (this.types.size < this.maxTypes) {
      this.types.add(type);
      return type;
    }
    this.overflowed++;
    return OTHER_TASK_NAME;
  }
}
