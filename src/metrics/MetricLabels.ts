import type { WorkerAttributeOptions } from './MetricsOptions.js';
import { RecentLabelValues } from './RecentLabelValues.js';

/** Attribute value that stands for every task name past the cap. */
export const OTHER_TASK_NAME = '__other__';

/**
 * Keeps metric attributes low-cardinality: no task id ever, at most `maxTaskNames` distinct task
 * names (a flood of random names cannot grow memory; the overflow is counted; names idle for two
 * collections give their place to new ones, RecentLabelValues), and worker hostnames optionally
 * stripped of pod suffixes or left out.
 */
export class MetricLabels {
  private readonly taskNames: RecentLabelValues;
  overflowedTaskNames = 0;

  constructor(
    maxTaskNames: number,
    private readonly worker: WorkerAttributeOptions,
  ) {
    this.taskNames = new RecentLabelValues(maxTaskNames);
  }

  taskName(name: string | undefined): string {
    if (name === undefined) return 'unknown';
    if (this.taskNames.admit(name)) return name;
    this.overflowedTaskNames++;
    return OTHER_TASK_NAME;
  }

  /**
   * The attribute value of a name for a gauge of current state: the name if it has its place,
   * else `__other__`. Neither takes a place nor counts as a use: tasks waiting in flight (for
   * up to --max-task-age-ms) must not keep the names of a flood for good.
   */
  currentTaskName(name: string | undefined): string {
    if (name === undefined) return 'unknown';
    return this.taskNames.has(name) ? name : OTHER_TASK_NAME;
  }

  /** At each metric collection: names unused since the one before last may give their place. */
  collected(): void {
    this.taskNames.nextGeneration();
  }

  /** The worker attribute value, or undefined when worker attributes are off. */
  workerName(hostname: string | undefined): string | undefined {
    if (this.worker.mode === 'off' || hostname === undefined) return undefined;
    return this.worker.strip === undefined ? hostname : hostname.replace(this.worker.strip, '');
  }
}
