#!/usr/bin/env node
import { Bridge } from './Bridge.js';
import { helpText } from './config/helpText.js';
import { parseConfig } from './config/parseConfig.js';
import {
  BrokerSetupError,
  BrokerUnreachableError,
  ConfigError,
  HttpListenError,
} from './shared/errors.js';
import { installDiagLogger } from './log/installDiagLogger.js';
import { diagLoggerOptions } from './config/diagLoggerOptions.js';
import { Logger } from './log/Logger.js';
import { describeBug } from './shared/describeError.js';
import { VERSION } from './version.js';

/** The command-line edge: environment and flags in, exit codes out. */
async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`celery-otel-bridge: invalid configuration: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (parsed.command === 'help') {
    process.stdout.write(helpText(VERSION, parsed.scope));
    return 0;
  }
  if (parsed.command === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const logger = new Logger(parsed.options.logLevel);
  installDiagLogger(logger, diagLoggerOptions(parsed.options));
  const bridge = new Bridge(parsed.options, logger);

  let stopping: Promise<void> | undefined;
  const stop = (signal: string): void => {
    if (stopping !== undefined) return;
    logger.info('stopping', { signal });
    stopping = bridge.stop().catch((error: unknown) => {
      logger.error('error while stopping', { error: describeBug(error) });
    });
    void stopping.then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  try {
    await bridge.start();
  } catch (error) {
    if (
      error instanceof BrokerUnreachableError ||
      error instanceof BrokerSetupError ||
      error instanceof HttpListenError
    ) {
      logger.error(error.message);
      await bridge.stop().catch(() => undefined);
      return 1;
    }
    throw error;
  }
  // Keep running until a signal arrives; the sources' sockets keep the event loop alive.
  return new Promise<number>(() => undefined);
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    // Not one of the bridge's named errors: a bug, so the stack and its causes.
    process.stderr.write(`celery-otel-bridge: fatal: ${describeBug(error)}\n`);
    process.exit(1);
  },
);
