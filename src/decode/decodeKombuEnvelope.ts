import type { RawEventMessage } from '../source/RawEventMessage.js';
import type { DecodeRejection } from './DecodeRejection.js';

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
  let envelope: unknown;
  try {
    envelope = JSON.parse(payload.toString('utf8'));
  } catch (error) {
    return {
      reason: 'invalid_envelope',
      detail: `a Redis pub/sub message is not kombu's JSON envelope (${(error as Error).message})`,
    };
  }
  if (typeof envelope !== 'object' || envelope === null || Array.isArray(envelope)) {
    return { reason: 'invalid_envelope', detail: 'a Redis pub/sub message is not a JSON object' };
  }
  const fields = envelope as Record<string, unknown>;
  const body = fields['body'];
  if (typeof body !== 'string') {
    return { reason: 'invalid_envelope', detail: 'a kombu envelope has no string "body"' };
  }
  const properties = asRecord(fields['properties']);
  const deliveryInfo = asRecord(properties?.['delivery_info']);
  const routingKey = deliveryInfo?.['routing_key'];
  const contentType = fields['content-type'];
  const contentEncoding = fields['content-encoding'];
  const headers = asRecord(fields['headers']);
  const bodyEncoding = properties?.['body_encoding'];
  return {
    routingKey: typeof routingKey === 'string' ? routingKey : fallbackRoutingKey,
    contentType: typeof contentType === 'string' ? contentType : '',
    contentEncoding: typeof contentEncoding === 'string' ? contentEncoding : undefined,
    compression: typeof headers?.['compression'] === 'string' ? headers['compression'] : undefined,
    body: bodyEncoding === 'base64' ? Buffer.from(body, 'base64') : Buffer.from(body, 'utf8'),
  };
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
