/**
 * Messages as read, in order, nothing decoded: one transferred buffer with each message's meta
 * (Redis: the channel name; RabbitMQ: its routing key and properties) and payload back to back;
 * message i's meta is `offsets[3i]`..`offsets[3i+1]` and its payload `offsets[3i+1]`..`offsets[3i+2]`.
 */
export interface ReadBatch {
  readonly type: 'batch';
  readonly bytes: ArrayBuffer;
  readonly offsets: Uint32Array;
  /** With `tagged`: message i's number as read (RabbitMQ: its delivery tag). */
  readonly tags?: Float64Array;
  /** Messages dropped since the last batch because the read buffer was full. */
  readonly dropped: number;
  /** Sent after a stop: the thread exits once they are all sent. */
  readonly final: boolean;
}

export interface ReadBufferOptions {
  /** Most bytes of messages held (metas and payloads); past it messages are dropped. */
  readonly maxBufferedBytes: number;
  /** Bytes of one chunk, so of one batch; a larger message gets a chunk of its own size. */
  readonly chunkBytes: number;
  /** Kept up to date with the bytes held, for the bridge's gauge (shared with its thread). */
  readonly gauge?: Float64Array;
  /** Keep a number with each message (`read`'s `tag`), sent as the batch's `tags`. */
  readonly tagged?: boolean;
}

/** Sends a batch to the bridge's thread, transferring `transfer` (not copied). */
export type SendBatch = (batch: ReadBatch, transfer: ArrayBuffer[]) => void;

/** Runs `callback` once the current turn of the event loop is over. */
export type ScheduleTurn = (callback: () => void) => void;

/** Messages' bytes back to back, with their meta and payload offsets (3 per message). */
class Chunk {
  readonly buffer: ArrayBuffer;
  readonly bytes: Uint8Array;
  offsets = new Uint32Array(3 * 256);
  tags: Float64Array | undefined;
  used = 0;
  count = 0;

  constructor(capacity: number, tagged: boolean) {
    this.buffer = new ArrayBuffer(capacity);
    this.bytes = new Uint8Array(this.buffer);
    if (tagged) this.tags = new Float64Array(256);
  }

  fits(length: number): boolean {
    return this.used + length <= this.bytes.length;
  }

  append(meta: Uint8Array, payload: Uint8Array, tag: number): void {
    if (3 * this.count === this.offsets.length) {
      const grown = new Uint32Array(2 * this.offsets.length);
      grown.set(this.offsets);
      this.offsets = grown;
    }
    if (this.tags !== undefined) {
      if (this.count === this.tags.length) {
        const grown = new Float64Array(2 * this.tags.length);
        grown.set(this.tags);
        this.tags = grown;
      }
      this.tags[this.count] = tag;
    }
    const at = 3 * this.count++;
    this.offsets[at] = this.used;
    this.bytes.set(meta, this.used);
    this.used += meta.length;
    this.offsets[at + 1] = this.used;
    this.bytes.set(payload, this.used);
    this.used += payload.length;
    this.offsets[at + 2] = this.used;
  }
}

/**
 * What a broker's read thread (redisReadThread, amqpReadThread) holds between reading a message
 * and handing it over: messages as read (meta and payload, nothing decoded: the thread must drain
 * the socket faster than the broker fills it, so its work per byte is one copy), bounded in
 * bytes, handed to the bridge's thread one chunk at a time and only when that thread asks
 * (`pull`), so that a busy bridge makes messages wait here instead of in Redis's output buffer
 * (or, on RabbitMQ, stops the broker sending once the prefetch window is unacknowledged).
 *
 * Each message is copied once, into the current chunk; a chunk goes over as one transferred
 * buffer, so a batch costs one postMessage and no copy whatever its message count. Past
 * `maxBufferedBytes` a message is dropped and counted, and the count goes with the next batch;
 * the bound counts messages' bytes (a chunk's unused tail, less than the message that did not
 * fit, is not counted).
 */
export class ReadBuffer {
  /** Chunks the next message did not fit in, oldest first; `current` is the one being filled. */
  private readonly full: Chunk[] = [];
  private current: Chunk | undefined;
  private buffered = 0;
  private droppedSinceBatch = 0;
  /** The bridge's thread asked for a batch and has not had it yet. */
  private wanted = false;
  private sendScheduled = false;

  constructor(
    private readonly options: ReadBufferOptions,
    private readonly send: SendBatch,
    private readonly schedule: ScheduleTurn = setImmediate,
  ) {}

  /** Bytes of messages held. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Keeps one message, or drops and counts it when the bound is reached. */
  read(meta: Uint8Array, payload: Uint8Array, tag = 0): void {
    const length = meta.length + payload.length;
    if (this.buffered + length > this.options.maxBufferedBytes) {
      this.droppedSinceBatch++;
      if (this.wanted) this.scheduleSend();
      return;
    }
    let chunk = this.current;
    if (chunk === undefined || !chunk.fits(length)) {
      if (chunk !== undefined) this.full.push(chunk);
      chunk = new Chunk(Math.max(this.options.chunkBytes, length), this.options.tagged === true);
      this.current = chunk;
    }
    chunk.append(meta, payload, tag);
    this.setBuffered(this.buffered + length);
    // Sent on the next turn, so that what one socket read brought travels together.
    if (this.wanted) this.scheduleSend();
  }

  /** The bridge's thread can take the next batch: sent now if there is one, else when one comes. */
  pull(): void {
    this.wanted = true;
    if (this.holdsSomething()) this.scheduleSend();
  }

  /**
   * Forgets everything held, not counted as dropped: for messages the broker will deliver again
   * (RabbitMQ, after the connection they came on closed). A pull waiting stays waiting.
   */
  discard(): void {
    this.full.length = 0;
    this.current = undefined;
    this.setBuffered(0);
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
    const { buffer, offsets, tags } = chunk;
    const transfer: ArrayBuffer[] = [buffer, offsets.buffer];
    if (tags !== undefined) transfer.push(tags.buffer as ArrayBuffer);
    this.send(
      {
        type: 'batch',
        bytes: buffer,
        offsets: offsets.subarray(0, 3 * chunk.count),
        tags: tags?.subarray(0, chunk.count),
        dropped,
        final,
      },
      transfer,
    );
  }

  private setBuffered(bytes: number): void {
    this.buffered = bytes;
    if (this.options.gauge !== undefined) this.options.gauge[0] = bytes;
  }
}
