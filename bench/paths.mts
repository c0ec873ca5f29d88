import { fileURLToPath } from 'node:url';

/** The repository root: the bench runs compiled from node_modules/.cache/celery-otel-bench/. */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
