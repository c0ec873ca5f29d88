import { type DiagLogFunction, DiagLogLevel, diag } from '@opentelemetry/api';
import type { LogLevel, Logger } from './Logger.js';
import { redactUrl, secretRedactor } from './redact.js';

/** The same message from the SDK is logged at most once per this long. */
const REPEAT_AFTER_MS = 60_000;
const MAX_ARGUMENT_LENGTH = 1000;
/**
 * A diagnostic is cut to this before any redaction (a collector's partial-success message can be
 * any size), and to MAX_LINE_LENGTH after it. Cutting first may split a secret at the cut; the
 * second, shorter cut then removes that part.
 */
const MAX_SCANNED_LENGTH = 64 * 1024;
const MAX_LINE_LENGTH = 4000;
/**
 * URLs in a diagnostic. The scheme is bounded and the rest is one character class, so the scan is
 * linear: an unbounded `[a-z][a-z0-9+.-]*:` retried at every word boundary of a long run without
 * `://` was quadratic (about 18 s on 300 KB).
 */
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]{0,31}:\/\/[^\s"'()]+/gi;

/**
 * Routes OpenTelemetry's own diagnostics (`diag`) into the bridge's log. Without a diag logger
 * they go nowhere, so e.g. a metrics push the collector refuses (401, 404) was silent: the SDK
 * reports it only through `diag.error` (sdk-metrics PeriodicExportingMetricReader ->
 * core globalErrorHandler). Every line is redacted: the broker password, every OTLP header value
 * and the OTLP URLs' credentials are replaced with `***`, and only an error's message is kept
 * (never its stack or the request options hanging off it). Span and metric payloads, which the
 * SDK logs at debug/verbose, are never forwarded; info goes to the bridge's debug level.
 */
export interface DiagLoggerOptions {
  /** The OTLP endpoints: their credentials and query tokens are redacted. */
  readonly otlpUrls: readonly string[];
  /** Every OTLP header set: each value is redacted. */
  readonly otlpHeaders: readonly Readonly<Record<string, string>>[];
  readonly brokerPassword: string | undefined;
  readonly logLevel: LogLevel;
}

export function installDiagLogger(logger: Logger, options: DiagLoggerOptions): void {
  const urls = options.otlpUrls;
  const urlPasswords = urls.flatMap((text) => {
    try {
      const url = new URL(text);
      // A token in the query string (`?api_key=…`) too; short values would mangle messages.
      const query = [...url.searchParams.values()].filter((value) => value.length >= 8);
      return [decodeURIComponent(url.password || url.username), ...query];
    } catch {
      return [];
    }
  });
  const headerValues = options.otlpHeaders.flatMap((headers) => Object.values(headers));
  const redact = secretRedactor([
    options.brokerPassword,
    ...headerValues,
    // The token of `Bearer <token>` / `Basic <credentials>` on its own, too.
    ...headerValues.flatMap((value) => value.split(/\s+/).filter((part) => part.length >= 8)),
    ...urlPasswords,
  ]);
  const lastLogged = new Map<string, number>();
  const forward =
    (write: (msg: string, fields: { source: string }) => void): DiagLogFunction =>
    (message: string, ...args: unknown[]) => {
      const text = cut(
        redact(
          cut(
            [message, ...args.map(describeArgument)].map(unwrapStringifiedError).join(' '),
            MAX_SCANNED_LENGTH,
          ).replace(URL_IN_TEXT, (url) => redactUrl(url)),
        ),
        MAX_LINE_LENGTH,
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

function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length - max} more characters)` : text;
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
  if (!text.startsWith('{"') || text.length > MAX_SCANNED_LENGTH) return text;
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    return typeof parsed.message === 'string' ? parsed.message : text;
  } catch {
    return text;
  }
}
