import { createRequire } from 'node:module';

// package.json sits one level above both src/ (tests) and dist/ (built).
const packageJson = createRequire(import.meta.url)('../package.json') as { version: string };

export const VERSION: string = packageJson.version;
