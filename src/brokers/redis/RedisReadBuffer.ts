import type { RedisBatch } from './redisThreadMessages.js';

export interface RedisReadBufferOptions {
  /** Most bytes of messages held (channel names and payloads); past it messages are dropped. */
  readonly maxBufferedBytes: number;
  /** Bytes of one chunk, so of one batch; a larger message gets a chunk of its own size. */
  readonly chunkBytes: number;
  /** Kept up to date with the bytes held, for the bridge's gauge (shared with its thread). */
  readonly gauge: Float64Array;
}

/** Sends a batch to the bridge's thread, transferring `transfer` (not copied). */
export type SendBatch = (batch: RedisBatch, transfer: ArrayBuffer[]) => void;

/** Runs `callback` once the current turn of the event loop is over. */
export type ScheduleTurn = (callback: () => void) => void;

/** Messages' bytes back to back, with their channel and payload offsets (3 per message). */
class Chunk {
  readonly buffer: ArrayBuffer;
  readonly bytes: Uint8Array;
  offsets = new Uint32Array(3 * 256);
  used = 0;
  count = 0;

  constructor(capacity: number) {
    this.buffer = new ArrayBuffer(capacity);
    this.bytes = new Uint8Array(this.buffer);
  }

  fits(length: number): boolean {
    return this.used + length <= this.bytes.length;
  }

  append(channel: Buffer, payload: Buffer): void {
    if (3 * this.count === this.offsets.length) {
      const grown = new Uint32Array(2 * this.offsets.length);
      grown.set(this.offsets);
      this.offsets = grown;
    }
    const at = 3 * this.count++;
    this.offsets[at] = this.used;
    this.bytes.set(channel, this.used);
    this.used += channel.length;
    this.offsets[at + 1] = this.used;
    this.bytes.set(payload, this.used);
    this.used += payload.length;
    this.offsets[at + 2] = this.used;
  }
}

/**
 * What the Redis read thread holds between reading a message and handing it over: messages as
 * read (channel name and payload, nothing decoded: the thread must drain the socket faster than
 * Redis fills it, so its work per byte is one copy), bounded in bytes, handed to the bridge's
 * thread one chunk at a time and only when that thread asks (`pull`), so that a busy bridge
 * makes messages wait here instead of in Redis's output buffer.
 *
 * Each message is copied once, into the current chunk; a chunk goes over as one transferred
 * buffer, so a batch costs one postMessage and no copy whatever its message count. Past
 * `maxBufferedBytes` a message is dropped and counted, and the count goes with the next batch;
 * the bound counts messages' bytes (a chunk's unused tail, less than the message that did not
 * fit, is not counted).
 */
export class RedisReadBuffer {
  /** Chunks the next message did not fit in, oldest first; `current` is the one being filled. */
  private readonly full: Chunk[] = [];
  private current: Chunk | undefined;
  private buffered = 0;
  private droppedSinceBatch = 0;
  /** The bridge's thread asked for a batch and has not had it yet. */
  private wanted = false;
  private sendScheduled = false;

  constructor(
    private readonly options: RedisReadBufferOptions,
    private readonly send: SendBatch,
    private readonly schedule: ScheduleTurn = setImmediate,
  ) {}

  /** Bytes of messages held. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Keeps one message, or drops and counts it when the bound is reached. */
  read(channel: Buffer, payload: Buffer): void {
    const length = channel.length + payload.length;
    if (this.buffered + length > this.options.maxBufferedBytes) {
      this.droppedSinceBatch++;
      if (this.wanted) this.scheduleSend();
      return;
    }
    let chunk = this.current;
    if (chunk === undefined || !chunk.fits(length)) {
      if (chunk !== undefined) this.full.push(chunk);
      chunk = new Chunk(Math.max(this.options.chunkBytes, length));
      this.current = chunk;
    }
    chunk.append(channel, payload);
    this.setBuffered(this.buffered + length);
    // Sent on the next turn, so that what one socket read brought travels together.
    if (this.wanted) this.scheduleSend();
  }

  /** The bridge's thread can take the next batch: sent now if there is one, else when one comes. */
  pull(): void {
    this.wanted = true;
    if (this.holdsSomething()) this.scheduleSend();
  }

  /** After a stop: hands over everything held at once, each batch marked `final`. */
  flush(): void {
    this.wanted = false;
    do this.sendOldest(true);
    while (this.holdsSomething());
  }

  private holdsSomething(): boolean {
    return this.full.length > 0 || this.current !== undefined || this.droppedSinceBatch > 0;
  }

  private scheduleSend(): void {
    if (this.sendScheduled) return;
    this.sendScheduled = true;
    this.schedule(() => {
      this.sendScheduled = false;
      if (this.wanted && this.holdsSomething()) {
        this.wanted = false;
        this.sendOldest(false);
      }
    });
  }

  private sendOldest(final: boolean): void {
    let chunk = this.full.shift();
    if (chunk === undefined) {
      chunk = this.current;
      this.current = undefined;
    }
    const dropped = this.droppedSinceBatch;
    this.droppedSinceBatch = 0;
    if (chunk === undefined) {
      this.send(
        { type: 'batch', bytes: new ArrayBuffer(0), offsets: new Uint32Array(0), dropped, final },
        [],
      );
      return;
    }
    this.setBuffered(this.buffered - chunk.used);
    const { buffer, offsets } = chunk;
    this.send(
      {
        type: 'batch',
        bytes: buffer,
        offsets: offsets.subarray(0, 3 * chunk.count),
        dropped,
        final,
      },
      [buffer, offsets.buffer],
    );
  }

  private setBuffered(bytes: number): void {
    this.buffered = bytes;
    this.options.gauge[0] = bytes;
  }
}
