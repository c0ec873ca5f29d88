import type { DiagLoggerOptions } from '../log/installDiagLogger.js';
import type { BridgeOptions } from './BridgeOptions.js';

/** The secrets and level the OpenTelemetry diagnostic logger needs, from the bridge's options. */
export function diagLoggerOptions(options: BridgeOptions): DiagLoggerOptions {
  return {
    otlpUrls: [options.otlp.url, options.metrics.otlp.url],
    otlpHeaders: [options.otlp.headers, options.metrics.otlp.headers],
    brokerPassword: options.broker.password,
    logLevel: options.logLevel,
  };
}
