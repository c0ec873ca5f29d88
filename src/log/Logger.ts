export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, string | number | boolean | undefined>;

/**
 * A message or field longer than this is cut (a rejected message's routing key, a library's
 * error text can be any size): a log line stays a few kilobytes whatever the input.
 */
export const MAX_LOG_FIELD_LENGTH = 2000;

/**
 * What JSON.stringify leaves raw but a terminal showing the log acts on: DEL, the C1 controls
 * (U+0080-U+009F; U+009B is CSI), the line and paragraph separators and the bidirectional
 * overrides and isolates (text that displays reordered). Written as `\uXXXX`, still valid JSON.
 */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * One JSON object per line on stderr, so log pipelines parse it and stdout stays free. Callers
 * pass redacted values only: broker URLs go through `redactedUrl`, OTLP headers are never logged.
 */
export class Logger {
  constructor(
    private readonly level: LogLevel,
    private readonly write: (line: string) => void = (line) => process.stderr.write(line),
  ) {}

  debug(msg: string, fields?: LogFields): void {
    this.log('debug', msg, fields);
  }

  info(msg: string, fields?: LogFields): void {
    this.log('info', msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    this.log('warn', msg, fields);
  }

  error(msg: string, fields?: LogFields): void {
    this.log('error', msg, fields);
  }

  private log(level: LogLevel, msg: string, fields: LogFields | undefined): void {
    if (ORDER[level] < ORDER[this.level]) return;
    const line: Record<string, string | number | boolean | undefined> = {
      time: new Date().toISOString(),
      level,
      msg: bounded(msg),
    };
    if (fields !== undefined) {
      for (const [key, value] of Object.entries(fields)) {
        line[bounded(key)] = typeof value === 'string' ? bounded(value) : value;
      }
    }
    const json = JSON.stringify(line).replace(
      UNSAFE_IN_JSON,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
    this.write(`${json}\n`);
  }
}

function bounded(text: string): string {
  if (text.length <= MAX_LOG_FIELD_LENGTH) return text;
  return `${text.slice(0, MAX_LOG_FIELD_LENGTH)}… (${text.length - MAX_LOG_FIELD_LENGTH} more characters)`;
}
