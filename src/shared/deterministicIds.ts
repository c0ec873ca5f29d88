import { hash } from 'node:crypto';

/**
 * Trace and span ids as pure functions of Celery ids, so the same task gets the same ids whatever
 * order its events arrive in, whichever bridge instance sees them, and across restarts.
 *
 * Celery task ids are UUID4 strings by default (celery/app/task.py `apply_async` -> `uuid()`):
 * 122 random bits, so a canonical UUID root id is used as the trace id as it is (dashes removed).
 * A user can then paste a root task id into Jaeger's trace-id search. Any other id (Celery lets a
 * caller pick `task_id`) is hashed. W3C Trace Context forbids the all-zero ids, which a hash
 * almost never yields; they are replaced all the same.
 * https://www.w3.org/TR/trace-context/#trace-id
 */
export function traceIdFor(rootTaskId: string): string {
  const hex = uuidHex(rootTaskId);
  if (hex !== undefined && hex !== '00000000000000000000000000000000') return hex;
  return nonZero(digest(`trace:${rootTaskId}`).slice(0, 32));
}

/**
 * A canonical UUID (8-4-4-4-12 hex digits, either case) as 32 lowercase hex digits; undefined
 * for anything else. One pass over the characters: this runs for every task exported.
 */
function uuidHex(id: string): string | undefined {
  if (id.length !== 36) return undefined;
  let lower = true;
  for (let i = 0; i < 36; i++) {
    const c = id.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 45 /* - */) return undefined;
    } else if (c >= 65 /* A */ && c <= 70 /* F */) {
      lower = false;
    } else if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) {
      return undefined;
    }
  }
  const hex = id.slice(0, 8) + id.slice(9, 13) + id.slice(14, 18) + id.slice(19, 23) + id.slice(24);
  return lower ? hex : hex.toLowerCase();
}

export function spanIdFor(taskId: string): string {
  return nonZero(digest(`task:${taskId}`).slice(0, 16));
}

/**
 * The span of a task's `delivery`-th run after it was exported as lost or cancelled
 * (InterruptedTasks): a span id of its own, the same whatever order events arrive in.
 */
export function deliverySpanIdFor(taskId: string, delivery: number): string {
  return nonZero(digest(`delivery:${delivery}:${taskId}`).slice(0, 16));
}

/** One span per execution attempt, numbered from 0 in the order the attempts started. */
export function attemptSpanIdFor(taskId: string, attemptIndex: number): string {
  return nonZero(digest(`attempt:${attemptIndex}:${taskId}`).slice(0, 16));
}

/**
 * One-shot `crypto.hash` (Node >= 20.12): the same digest as `createHash().update().digest()` at
 * well under half the cost, which matters at two or three ids per task.
 * https://nodejs.org/api/crypto.html#cryptohashalgorithm-data-outputencoding
 */
function digest(text: string): string {
  return hash('sha256', text, 'hex');
}

function nonZero(hex: string): string {
  for (let i = 0; i < hex.length; i++) if (hex.charCodeAt(i) !== 48 /* '0' */) return hex;
  return `${hex.slice(0, -1)}1`;
}
