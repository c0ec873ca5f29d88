import { ConfigError } from '../shared/errors.js';
import type { ServiceNameRule } from '../export/ExportOptions.js';

const RULE = /^(queue|task):([^=]+)=(.+)$/;

/**
 * `--service-name-map`: comma-separated `queue:<queue>=<service>` (the task's queue, from
 * `task-sent`, equals it) and `task:<prefix>=<service>` (the task name starts with it) rules,
 * tried in order; the first match names the task spans' service.
 */
export function parseServiceNameRules(text: string): ServiceNameRule[] {
  if (text.trim() === '') return [];
  return text.split(',').map((part) => {
    const match = RULE.exec(part.trim());
    if (match === null) {
      throw new ConfigError(
        `--service-name-map / CELERY_OTEL_BRIDGE_SERVICE_NAME_MAP: ${JSON.stringify(part.trim())} ` +
          'is not queue:<queue>=<service> or task:<task name prefix>=<service>, e.g. ' +
          'queue:billing=billing-app,task:reports.=reports-app',
      );
    }
    const [, kind, key = '', service = ''] = match;
    return {
      kind: kind === 'queue' ? 'queue' : 'task',
      match: key.trim(),
      service: service.trim(),
    };
  });
}
