import { type HrTime, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { escapeForTerminal as safe } from './escapeForTerminal.js';
import { ATTR } from '../shared/attributeSpecs.js';

/** Why a trace is printed now; anything but `complete` is said in the header. */
export type TracePrintReason = 'complete' | 'max_wait' | 'buffer_full' | 'shutdown';

export interface RenderTraceOptions {
  /** ANSI colours (only when stdout is a terminal and NO_COLOR is unset). */
  readonly color: boolean;
  readonly reason: TracePrintReason;
  /** The trace was printed before: these are spans that arrived after it. */
  readonly continued?: boolean;
}

const ANSI = {
  bold: '\x1b[1m',
  dim: '\x1b[2m',
  red: '\x1b[31m',
  green: '\x1b[32m',
  yellow: '\x1b[33m',
  cyan: '\x1b[36m',
  reset: '\x1b[0m',
} as const;

type Style = keyof typeof ANSI;

interface Node {
  readonly span: ReadableSpan;
  readonly children: Node[];
  readonly attempts: Node[];
}

/**
 * Renders the spans of one trace as an indented tree, one task per line, children under their
 * parent task:
 *
 *     trace 0c4e… · proj.tasks.add · 3 tasks · 41ms · 2026-01-02T03:04:05.678Z
 *     proj.tasks.add SUCCESS 12ms · queued 3ms
 *     └─ proj.tasks.mul SUCCESS 9ms · queued 2ms
 *        └─ proj.tasks.fail FAILURE 5ms · queued 1ms
 *              RuntimeError: payment step failed
 *
 * A task with more than one execution attempt lists them (`attempt 1 RETRY …`). Queue wait is the
 * task span's start (sent or received) to its first attempt's start. A failure shows the last
 * line of its traceback (the exception Celery finally reported, after any chained causes).
 */
export function renderTraceTree(
  spans: readonly ReadableSpan[],
  options: RenderTraceOptions,
): string {
  const paint = (style: Style, text: string): string =>
    options.color ? `${ANSI[style]}${text}${ANSI.reset}` : text;

  const byId = new Map<string, Node>();
  for (const span of spans) {
    byId.set(span.spanContext().spanId, { span, children: [], attempts: [] });
  }
  const roots: Node[] = [];
  for (const node of byId.values()) {
    const parent = node.span.parentSpanContext?.spanId;
    const parentNode = parent === undefined ? undefined : byId.get(parent);
    if (parentNode === undefined) roots.push(node);
    else if (isAttempt(node.span)) parentNode.attempts.push(node);
    else parentNode.children.push(node);
  }
  const byStart = (a: Node, b: Node): number =>
    seconds(a.span.startTime) - seconds(b.span.startTime) ||
    attemptIndex(a.span) - attemptIndex(b.span);
  for (const node of byId.values()) {
    node.children.sort(byStart);
    node.attempts.sort(byStart);
  }
  roots.sort(byStart);

  const taskCount = spans.filter((span) => !isAttempt(span)).length;
  const first = roots[0]?.span;
  const traceId = spans[0]?.spanContext().traceId ?? '';
  const start = Math.min(...spans.map((span) => seconds(span.startTime)));
  const end = Math.max(...spans.map((span) => seconds(span.endTime)));
  const header = [
    `trace ${safe(traceId)}`,
    options.continued === true ? 'continued: spans that arrived after it was printed' : undefined,
    first === undefined ? undefined : safe(first.name),
    `${taskCount} ${taskCount === 1 ? 'task' : 'tasks'}`,
    formatDuration(end - start),
    isoTime(start),
    reasonNote(options.reason),
  ]
    .filter((part) => part !== undefined)
    .join(' · ');
  const lines = [paint('dim', header)];

  const render = (
    node: Node,
    prefix: string,
    connector: string,
    childPrefix: string,
    parentQueue: string | undefined,
  ): void => {
    lines.push(
      `${prefix}${connector}${describeSpan(
        node,
        paint,
        // In a continuation the parent was printed in the trace's earlier block.
        prefix === '' && connector === '' && options.continued !== true,
        parentQueue,
      )}`,
    );
    const under = `${prefix}${childPrefix}`;
    // An attempt shows its failure inline; a task with several attempts shows theirs.
    const detail = isAttempt(node.span) ? undefined : failureLine(node.span);
    const items = [...(node.attempts.length > 1 ? node.attempts : []), ...node.children];
    if (detail !== undefined && node.attempts.length <= 1) {
      // Under the task, past where its children's names start, so it reads as the task's.
      lines.push(`${under}${items.length > 0 ? '│     ' : '      '}${paint('red', safe(detail))}`);
    }
    items.forEach((item, index) => {
      const last = index === items.length - 1;
      const queue = stringAttribute(node.span, ATTR.MESSAGING_DESTINATION_NAME);
      render(item, under, last ? '└─ ' : '├─ ', last ? '   ' : '│  ', queue ?? parentQueue);
    });
  };
  for (const root of roots) render(root, '', '', '', undefined);
  return `${lines.join('\n')}\n`;
}

function describeSpan(
  node: Node,
  paint: (style: Style, text: string) => string,
  top: boolean,
  /** The queue of the task above (undefined for a top-level task): shown only when it differs. */
  parentQueue: string | undefined,
): string {
  const span = node.span;
  const duration = formatDuration(seconds(span.endTime) - seconds(span.startTime));
  if (isAttempt(span)) {
    const outcome = stringAttribute(span, ATTR.ATTEMPT_OUTCOME) ?? statusWord(span);
    const parts = [
      `attempt ${attemptIndex(span) + 1}`,
      paint(stateStyle(outcome), safe(outcome)),
      duration,
    ];
    const hostname = stringAttribute(span, ATTR.WORKER_HOSTNAME);
    if (hostname !== undefined) parts.push(paint('dim', `on ${safe(hostname)}`));
    const failure = failureLine(span);
    if (failure !== undefined) parts.push(paint('red', `· ${safe(failure)}`));
    return parts.join(' ');
  }
  const state =
    stringAttribute(span, ATTR.TASK_STATE) ??
    (span.status.code === SpanStatusCode.ERROR ? 'ERROR' : 'OK');
  const parts = [paint('bold', safe(span.name)), paint(stateStyle(state), safe(state)), duration];
  const extra: string[] = [];
  const firstAttempt = node.attempts[0]?.span;
  if (
    firstAttempt !== undefined &&
    firstAttempt.attributes[ATTR.ATTEMPT_START_UNKNOWN] === undefined
  ) {
    const wait = seconds(firstAttempt.startTime) - seconds(span.startTime);
    if (wait >= 0) extra.push(`queued ${formatDuration(wait)}`);
  }
  const attempts = numberAttribute(span, ATTR.TASK_ATTEMPTS);
  const retries = numberAttribute(span, ATTR.TASK_RETRIES);
  if (attempts !== undefined && attempts > 1) extra.push(`${attempts} attempts`);
  if (retries !== undefined && retries > 0) {
    extra.push(`${retries} ${retries === 1 ? 'retry' : 'retries'}`);
  }
  const incomplete = stringAttribute(span, ATTR.TASK_INCOMPLETE);
  if (incomplete !== undefined) extra.push(`incomplete: ${safe(incomplete)}`);
  const queue = stringAttribute(span, ATTR.MESSAGING_DESTINATION_NAME);
  if (queue !== undefined && queue !== parentQueue) extra.push(`queue ${safe(queue)}`);
  if (top && span.parentSpanContext !== undefined && !isTaskRoot(span)) {
    extra.push('parent task not seen');
  }
  if (extra.length > 0) parts.push(paint('dim', `· ${extra.join(' · ')}`));
  return parts.join(' ');
}

/** The last non-empty line of the span's traceback, else `Type: message`; undefined if none. */
export function failureLine(span: ReadableSpan): string | undefined {
  const exception = span.events.find((event) => event.name === 'exception');
  if (exception === undefined) return undefined;
  const attributes = exception.attributes ?? {};
  const stacktrace = attributes[ATTR.EXCEPTION_STACKTRACE];
  if (typeof stacktrace === 'string') {
    const lines = stacktrace.split('\n').filter((line) => line.trim() !== '');
    const last = lines[lines.length - 1];
    if (last !== undefined) return last.trim();
  }
  const type = attributes[ATTR.EXCEPTION_TYPE];
  const message = attributes[ATTR.EXCEPTION_MESSAGE];
  const text = [type, message].filter((part) => typeof part === 'string' && part !== '').join(': ');
  return text === '' ? undefined : text;
}

/** `celery.attempt` marks an execution attempt span (`run/<task>`). */
export function isAttempt(span: ReadableSpan): boolean {
  return span.attributes[ATTR.ATTEMPT] !== undefined;
}

/** A task span whose task is its trace's root task (Celery's root_id is itself, or unset). */
export function isTaskRoot(span: ReadableSpan): boolean {
  if (isAttempt(span)) return false;
  const id = span.attributes[ATTR.TASK_ID];
  if (id === undefined) return span.parentSpanContext === undefined;
  const rootId = span.attributes[ATTR.TASK_ROOT_ID];
  const parentId = span.attributes[ATTR.TASK_PARENT_ID];
  return rootId === undefined ? parentId === undefined : rootId === id;
}

function attemptIndex(span: ReadableSpan): number {
  return numberAttribute(span, ATTR.ATTEMPT) ?? 0;
}

function stringAttribute(span: ReadableSpan, key: string): string | undefined {
  const value = span.attributes[key];
  return typeof value === 'string' ? value : undefined;
}

function numberAttribute(span: ReadableSpan, key: string): number | undefined {
  const value = span.attributes[key];
  return typeof value === 'number' ? value : undefined;
}

function statusWord(span: ReadableSpan): string {
  return span.status.code === SpanStatusCode.ERROR ? 'ERROR' : 'OK';
}

function stateStyle(state: string): Style {
  if (state === 'SUCCESS' || state === 'OK') return 'green';
  if (state === 'FAILURE' || state === 'ERROR' || state === 'LOST') return 'red';
  if (state === 'RETRY' || state === 'REVOKED' || state === 'REJECTED') return 'yellow';
  return 'cyan';
}

function reasonNote(reason: TracePrintReason): string | undefined {
  switch (reason) {
    case 'complete':
      return undefined;
    case 'max_wait':
      return 'printed after the maximum wait: the root task or a parent never arrived';
    case 'buffer_full':
      return 'printed early: too many traces waiting';
    case 'shutdown':
      return 'printed at shutdown';
  }
}

/**
 * The trace's start as an ISO time; undefined when no Date can hold it (beyond ±8.64e15 ms,
 * where toISOString throws `Invalid time value`): an event's timestamp is anyone's number.
 */
function isoTime(epochSeconds: number): string | undefined {
  const ms = epochSeconds * 1000;
  return Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : undefined;
}

function seconds(time: HrTime): number {
  return time[0] + time[1] / 1e9;
}

/** `850µs`, `12ms`, `1.25s`, `2m05s`. */
export function formatDuration(secondsValue: number): string {
  const value = Math.max(0, secondsValue);
  if (value < 0.001) return `${Math.round(value * 1e6)}µs`;
  if (value < 1) return `${Math.round(value * 1000)}ms`;
  if (value < 60) return `${value.toFixed(2)}s`;
  const minutes = Math.floor(value / 60);
  return `${minutes}m${String(Math.floor(value - minutes * 60)).padStart(2, '0')}s`;
}
