import { describe, expect, it } from 'vitest';
import { Logger } from '../../src/log/Logger.js';
import { BridgeStats } from '../../src/telemetry/BridgeStats.js';
import { guarded } from '../../src/shared/guarded.js';

describe('guarded timer callbacks', () => {
  it('catch what the callback throws, count each time, log once per place', () => {
    const lines: string[] = [];
    const stats = new BridgeStats(new Logger('info', (line) => lines.push(line)));
    const report = (where: string, error: unknown): void => stats.internalError(where, error);
    let calls = 0;
    const tick = guarded('tick', report, () => {
      calls++;
      throw new RangeError('Invalid time value');
    });
    for (let i = 0; i < 5; i++) expect(() => tick()).not.toThrow();
    guarded('summary', report, () => undefined)();
    expect(calls).toBe(5);
    expect(stats.series('internalErrors')).toEqual(new Map([['tick', 5]]));
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'error', where: 'tick' });
    expect(line['error']).toMatch(/^RangeError: Invalid time value\n\s+at .*guarded\.test\.ts/);
  });
});
