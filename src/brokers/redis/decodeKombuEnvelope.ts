import type { RawEventMessage } from '../../shared/RawEventMessage.js';
import type { DecodeRejection } from '../../shared/DecodeRejection.js';

/**
 * Unwraps kombu's Redis message envelope into a {@link RawEventMessage}.
 *
 * kombu's virtual transport publishes every message, fanout ones included, as a JSON object
 * `{body, content-encoding, content-type, headers, properties}`, where `properties.body_encoding`
 * is `base64` and `properties.delivery_info.routing_key` is the routing key
 * (kombu/transport/virtual/base.py `Channel.prepare_message` / `encode_body`,
 * kombu/transport/redis.py `Channel._put_fanout`). The routing key is read from the envelope, not
 * the channel name, so channels without a routing-key suffix (`fanout_patterns=False`) work too.
 */
export function decodeKombuEnvelope(
  payload: Buffer,
  fallbackRoutingKey: string,
): RawEventMessage | DecodeRejection {
  const body = bodyFirst(payload);
  let text: string;
  if (body === undefined) {
    text = payload.toString('utf8');
  } else {
    // The rest of the envelope, with the body replaced by null: a few hundred bytes to parse
    // instead of the whole message with its (large) body string.
    text = `{"body": null${payload.toString('utf8', body.end + 1)}`;
  }
  let envelope: unknown;
  try {
    envelope = JSON.parse(text);
  } catch {
    // Not V8's message: it quotes the bytes around the error, which may be anyone's data.
    return {
      reason: 'invalid_envelope',
      detail: "a Redis pub/sub message is not kombu's JSON envelope (not valid JSON)",
    };
  }
  if (typeof envelope !== 'object' || envelope === null || Array.isArray(envelope)) {
    return { reason: 'invalid_envelope', detail: 'a Redis pub/sub message is not a JSON object' };
  }
  const fields = envelope as Record<string, unknown>;
  const bodyText = fields['body'];
  if (body === undefined && typeof bodyText !== 'string') {
    return { reason: 'invalid_envelope', detail: 'a kombu envelope has no string "body"' };
  }
  const properties = asRecord(fields['properties']);
  const deliveryInfo = asRecord(properties?.['delivery_info']);
  const routingKey = deliveryInfo?.['routing_key'];
  const contentType = fields['content-type'];
  const contentEncoding = fields['content-encoding'];
  const headers = asRecord(fields['headers']);
  const base64 = properties?.['body_encoding'] === 'base64';
  let bytes: Buffer;
  if (body !== undefined) {
    // Without escapes, the JSON string's bytes are the body's UTF-8 (or base64 ASCII) as is.
    const raw = payload.subarray(body.start, body.end);
    bytes = base64 ? Buffer.from(raw.toString('latin1'), 'base64') : raw;
  } else {
    bytes = Buffer.from(bodyText as string, base64 ? 'base64' : 'utf8');
  }
  return {
    routingKey: typeof routingKey === 'string' ? routingKey : fallbackRoutingKey,
    contentType: typeof contentType === 'string' ? contentType : '',
    contentEncoding: typeof contentEncoding === 'string' ? contentEncoding : undefined,
    compression: typeof headers?.['compression'] === 'string' ? headers['compression'] : undefined,
    body: bytes,
  };
}

/** `{"body": "` as Python's json.dumps writes kombu's envelope (body first, `: ` separator). */
const BODY_FIRST = Buffer.from('{"body": "');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Where the body string's contents are, when the envelope starts with the body and the body has
 * no escape sequences: what kombu writes (kombu/transport/virtual/base.py `prepare_message` puts
 * `body` first; base64 has no quote or backslash). Anything else takes the general path.
 */
function bodyFirst(payload: Buffer): { start: number; end: number } | undefined {
  if (!payload.subarray(0, BODY_FIRST.length).equals(BODY_FIRST)) return undefined;
  const start = BODY_FIRST.length;
  const end = payload.indexOf(QUOTE, start);
  if (end === -1) return undefined;
  const escape = payload.indexOf(BACKSLASH, start);
  if (escape !== -1 && escape < end) return undefined;
  return { start, end };
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

export function isDecodeRejection(
  value: RawEventMessage | DecodeRejection,
): value is DecodeRejection {
  return 'reason' in value;
}
