// Event shapes taken from the captured Celery 5.2.6 streams in test/fixtures: field sets, field
// order, value formats and sizes are the captured ones; only ids, hosts and times are replaced.
import { readFileSync } from 'node:fs';
import { ROOT } from './paths.mjs';

export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
export type EventObject = Record<string, Json>;

const FIXTURES = `${ROOT}test/fixtures/`;

/** One template per task event type, as a real worker or client sent it. */
export interface Shapes {
  readonly sent: EventObject;
  readonly received: EventObject;
  readonly started: EventObject;
  readonly succeeded: EventObject;
  readonly failed: EventObject;
  readonly retried: EventObject;
  /** Argument strings and task names seen in the capture, in capture order. */
  readonly calls: readonly { name: string; args: string; kwargs: string }[];
  /** kombu's Redis envelope keys in captured order (`properties` included). */
  readonly redisEnvelope: EventObject;
}

interface AmqpLine {
  routing_key: string;
  body: string;
}

interface RedisLine {
  payload: string;
}

function readLines<T>(file: string): T[] {
  return readFileSync(FIXTURES + file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as T);
}

/**
 * The captured failure has a chained traceback of about 1 KB (`_inner` recursing 4 deep); real
 * failures recurse deeper. More `_inner` frames, exactly as Python prints them, bring it to the
 * ~1.5 KB the benchmark asks for without inventing a new shape.
 */
function deepenTraceback(traceback: string, targetLength: number): string {
  const frame = '  File "/srv/app/proj.py", line 37, in _inner\n    _inner(depth - 1)\n';
  const at = traceback.indexOf(frame);
  if (at === -1) return traceback;
  let extra = '';
  while (traceback.length + extra.length + frame.length <= targetLength) extra += frame;
  return traceback.slice(0, at) + extra + traceback.slice(at);
}

export function loadShapes(): Shapes {
  const events: EventObject[] = [];
  for (const line of readLines<AmqpLine>('amqp-celery-5.2.6.jsonl')) {
    const body = JSON.parse(line.body) as EventObject | EventObject[];
    for (const event of Array.isArray(body) ? body : [body]) events.push(event);
  }
  const first = (type: string, name?: string): EventObject => {
    const found = events.find(
      (e) => e['type'] === type && (name === undefined || e['name'] === name),
    );
    if (found === undefined) throw new Error(`no ${type} event in the captured fixtures`);
    return found;
  };
  const failed = { ...first('task-failed') };
  if (typeof failed['traceback'] === 'string') {
    failed['traceback'] = deepenTraceback(failed['traceback'], 1536);
  }
  const calls: { name: string; args: string; kwargs: string }[] = [];
  const seen = new Set<string>();
  for (const event of events) {
    if (event['type'] !== 'task-sent') continue;
    const { name, args, kwargs } = event;
    if (typeof name !== 'string' || typeof args !== 'string' || typeof kwargs !== 'string')
      continue;
    if (name === 'proj.fail' || name === 'proj.flaky' || name === 'proj.sleepy') continue;
    const key = `${name}${args}`;
    if (seen.has(key)) continue;
    seen.add(key);
    calls.push({ name, args, kwargs });
  }
  const redis = readLines<RedisLine>('redis-celery-5.2.6.jsonl')[0];
  if (redis === undefined) throw new Error('the Redis fixture is empty');
  return {
    sent: first('task-sent'),
    received: first('task-received'),
    started: first('task-started'),
    succeeded: first('task-succeeded'),
    failed,
    retried: first('task-retried'),
    calls,
    redisEnvelope: JSON.parse(redis.payload) as EventObject,
  };
}

/**
 * JSON as Python's `json.dumps` writes it (`", "` and `": "` separators), which is what Celery
 * puts on the wire: message sizes stay those of the capture.
 */
export function pythonJson(value: Json): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`;
  const parts: string[] = [];
  for (const key of Object.keys(value)) {
    const item = value[key];
    if (item !== undefined) parts.push(`${JSON.stringify(key)}: ${pythonJson(item)}`);
  }
  return `{${parts.join(', ')}}`;
}
