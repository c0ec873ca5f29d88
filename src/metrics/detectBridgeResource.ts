import {
  detectResources,
  envDetector,
  hostDetector,
  osDetector,
  processDetector,
  type Resource,
  type ResourceDetector,
  resourceFromAttributes,
  serviceInstanceIdDetector,
} from '@opentelemetry/resources';
import { ATTR } from '../shared/attributeSpecs.js';

/** The bridge's own `service.name`, whatever OTEL_SERVICE_NAME says (that names Celery's). */
export const BRIDGE_SERVICE_NAME = 'celery-otel-bridge';

/**
 * OTEL_NODE_RESOURCE_DETECTORS' names, as @opentelemetry/sdk-node maps them
 * (sdk-node src/utils.ts `getResourceDetectorsFromEnv`): `all` (the default) is every one of
 * these, `none` is none.
 */
const DETECTORS: Record<string, ResourceDetector> = {
  env: envDetector,
  host: hostDetector,
  os: osDetector,
  process: processDetector,
  serviceinstance: serviceInstanceIdDetector,
};

/**
 * The resource of the bridge's own health metrics (`celery_otel_bridge.*`): detected as the
 * OpenTelemetry Node SDK does (host, os, process, a random service.instance.id, and
 * OTEL_RESOURCE_ATTRIBUTES through the env detector), with `service.name` always
 * {@link BRIDGE_SERVICE_NAME} and `service.version` the bridge's. Some attributes (the host's
 * machine id) arrive asynchronously: `waitForAsyncAttributes` before the first export.
 */
export function detectBridgeResource(detectorNames: readonly string[], version: string): Resource {
  const names = detectorNames.includes('all')
    ? Object.keys(DETECTORS)
    : detectorNames.includes('none')
      ? []
      : detectorNames;
  const detectors = names.flatMap((name) => DETECTORS[name] ?? []);
  return detectResources({ detectors }).merge(
    resourceFromAttributes({
      [ATTR.SERVICE_NAME]: BRIDGE_SERVICE_NAME,
      [ATTR.SERVICE_VERSION]: version,
      [ATTR.TELEMETRY_SDK_LANGUAGE]: 'nodejs',
    }),
  );
}
