import { expect } from 'vitest';
import type { BridgeOptions } from '../../src/config/BridgeOptions.js';
import { parseConfig } from '../../src/config/parseConfig.js';
import { ConfigError } from '../../src/shared/errors.js';

/** The options parseConfig makes of these flags and environment; fails unless it is a run. */
export function runOptions(argv: string[], env: Record<string, string> = {}): BridgeOptions {
  const parsed = parseConfig(argv, env);
  if (parsed.command !== 'run') throw new Error(`expected run, got ${parsed.command}`);
  return parsed.options;
}

/** The message of the ConfigError parseConfig throws; fails when it throws none or another. */
export function configError(argv: string[], env: Record<string, string> = {}): string {
  try {
    parseConfig(argv, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}
