/**
 * kombu >= 5.3 serialises values JSON has no type for as `{"__type__": marker, "__value__": v}`
 * (kombu/utils/json.py `JSONEncoder.default` / `_as`, decoded by `object_hook`): `uuid`
 * (`{"hex": "<32 hex digits>"}`), `datetime`, `date`, `time` (ISO 8601 text), `decimal` (text),
 * `bytes` (UTF-8 text) and `base64`. A worker on kombu 5.3+ may send an event's ids, `eta`,
 * `expires` or a custom event's fields that way; the bridge wants them as the plain strings an
 * older kombu sent.
 */

/** The object is exactly kombu's typed envelope (its `object_hook` checks the same keys). */
function isTyped(value: object): value is { __type__: unknown; __value__: unknown } {
  const keys = Object.keys(value);
  return keys.length === 2 && '__type__' in value && '__value__' in value;
}

const HEX32 = /^[0-9a-f]{32}$/i;

/**
 * The plain value of a kombu typed value, as a string (what an older kombu put there: Celery
 * formats ids with `str(uuid)` and times with `isoformat()`); undefined when `value` is not a
 * typed value kombu's own decoder would accept.
 */
export function kombuTypedString(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  if (!isTyped(value)) return undefined;
  const marker = value.__type__;
  const inner = value.__value__;
  switch (marker) {
    case 'uuid': {
      // uuid.UUID(**{"hex": ...}): str() of it is the dashed lowercase form.
      const hex =
        typeof inner === 'object' && inner !== null
          ? (inner as Record<string, unknown>)['hex']
          : '';
      if (typeof hex !== 'string') return undefined;
      const digits = hex.replace(/[{}-]/g, '').replace(/^urn:uuid:/i, '');
      if (!HEX32.test(digits)) return undefined;
      const h = digits.toLowerCase();
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    }
    case 'datetime':
    case 'date':
    case 'time':
    case 'decimal':
    case 'bytes':
      return typeof inner === 'string' ? inner : undefined;
    case 'base64': {
      if (typeof inner !== 'string') return undefined;
      const bytes = Buffer.from(inner, 'base64');
      // Shown as text only when it is text; otherwise the base64 as sent.
      const text = bytes.toString('utf8');
      return Buffer.from(text, 'utf8').equals(bytes) ? text : inner;
    }
    default:
      return undefined;
  }
}

/** `value` itself, or its plain string when it is a kombu typed value. */
export function unwrapKombuTyped(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  return kombuTypedString(value) ?? value;
}
