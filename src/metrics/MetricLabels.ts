import type { WorkerAttributeOptions } from '../config/BridgeOptions.js';

/** Attribute value that stands for every task name past the cap. */
export const OTHER_TASK_NAME = '__other__';

/**
 * Keeps metric attributes low-cardinality: no task id ever, at most `maxTaskNames` distinct task
 * names (a flood of random names cannot grow memory; the overflow is counted), and worker
 * hostnames optionally stripped of pod suffixes or left out.
 */
export class MetricLabels {
  private readonly taskNames = new Set<string>();
  overflowedTaskNames = 0;

  constructor(
    private readonly maxTaskNames: number,
    private readonly worker: WorkerAttributeOptions,
  ) {}

  taskName(name: string | undefined): string {
    if (name === undefined) return 'unknown';
    if (this.taskNames.has(name)) return name;
    if (this.taskNames.size < this.maxTaskNames) {
      this.taskNames.add(name);
      return name;
    }
    this.overflowedTaskNames++;
    return OTHER_TASK_NAME;
  }

  /** The worker attribute value, or undefined when worker attributes are off. */
  workerName(hostname: string | undefined): string | undefined {
    if (this.worker.mode === 'off' || hostname === undefined) return undefined;
    return this.worker.strip === undefined ? hostname : hostname.replace(this.worker.strip, '');
  }
}
