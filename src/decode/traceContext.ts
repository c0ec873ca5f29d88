import type { UpstreamContext } from './CeleryEvent.js';

/**
 * W3C Trace Context, version 00: `00-<trace-id>-<parent-id>-<trace-flags>`, lowercase hex, neither
 * id all zeros. Other versions are refused: this bridge only vouches for the format it knows.
 * https://www.w3.org/TR/trace-context/#traceparent-header-field-values
 */
const TRACEPARENT_00 = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ALL_ZERO = /^0+$/;

/** `tracestate`: at most 32 list members of printable ASCII; 512 characters kept at most. */
const MAX_TRACESTATE_LENGTH = 512;
const TRACESTATE_CHARS = /^[\x20-\x7e]*$/;

export type TraceparentResult =
  | {
      readonly valid: true;
      readonly traceId: string;
      readonly spanId: string;
      readonly flags: number;
    }
  | { readonly valid: false; readonly why: string };

export function parseTraceparent(value: string): TraceparentResult {
  const match = TRACEPARENT_00.exec(value);
  if (match === null) {
    return {
      valid: false,
      why: value.startsWith('00-')
        ? 'not 00-<32 hex>-<16 hex>-<2 hex> in lowercase'
        : 'not a version-00 traceparent',
    };
  }
  const [, traceId = '', spanId = '', flags = '00'] = match;
  if (ALL_ZERO.test(traceId)) return { valid: false, why: 'the trace id is all zeros' };
  if (ALL_ZERO.test(spanId)) return { valid: false, why: 'the parent id is all zeros' };
  return { valid: true, traceId, spanId, flags: Number.parseInt(flags, 16) };
}

/** The upstream context of a traceparent/tracestate pair, or why the traceparent was refused. */
export function upstreamContext(
  traceparent: string,
  tracestate: string | undefined,
): UpstreamContext | { readonly invalid: string } {
  const parsed = parseTraceparent(traceparent);
  if (!parsed.valid) return { invalid: parsed.why };
  const traceState =
    tracestate !== undefined &&
    tracestate.trim() !== '' &&
    tracestate.length <= MAX_TRACESTATE_LENGTH &&
    TRACESTATE_CHARS.test(tracestate)
      ? tracestate
      : undefined;
  return {
    traceId: parsed.traceId,
    spanId: parsed.spanId,
    traceFlags: parsed.flags,
    ...(traceState === undefined ? {} : { traceState }),
  };
}
