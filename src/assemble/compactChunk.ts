/*
 * The column layout of CompactTaskTable: chunks of CHUNK_SLOTS slots, one typed array per field.
 */

/** Column value for "no string" (interned string indexes are below it). */
export const NO_STRING = 0xffff;
/** Column value for "no `retries` seen"; higher counts do not fit. */
export const NO_RETRIES = 0xff;

/** What `rootId` is: absent, the task's own id (a root task), or another task's id. */
export const ROOT_NONE = 0;
export const ROOT_SELF = 1;
export const ROOT_OTHER = 2;

/** Slots per chunk of columns: 2^14, about 700 KB of columns per chunk. */
export const CHUNK_BITS = 14;
export const CHUNK_SLOTS = 1 << CHUNK_BITS;
export const SLOT_MASK = CHUNK_SLOTS - 1;

/** The columns of CHUNK_SLOTS consecutive slots. */
export interface Chunk {
  /** Epoch seconds; NaN when not seen (an event time is never NaN: JSON has no NaN). */
  readonly sentAt: Float64Array;
  readonly receivedAt: Float64Array;
  /** StringInterner indexes, NO_STRING when absent. */
  readonly name: Uint16Array;
  readonly worker: Uint16Array;
  readonly queue: Uint16Array;
  readonly exchange: Uint16Array;
  readonly routingKey: Uint16Array;
  readonly retries: Uint8Array;
  readonly rootKind: Uint8Array;
  /**
   * Only for ROOT_OTHER; a root task (the common case) stores nothing here. Both string columns
   * are created with the chunk's first task that needs them: a backlog of root tasks (no
   * parent) then costs 16 bytes less per task.
   */
  rootIds?: (string | undefined)[];
  parentIds?: (string | undefined)[];
}

export function newChunk(): Chunk {
  return {
    sentAt: new Float64Array(CHUNK_SLOTS),
    receivedAt: new Float64Array(CHUNK_SLOTS),
    name: new Uint16Array(CHUNK_SLOTS),
    worker: new Uint16Array(CHUNK_SLOTS),
    queue: new Uint16Array(CHUNK_SLOTS),
    exchange: new Uint16Array(CHUNK_SLOTS),
    routingKey: new Uint16Array(CHUNK_SLOTS),
    retries: new Uint8Array(CHUNK_SLOTS),
    rootKind: new Uint8Array(CHUNK_SLOTS),
  };
}

export function rootIdOf(c: Chunk, i: number, id: string): string | undefined {
  const kind = c.rootKind[i];
  // A root task shares its id's string, as applyTaskMessage does.
  if (kind === ROOT_SELF) return id;
  return kind === ROOT_OTHER ? c.rootIds?.[i] : undefined;
}

/**
 * A string column of exactly `length` elements. `new Array(n).fill()` makes a fast (not
 * dictionary-mode) array with no spare capacity: 8 bytes per element, measured on Node 20.
 */
export function strings_(length: number): (string | undefined)[] {
  return new Array<string | undefined>(length).fill(undefined);
}
