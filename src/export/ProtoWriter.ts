/**
 * A growable protobuf output buffer with the few wire types OTLP traces use: varint, fixed32,
 * fixed64, double and length-delimited (strings, bytes, nested messages).
 * Wire format: https://protobuf.dev/programming-guides/encoding/
 *
 * Everything here is written so that ProtobufSpanSerializer produces exactly the bytes of
 * otlp-transformer's ProtobufTraceSerializer, including for inputs the API types do not allow
 * (NaN, undefined, fractional numbers): where the SDK's conversions truncate or wrap, these do the
 * same, and say so.
 */
export class ProtoWriter {
  buf: Buffer;
  pos = 0;

  constructor(initialSize = 64 * 1024) {
    // Unpooled and not zeroed: every byte up to `pos` is written before it is read.
    this.buf = Buffer.allocUnsafeSlow(initialSize);
  }

  /** Room for `size` more bytes. */
  ensure(size: number): void {
    if (this.pos + size > this.buf.length) this.grow(size);
  }

  private grow(size: number): void {
    let length = this.buf.length * 2;
    while (length < this.pos + size) length *= 2;
    const next = Buffer.allocUnsafeSlow(length);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** One byte, typically a precomputed field tag (`field << 3 | wire type`, below 128). */
  byte(value: number): void {
    this.ensure(1);
    this.buf[this.pos++] = value;
  }

  /**
   * A varint. Numbers in [0, 2^32) take the unsigned 32-bit path (a fraction is truncated, as
   * `>>> 0` does); anything else is taken as a 64-bit two's complement integer, so a negative
   * int64 takes 10 bytes (proto `int64`, not zigzag `sint64`), a value beyond 2^64 wraps, and NaN
   * or undefined encode as 0, like the SDK's writer.
   */
  varint(value: number): void {
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    if (value >= 0 && value <= 0xffffffff) {
      let v = value >>> 0;
      while (v > 0x7f) {
        buf[pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      buf[pos++] = v;
    } else {
      const magnitude = value >= 0 ? value : -value;
      let low = magnitude >>> 0;
      let high = (magnitude / 0x100000000) >>> 0;
      if (!(value >= 0)) {
        // Two's complement of the 64-bit magnitude: invert and add one, carrying into `high`.
        low = (~low + 1) >>> 0;
        high = (~high + (low === 0 ? 1 : 0)) >>> 0;
      }
      while (high > 0 || low > 0x7f) {
        buf[pos++] = (low & 0x7f) | 0x80;
        low = ((low >>> 7) | (high << 25)) >>> 0;
        high >>>= 7;
      }
      buf[pos++] = low;
    }
    this.pos = pos;
  }

  fixed32(value: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(value >>> 0, this.pos);
    this.pos += 4;
  }

  fixed64(low: number, high: number): void {
    this.ensure(8);
    this.buf.writeUInt32LE(low >>> 0, this.pos);
    this.buf.writeUInt32LE(high >>> 0, this.pos + 4);
    this.pos += 8;
  }

  /** IEEE 754 little-endian (proto `double`, fixed64 wire type). */
  double(value: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(value, this.pos);
    this.pos += 8;
  }

  /**
   * An OpenTelemetry HrTime `[seconds, nanoseconds]` as fixed64 nanoseconds since the epoch
   * (`*_time_unix_nano`). seconds * 1e9 exceeds 2^53 for any current date, so it is computed in
   * two 32-bit halves: 1e9 = 1953125 * 2^9, and seconds * 1953125 stays exact below 2^32 seconds.
   */
  hrTime(time: readonly [number, number]): void {
    const seconds = time[0];
    const nanos = time[1];
    if (
      seconds >= 0 &&
      seconds < 0x100000000 &&
      nanos >= 0 &&
      nanos < 1e9 &&
      Number.isInteger(seconds) &&
      Number.isInteger(nanos)
    ) {
      const scaled = seconds * 1953125; // seconds * 1e9 / 2^9, exact
      const low = (scaled % 0x800000) * 512 + nanos; // low 23 bits of `scaled`, shifted by 9
      const carry = low >= 0x100000000 ? 1 : 0;
      this.fixed64(low, Math.floor(scaled / 0x800000) + carry);
      return;
    }
    this.hrTimeOutOfRange(seconds, nanos);
  }

  /**
   * Times no clock produces (negative, fractional, nanoseconds beyond a second, past 2106): the
   * SDK converts them with 16-bit/32-bit truncations (`& 0xffff`, `>>> 0`) and wraps modulo
   * 2^64; to stay byte-identical even then, this follows the same steps. seconds is split into
   * its low 16 bits and the rest, each part times 1e9 is exact, and the parts are added with
   * carries into a low and a high 32-bit word.
   */
  private hrTimeOutOfRange(seconds: number, nanos: number): void {
    const lowPart = (seconds & 0xffff) * 1e9;
    const highPart = ((seconds / 0x10000) >>> 0) * 1e9;
    const low = (lowPart >>> 0) + (((highPart & 0xffff) * 0x10000) >>> 0) + nanos;
    const high =
      Math.floor(lowPart / 0x100000000) +
      ((highPart / 0x10000) >>> 0) +
      Math.floor(low / 0x100000000);
    this.fixed64(low >>> 0, high >>> 0);
  }

  /**
   * A string as length-delimited UTF-8. Lone surrogates become U+FFFD (EF BF BD), as both
   * Buffer and the SDK's TextEncoder do. Short ASCII strings (most keys and values) are copied
   * byte by byte; the rest go through Buffer's native UTF-8 encoder.
   */
  string(value: string): void {
    const length = value.length;
    if (length < 128) {
      // Assume ASCII: then the byte length is `length` and its varint takes one byte.
      this.ensure(length + 1);
      const buf = this.buf;
      const start = this.pos;
      let pos = start + 1;
      for (let i = 0; i < length; i++) {
        const code = value.charCodeAt(i);
        if (code >= 0x80) {
          this.utf8(value, length);
          return;
        }
        buf[pos++] = code;
      }
      buf[start] = length;
      this.pos = pos;
      return;
    }
    this.utf8(value, length);
  }

  /** Any string: encoded in place after a length guessed from its UTF-16 length, then fixed. */
  private utf8(value: string, length: number): void {
    // UTF-8 takes 1 to 3 bytes per UTF-16 unit (a surrogate pair: 4 bytes for 2 units).
    this.ensure(5 + 3 * length);
    const start = this.pos;
    const guess = varintSize(length);
    const written = this.buf.write(value, start + guess, 'utf8');
    this.placeLength(start, guess, written);
  }

  /** A string whose UTF-8 byte length the caller already knows (Buffer.byteLength). */
  stringOfLength(value: string, byteLength: number): void {
    this.varint(byteLength);
    this.ensure(byteLength);
    this.pos += this.buf.write(value, this.pos, byteLength, 'utf8');
  }

  /**
   * A hex id (trace or span id) as length-delimited bytes, without an intermediate array. Odd
   * lengths drop the last digit and non-hex characters decode as `code - 55` truncated to a byte,
   * exactly as the SDK's hexToBinary does; valid ids are unaffected.
   */
  hexBytes(hex: string): void {
    const count = hex.length >>> 1;
    this.varint(count);
    this.ensure(count);
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < 2 * count; i += 2) {
      const high = hex.charCodeAt(i);
      const low = hex.charCodeAt(i + 1);
      buf[pos++] =
        (((high < 128 ? (NIBBLES[high] as number) : high - 55) << 4) |
          (low < 128 ? (NIBBLES[low] as number) : low - 55)) &
        0xff;
    }
    this.pos = pos;
  }

  /** Raw bytes, length-delimited (proto `bytes`). */
  bytes(value: Uint8Array): void {
    this.varint(value.length);
    this.raw(value);
  }

  /** Bytes as they are (already encoded fields). */
  raw(value: Uint8Array): void {
    this.ensure(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
  }

  /**
   * Starts a nested message whose length is not known yet: reserves `reserve` bytes for its
   * length varint and returns where they start; {@link finishMessage} writes it.
   */
  startMessage(reserve: number): number {
    this.ensure(reserve);
    const start = this.pos;
    this.pos += reserve;
    return start;
  }

  /** Writes the length of the message started at `start`, moving its content if the guess was off. */
  finishMessage(start: number, reserve: number): void {
    this.placeLength(start, reserve, this.pos - start - reserve);
  }

  /**
   * `length` bytes of content sit at start + reserved; writes their length varint at `start`,
   * moving the content when the varint needs more or fewer bytes than reserved (protobuf lengths
   * are minimal varints, so reserving too much and padding is not an option for exact bytes).
   */
  private placeLength(start: number, reserved: number, length: number): void {
    const size = varintSize(length);
    if (size !== reserved) {
      this.ensure(size - reserved);
      this.buf.copyWithin(start + size, start + reserved, start + reserved + length);
    }
    this.pos = start;
    this.varint(length);
    this.pos = start + size + length;
  }

  /** A copy of what was written, in a buffer of its own. */
  copy(): Buffer {
    const out = Buffer.allocUnsafeSlow(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    return out;
  }
}

/** Bytes of the varint of a length (a non-negative integer below 2^32). */
export function varintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;
}

/** `nibble` of every ASCII code, looked up: ids are converted for every span written. */
const NIBBLES = Int16Array.from({ length: 128 }, (_, code) => nibble(code));

function nibble(code: number): number {
  if (code >= 48 && code <= 57) return code - 48; // 0-9
  if (code >= 97 && code <= 102) return code - 87; // a-f
  return code - 55; // A-F (and, like the SDK, anything else)
}
