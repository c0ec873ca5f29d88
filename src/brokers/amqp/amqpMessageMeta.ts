/**
 * What the RabbitMQ read thread passes on of a delivery besides its body: the routing key and the
 * three properties the decoder needs, written as a few length-prefixed bytes (ReadBuffer's meta)
 * and read back on the bridge's thread.
 *
 * The routing key and the two properties are AMQP short strings (at most 255 bytes,
 * https://www.rabbitmq.com/resources/specs/amqp0-9-1.pdf section 4.2.5.3); kombu's `compression`
 * header is a long string, cut to 255 bytes here: no compression kombu knows has a name that long,
 * so a cut one is still rejected by name.
 */
export interface AmqpMessageMeta {
  readonly routingKey: string;
  readonly contentType: string;
  readonly contentEncoding: string | undefined;
  readonly compression: string | undefined;
}

const HAS_ENCODING = 1;
const HAS_COMPRESSION = 2;
const MAX_FIELD_BYTES = 255;
/** The longest meta: a flags byte, then four fields of a length byte and their bytes. */
export const MAX_META_BYTES = 1 + 4 * (1 + MAX_FIELD_BYTES);

/** Writes `meta` into `scratch` (at least MAX_META_BYTES long); returns the bytes written. */
export function writeAmqpMeta(meta: AmqpMessageMeta, scratch: Buffer): Buffer {
  let flags = 0;
  if (meta.contentEncoding !== undefined) flags |= HAS_ENCODING;
  if (meta.compression !== undefined) flags |= HAS_COMPRESSION;
  scratch[0] = flags;
  let at = 1;
  for (const field of [
    meta.routingKey,
    meta.contentType,
    meta.contentEncoding ?? '',
    meta.compression ?? '',
  ]) {
    // Written past the length byte, then the length set: a field never exceeds 255 bytes.
    const length = scratch.write(field, at + 1, MAX_FIELD_BYTES, 'utf8');
    scratch[at] = length;
    at += 1 + length;
  }
  return scratch.subarray(0, at);
}

/**
 * Reads metas back. Consecutive deliveries almost always carry the same meta (`task.multi`,
 * `application/json`, `utf-8`), so the last one read is kept and returned again for equal bytes,
 * without building its strings anew.
 */
export class AmqpMetaReader {
  private lastBytes: Buffer = Buffer.alloc(0);
  private last: AmqpMessageMeta | undefined;

  /** The meta in `bytes[start, end)`. */
  read(bytes: Buffer, start: number, end: number): AmqpMessageMeta {
    const last = this.last;
    if (
      last !== undefined &&
      end - start === this.lastBytes.length &&
      bytes.compare(this.lastBytes, 0, this.lastBytes.length, start, end) === 0
    ) {
      return last;
    }
    const flags = bytes[start] ?? 0;
    let at = start + 1;
    const field = (): string => {
      const length = bytes[at] ?? 0;
      const value = bytes.toString('utf8', at + 1, Math.min(end, at + 1 + length));
      at += 1 + length;
      return value;
    };
    const routingKey = field();
    const contentType = field();
    const contentEncoding = field();
    const compression = field();
    this.last = {
      routingKey,
      contentType,
      contentEncoding: flags & HAS_ENCODING ? contentEncoding : undefined,
      compression: flags & HAS_COMPRESSION ? compression : undefined,
    };
    this.lastBytes = Buffer.from(bytes.subarray(start, end));
    return this.last;
  }
}
