import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { attemptSpanIdFor, spanIdFor, traceIdFor } from '../../src/shared/deterministicIds.js';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

describe('traceIdFor', () => {
  it('uses a canonical UUID root id as the trace id, dashes removed, lowercase', () => {
    expect(traceIdFor('2d8f1c3e-5b7a-4c9d-8e0f-1a2b3c4d5e6f')).toBe(
      '2d8f1c3e5b7a4c9d8e0f1a2b3c4d5e6f',
    );
    expect(traceIdFor('2D8F1C3E-5B7A-4C9D-8E0F-1A2B3C4D5E6F')).toBe(
      '2d8f1c3e5b7a4c9d8e0f1a2b3c4d5e6f',
    );
  });

  it('hashes any other id: not hex, dashes elsewhere, other lengths, the all-zero UUID', () => {
    for (const id of [
      '2d8f1c3e-5b7a-4c9d-8e0f-1a2b3c4d5e6g',
      '2d8f1c3e5-b7a-4c9d-8e0f-1a2b3c4d5e6f',
      '2d8f1c3e-5b7a-4c9d-8e0f-1a2b3c4d5e6f0',
      'my-own-task-id',
      '',
      '00000000-0000-0000-0000-000000000000',
    ]) {
      expect(traceIdFor(id), id).toBe(sha256(`trace:${id}`).slice(0, 32));
    }
  });
});

describe('span ids', () => {
  it('are the first 8 bytes of SHA-256 over a prefixed id, stable across versions', () => {
    const id = '2d8f1c3e-5b7a-4c9d-8e0f-1a2b3c4d5e6f';
    expect(spanIdFor(id)).toBe(sha256(`task:${id}`).slice(0, 16));
    expect(attemptSpanIdFor(id, 1)).toBe(sha256(`attempt:1:${id}`).slice(0, 16));
  });
});
