import type { TaskContextEvent, UpstreamContext } from '../decode/CeleryEvent.js';
import { BoundedLru } from './BoundedLru.js';
import { ATTR } from '../shared/attributeSpecs.js';
import { spanIdFor, traceIdFor } from '../shared/deterministicIds.js';
import type { TaskRecord, TaskSpanLink, TraceAssignment } from './TaskRecord.js';

/** Workers seen running the companion are expected to keep doing so for this long. */
const CONTEXT_EVENTS_MEMORY_MS = 10 * 60_000;

/** Span links of one chord callback at most (the OpenTelemetry SDK's default link limit). */
const MAX_CHORD_LINKS = 128;

/** What the worker companion told about a task tree's root task. */
interface TreeContext {
  upstream?: UpstreamContext;
  groupId?: string;
  /** Fixed when the tree's first span is exported; never changes afterwards. */
  decided?: { readonly traceId: string; readonly upstream?: UpstreamContext };
}

interface ChordHeader {
  readonly rootId: string;
  readonly index?: number;
}

export interface TraceTreeCounters {
  /** A task tree's (or chord's) trace context was pushed out of its bounded memory. */
  traceContextsEvicted?(count: number): void;
  /** A root task's trace context arrived after spans of its tree were exported. */
  lateTraceContext?(): void;
}

/**
 * The trace each task tree goes into, and the links of chord callbacks, from the worker
 * companion's `task-otel-context` events: a root task's upstream span and group decide the trace
 * of its whole tree; a chord header task names its chord's callback. Nothing is remembered, and
 * every task keeps the default trace, while no worker runs the companion.
 */
export class TraceTrees {
  private lastContextEventMs = Number.NEGATIVE_INFINITY;
  /** Root task id -> the tree's upstream context / group, and the trace once decided. */
  private readonly trees: BoundedLru<string, TreeContext>;
  /** Chord callback task id -> its header tasks, for the callback's span links. */
  private readonly chords: BoundedLru<string, Map<string, ChordHeader>>;

  constructor(
    /** Trees and chords remembered at most each, least recently used forgotten first. */
    capacity: number,
    private readonly counters: TraceTreeCounters,
    private readonly nowMs: () => number,
  ) {
    const evicted = (): void => counters.traceContextsEvicted?.(1);
    this.trees = new BoundedLru(capacity, evicted);
    this.chords = new BoundedLru(capacity, evicted);
  }

  /** Notes what a context event says of the task's tree and chord. */
  noteContext(event: TaskContextEvent): void {
    this.lastContextEventMs = this.nowMs();
    const root = event.rootId ?? event.uuid;
    if (root === event.uuid && (event.upstream !== undefined || event.group !== undefined)) {
      this.noteTree(root, event.upstream, event.group);
    }
    if (event.chord !== undefined) this.noteChordHeader(event.chord, event.uuid, root, event);
  }

  /**
   * Whether workers run the companion: then a root's context, if it has one, arrives right
   * before its `task-received`, and a finished task may wait for it (TaskAssembler).
   */
  get companionActive(): boolean {
    return this.nowMs() - this.lastContextEventMs < CONTEXT_EVENTS_MEMORY_MS;
  }

  /** Whether the tree of `root` has a context, or its trace was fixed already. */
  has(root: string): boolean {
    return this.trees.has(root);
  }

  /**
   * The trace of the task's tree, fixed by the first of its tasks to be exported: the root
   * message's upstream trace, else its group's trace (trace id from the group id), else the
   * default (trace id from the root task id). Undefined while the companion is not in use, so
   * nothing changes and nothing is remembered without it. Forgets the task's chord.
   */
  assign(record: TaskRecord): TraceAssignment | undefined {
    const root = record.rootId ?? record.id;
    const links = this.chordLinks(record.id);
    let tree = this.trees.get(root);
    if (tree === undefined) {
      if (!this.companionActive && links.length === 0) return undefined;
      tree = {};
      this.trees.set(root, tree);
    }
    tree.decided ??= decide(tree, root);
    const isRoot = root === record.id && record.parentId === undefined;
    const upstream = tree.decided.upstream;
    if (isRoot && record.upstream !== undefined && upstream === undefined) {
      // Its context came after the tree's trace was fixed: keep the tree whole, link upstream.
      links.push({
        traceId: record.upstream.traceId,
        spanId: record.upstream.spanId,
        traceState: record.upstream.traceState,
        attributes: { [ATTR.LINK_TYPE]: 'upstream' },
      });
    }
    return {
      traceId: tree.decided.traceId,
      remoteParent: isRoot ? upstream : undefined,
      upstream,
      links,
    };
  }

  private noteTree(root: string, upstream: UpstreamContext | undefined, group?: string): void {
    const tree = this.trees.get(root);
    if (tree === undefined) {
      this.trees.set(root, { upstream, groupId: group });
      return;
    }
    const news =
      (upstream !== undefined && tree.upstream === undefined) ||
      (group !== undefined && tree.groupId === undefined);
    if (news && tree.decided !== undefined) this.counters.lateTraceContext?.();
    tree.upstream ??= upstream;
    tree.groupId ??= group;
  }

  private noteChordHeader(
    callbackId: string,
    headerId: string,
    rootId: string,
    event: TaskContextEvent,
  ): void {
    let headers = this.chords.get(callbackId);
    if (headers === undefined) {
      headers = new Map();
      this.chords.set(callbackId, headers);
    }
    if (headers.size < MAX_CHORD_LINKS || headers.has(headerId)) {
      headers.set(headerId, { rootId, index: event.groupIndex });
    }
  }

  /** For a chord callback: one link per header task, in group order; forgets the chord. */
  private chordLinks(taskId: string): TaskSpanLink[] {
    const headers = this.chords.peek(taskId);
    if (headers === undefined) return [];
    this.chords.delete(taskId);
    return [...headers]
      .sort(([, a], [, b]) => (a.index ?? Infinity) - (b.index ?? Infinity))
      .map(([headerId, header]) => {
        // The link fixes the header's tree to the trace it points into, like an export does.
        let tree = this.trees.peek(header.rootId);
        if (tree === undefined) {
          tree = {};
          this.trees.set(header.rootId, tree);
        }
        tree.decided ??= decide(tree, header.rootId);
        const traceId = tree.decided.traceId;
        const attributes: Record<string, string | number> = {
          [ATTR.LINK_TYPE]: 'chord_header',
          [ATTR.TASK_ID]: headerId,
        };
        if (header.index !== undefined) attributes[ATTR.GROUP_INDEX] = header.index;
        return { traceId, spanId: spanIdFor(headerId), attributes };
      });
  }
}

function decide(tree: TreeContext, root: string): NonNullable<TreeContext['decided']> {
  if (tree.upstream !== undefined)
    return { traceId: tree.upstream.traceId, upstream: tree.upstream };
  return { traceId: traceIdFor(tree.groupId ?? root) };
}
