import { describe, expect, it } from 'vitest';
import { describeBug, describeError } from '../../src/shared/describeError.js';
import { Logger } from '../../src/log/Logger.js';
import { BridgeStats } from '../../src/telemetry/BridgeStats.js';

describe('describeBug', () => {
  it('keeps the stack and every cause, where describeError keeps the message only', () => {
    const root = new TypeError('the root');
    const wrapped = new Error('the wrapper', { cause: root });
    const text = describeBug(wrapped);
    expect(text).toMatch(/^Error: the wrapper\n\s+at /);
    expect(text).toContain('\ncaused by: TypeError: the root\n');
    expect(text).toContain('describeBug.test.ts');
    expect(describeError(wrapped)).toBe('the wrapper');
  });

  it('is bounded however deep or long the causes are', () => {
    let error: unknown = new Error('x'.repeat(100_000));
    for (let i = 0; i < 100; i++) error = new Error(`level ${i}`, { cause: error });
    expect(describeBug(error).length).toBeLessThanOrEqual(8193);
    expect(describeBug('a string thrown')).toBe('a string thrown');
  });

  it('an internal error is logged once with its stack and counted by where, not as bad input', () => {
    const lines: string[] = [];
    const stats = new BridgeStats(new Logger('info', (line) => lines.push(line)));
    stats.internalError('handle_message', new RangeError('a bug'));
    stats.internalError('handle_message', new RangeError('a bug'));
    expect(stats.series('internalErrors').get('handle_message')).toBe(2);
    expect(stats.series('eventsRejected').size).toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('RangeError: a bug');
    expect(lines[0]).toContain('describeBug.test.ts');
  });
});
