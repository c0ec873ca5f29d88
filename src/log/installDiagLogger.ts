import { type DiagLogFunction, DiagLogLevel, diag } from '@opentelemetry/api';
import type { BridgeOptions } from '../config/BridgeOptions.js';
import type { Logger } from './Logger.js';
import { redactUrl, secretRedactor } from './redact.js';

/** The same message from the SDK is logged at most once per this long. */
const REPEAT_AFTER_MS = 60_000;
const MAX_ARGUMENT_LENGTH = 1000;

/**
 * Routes OpenTelemetry's own diagnostics (`diag`) into the bridge's log. Without a diag logger
 * they go nowhere, so e.g. a metrics push the collector refuses (401, 404) was silent: the SDK
 * reports it only through `diag.error` (sdk-metrics PeriodicExportingMetricReader ->
 * core globalErrorHandler). Every line is redacted: the broker password, every OTLP header value
 * and the OTLP URLs' credentials are replaced with `***`, and only an error's message is kept
 * (never its stack or the request options hanging off it). Span and metric payloads, which the
 * SDK logs at debug/verbose, are never forwarded; info goes to the bridge's debug level.
 */
export function installDiagLogger(logger: Logger, options: BridgeOptions): void {
  const urls = [options.otlp.url, options.metrics.otlp.url];
  const urlPasswords = urls.map((text) => {
    try {
      const url = new URL(text);
      return decodeURIComponent(url.password || url.username);
    } catch {
      return undefined;
    }
  });
  const headerValues = [
    ...Object.values(options.otlp.headers),
    ...Object.values(options.metrics.otlp.headers),
  ];
  const redact = secretRedactor([
    options.broker.password,
    ...headerValues,
    // The token of `Bearer <token>` / `Basic <credentials>` on its own, too.
    ...headerValues.flatMap((value) => value.split(/\s+/).filter((part) => part.length >= 8)),
    ...urlPasswords,
  ]);
  const lastLogged = new Map<string, number>();
  const forward =
    (write: (msg: string, fields: { source: string }) => void): DiagLogFunction =>
    (message: string, ...args: unknown[]) => {
      const text = redact(
        [message, ...args.map(describeArgument)]
          .map(unwrapStringifiedError)
          .join(' ')
          .replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'()]+/gi, (url) => redactUrl(url)),
      );
      const now = Date.now();
      const previous = lastLogged.get(text);
      if (previous !== undefined && now - previous < REPEAT_AFTER_MS) return;
      if (lastLogged.size > 1000) lastLogged.clear();
      lastLogged.set(text, now);
      write(text, { source: 'opentelemetry' });
    };
  const ignore: DiagLogFunction = () => undefined;
  diag.setLogger(
    {
      error: forward((msg, fields) => logger.error(msg, fields)),
      warn: forward((msg, fields) => logger.warn(msg, fields)),
      info: forward((msg, fields) => logger.debug(msg, fields)),
      debug: ignore,
      verbose: ignore,
    },
    {
      logLevel: options.logLevel === 'debug' ? DiagLogLevel.INFO : DiagLogLevel.WARN,
      suppressOverrideMessage: true,
    },
  );
}

/** An error is its name and message only; anything else is cut JSON. */
function describeArgument(value: unknown): string {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (typeof value === 'string') return value;
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > MAX_ARGUMENT_LENGTH ? `${text.slice(0, MAX_ARGUMENT_LENGTH)}…` : text;
}

/**
 * core's globalErrorHandler logs `JSON.stringify` of every property of an error (stack, and for
 * an OTLP error the response body); keep only its message.
 */
function unwrapStringifiedError(text: string): string {
  if (!text.startsWith('{"')) return text;
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    return typeof parsed.message === 'string' ? parsed.message : text;
  } catch {
    return text;
  }
}
