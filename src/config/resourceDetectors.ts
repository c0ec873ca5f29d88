import { ConfigError } from '../shared/errors.js';

/**
 * OTEL_NODE_RESOURCE_DETECTORS, as @opentelemetry/sdk-node reads it: a comma-separated list of
 * `env`, `host`, `os`, `process`, `serviceinstance`, or `all` (the default) or `none`. The SDK
 * logs and skips an unknown name; the bridge refuses it at start, so a typo is seen.
 */
/** The detectors' names (sdk-node src/utils.ts `getResourceDetectorsFromEnv`). */
export const RESOURCE_DETECTOR_NAMES = ['env', 'host', 'os', 'process', 'serviceinstance'] as const;

function isResourceDetectorName(name: string): boolean {
  return (
    name === 'all' ||
    name === 'none' ||
    (RESOURCE_DETECTOR_NAMES as readonly string[]).includes(name)
  );
}

export function resourceDetectors(value: string | undefined): string[] {
  const names = (value ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  if (names.length === 0) return ['all'];
  const unknown = names.filter((name) => !isResourceDetectorName(name));
  if (unknown.length > 0) {
    throw new ConfigError(
      `OTEL_NODE_RESOURCE_DETECTORS: unknown detector ${JSON.stringify(unknown[0])}: use a ` +
        'comma-separated list of env, host, os, process, serviceinstance, or all or none',
    );
  }
  return names;
}
