/**
 * Splits what Celery sends about an exception into OpenTelemetry's `exception.type` and
 * `exception.message`.
 *
 * Celery sends `exception` as `safe_repr(exc)` (celery/worker/request.py `on_failure`,
 * `on_retry`), e.g. `RuntimeError('payment step failed')`: the class name without its module.
 * The traceback's last line (`proj.errors.PaymentError: payment step failed`) has the qualified
 * name and the real `str(exc)`, so it is preferred when it names the same class. For a retry the
 * traceback ends in `celery.exceptions.Retry: ...` while `exception` is the cause passed to
 * `self.retry(exc=...)`; the repr wins there.
 * https://opentelemetry.io/docs/specs/semconv/exceptions/exceptions-spans/
 */
export interface ParsedException {
  readonly type: string;
  readonly message: string;
}

const REPR = /^([A-Za-z_][\w.]*)\(([\s\S]*)\)$/;
const LAST_LINE = /^([A-Za-z_][\w.]*)(?:: ([\s\S]*))?$/;

export function parsePythonException(
  repr: string | undefined,
  traceback: string | undefined,
): ParsedException {
  const text = (repr ?? '').trim();
  const match = REPR.exec(text);
  const reprType = match?.[1];
  const fromTraceback = lastTracebackLine(traceback);
  if (reprType !== undefined && fromTraceback !== undefined) {
    const [qualified, message] = fromTraceback;
    if (qualified === reprType || qualified.endsWith(`.${reprType}`)) {
      return { type: qualified, message };
    }
  }
  if (reprType !== undefined) {
    return { type: reprType, message: unquotePythonString(match?.[2] ?? '') };
  }
  if (fromTraceback !== undefined) return { type: fromTraceback[0], message: fromTraceback[1] };
  return { type: text.length > 0 ? text : 'Exception', message: '' };
}

function lastTracebackLine(traceback: string | undefined): [string, string] | undefined {
  if (traceback === undefined) return undefined;
  const lines = traceback.trimEnd().split('\n');
  const last = lines[lines.length - 1];
  // A traceback line for a frame is indented; the exception line is not.
  if (last === undefined || last.startsWith(' ')) return undefined;
  const match = LAST_LINE.exec(last);
  if (match?.[1] === undefined) return undefined;
  return [match[1], match[2] ?? ''];
}

/**
 * `'it''s'`-style Python string literals from a repr, as far as one literal goes: the common
 * single-argument case `ValueError('x')`. Anything else (several arguments, numbers) is returned
 * as written, which still reads well.
 */
function unquotePythonString(args: string): string {
  const quote = args[0];
  if ((quote !== "'" && quote !== '"') || args.length < 2 || args[args.length - 1] !== quote) {
    return args;
  }
  let out = '';
  for (let i = 1; i < args.length - 1; i++) {
    const ch = args[i];
    if (ch === quote) return args; // a second literal or argument: keep the repr as written
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const next = args[++i];
    switch (next) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case 'x':
      case 'u': {
        const width = next === 'x' ? 2 : 4;
        const code = Number.parseInt(args.slice(i + 1, i + 1 + width), 16);
        if (Number.isNaN(code)) return args;
        out += String.fromCharCode(code);
        i += width;
        break;
      }
      default:
        out += next ?? '';
    }
  }
  return out;
}
