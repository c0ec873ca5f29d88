import type { Attributes } from '@opentelemetry/api';
import { type Resource, resourceFromAttributes } from '@opentelemetry/resources';
import { BoundedLru } from '../assemble/BoundedLru.js';
import type { ServiceNameRule } from './ExportOptions.js';
import { ATTR } from '../shared/attributeSpecs.js';

/** Distinct (service, worker) resources kept at most; past it the least recently used go. */
const MAX_RESOURCES = 10_000;

/**
 * The resource of each task span: who ran it, as backends look for it. Per worker node a resource
 * of its own (https://opentelemetry.io/docs/specs/semconv/resource/#service,
 * https://opentelemetry.io/docs/specs/semconv/resource/host/):
 *
 * - `service.name`: the first `--service-name-map` rule that matches the task (its queue, or a
 *   prefix of its name), else `--service-name`: several Celery apps on one broker show up as
 *   different services in Jaeger;
 * - `service.instance.id`: the worker's node name (`celery@host`), unique per worker as the
 *   conventions ask for;
 * - `host.name`: the host part of the node name (celery/utils/nodenames.py `nodesplit`: the
 *   part after the first `@`, or the whole name without one).
 *
 * A span with no known worker (a task revoked before any worker received it) gets the service's
 * resource without them. The same Resource object is returned for the same pair, so the OTLP
 * serializer groups spans by it (one ResourceSpans per worker and service) and encodes it once.
 */
export class TaskResources {
  private readonly cache = new BoundedLru<string, Resource>(MAX_RESOURCES);

  constructor(
    private readonly base: Attributes,
    private readonly defaultService: string,
    private readonly rules: readonly ServiceNameRule[],
  ) {}

  /** The service name the rules give a task (queue rules need the queue, from `task-sent`). */
  serviceFor(taskName: string | undefined, queue: string | undefined): string {
    for (const rule of this.rules) {
      if (rule.kind === 'queue' ? queue === rule.match : taskName?.startsWith(rule.match)) {
        return rule.service;
      }
    }
    return this.defaultService;
  }

  resourceFor(service: string, worker: string | undefined): Resource {
    const key = `${service}\u0000${worker ?? ''}`;
    let resource = this.cache.get(key);
    if (resource === undefined) {
      const attributes: Attributes = { ...this.base, [ATTR.SERVICE_NAME]: service };
      if (worker !== undefined) {
        const at = worker.indexOf('@');
        attributes[ATTR.HOST_NAME] = at === -1 ? worker : worker.slice(at + 1);
        attributes[ATTR.SERVICE_INSTANCE_ID] = worker;
      }
      resource = resourceFromAttributes(attributes);
      this.cache.set(key, resource);
    }
    return resource;
  }
}
