import {
  type Attributes,
  type Link,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
} from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import { spanIdFor, traceIdFor } from '../shared/deterministicIds.js';
import { hrTime } from '../export/taskSpans.js';
import { truncateMiddle } from '../shared/truncate.js';
import type { BeatRun, MissedReason, SpanRef } from './BeatRun.js';
import { ATTR, type LinkType } from '../shared/attributeSpecs.js';

export interface BeatRunSpanOptions {
  readonly resource: Resource;
  readonly scope: InstrumentationScope;
  readonly maxAttributeLength: number;
}

const MISSED_MESSAGE: Record<MissedReason, string> = {
  not_sent: 'celery beat did not send this run within the tolerance (--beat-tolerance-ms)',
  send_error: 'celery beat could not send this run',
  not_started: 'the task of this run did not start within the tolerance (--beat-tolerance-ms)',
  not_finished: 'the task of this run did not finish within --beat-run-timeout-ms of starting',
};

/**
 * The span of one beat run, `beat/<entry name>`, kind PRODUCER (beat sends the task), from the
 * time the run was due to its task's final event (or to when the bridge declared it missed).
 *
 * It sits in its task's trace (a task beat sends is its own root, so the trace id is the task id)
 * as a second root, and is LINKED to the task span (`celery.link.type=beat_task`) rather than its
 * parent: the task span is built by the task pipeline from Celery's events alone, before or
 * without the run being known, and must not change with the companion. Each run also links to
 * the entry's run before it (`celery.link.type=beat_previous_run`), missed ones included, so the
 * history of an entry can be walked from any run. A missed run that beat never sent has no task:
 * its ids come from the entry and its due time.
 */
export function beatRunSpan(run: BeatRun, options: BeatRunSpanOptions): ReadableSpan {
  const max = options.maxAttributeLength;
  const attributes: Attributes = {
    [ATTR.BEAT_APP]: truncateMiddle(run.app, max),
    [ATTR.BEAT_ENTRY]: truncateMiddle(run.entry, max),
    [ATTR.BEAT_OUTCOME]: run.outcome,
    [ATTR.BEAT_SCHEDULED_TIME]: run.scheduledAt,
  };
  if (run.task !== undefined) attributes[ATTR.TASK_NAME] = truncateMiddle(run.task, max);
  if (run.taskId !== undefined) attributes[ATTR.TASK_ID] = truncateMiddle(run.taskId, max);
  if (run.missedReason !== undefined) attributes[ATTR.BEAT_MISSED_REASON] = run.missedReason;
  if (run.lateness !== undefined) attributes[ATTR.BEAT_LATENESS] = run.lateness;
  const events: TimedEvent[] = [];
  if (run.sentAt !== undefined) events.push({ name: 'sent', time: hrTime(run.sentAt) });
  if (run.startedAt !== undefined) events.push({ name: 'started', time: hrTime(run.startedAt) });
  const links: Link[] = [];
  if (run.taskId !== undefined) {
    links.push(
      link(
        { traceId: traceIdFor(run.taskId), spanId: spanIdFor(run.taskId) },
        {
          [ATTR.LINK_TYPE]: 'beat_task' satisfies LinkType,
          [ATTR.TASK_ID]: truncateMiddle(run.taskId, max),
        },
      ),
    );
  }
  if (run.previous !== undefined)
    links.push(link(run.previous, { [ATTR.LINK_TYPE]: 'beat_previous_run' satisfies LinkType }));
  const status: ReadableSpan['status'] =
    run.outcome === 'missed'
      ? { code: SpanStatusCode.ERROR, message: MISSED_MESSAGE[run.missedReason ?? 'not_sent'] }
      : run.outcome === 'failed'
        ? {
            code: SpanStatusCode.ERROR,
            message: truncateMiddle(`the task of this run ended ${run.detail ?? 'FAILURE'}`, max),
          }
        : { code: SpanStatusCode.UNSET };
  if (run.missedReason === 'send_error' && run.detail !== undefined)
    attributes[ATTR.BEAT_ERROR] = truncateMiddle(run.detail, max);
  const start = Math.min(run.scheduledAt, run.sentAt ?? run.scheduledAt);
  const end = Math.max(start, run.endedAt);
  const startTime = hrTime(start);
  const endTime = hrTime(end);
  return {
    name: truncateMiddle(`beat/${run.entry}`, max),
    kind: SpanKind.PRODUCER,
    spanContext: () => ({
      traceId: run.span.traceId,
      spanId: run.span.spanId,
      traceFlags: TraceFlags.SAMPLED,
    }),
    parentSpanContext: undefined,
    startTime,
    endTime,
    duration: hrTime(end - start),
    status,
    attributes,
    links,
    events,
    ended: true,
    resource: options.resource,
    instrumentationScope: options.scope,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

function link(ref: SpanRef, attributes: Attributes): Link {
  return {
    context: { traceId: ref.traceId, spanId: ref.spanId, traceFlags: TraceFlags.SAMPLED },
    attributes,
  };
}
