import { describe, expect, it } from 'vitest';
import { SeriesKeys } from '../../src/metrics/SeriesKeys.js';

describe('SeriesKeys', () => {
  it('gives each combination of values one key, the same each time', () => {
    const keys = new SeriesKeys(100);
    const a = keys.key('tasks.add', 'SUCCESS', 'celery', 'w1');
    expect(keys.key('tasks.add', 'SUCCESS', 'celery', 'w1')).toBe(a);
    expect(a).toBe('tasks.add\u0000SUCCESS\u0000celery\u0000w1');
    // Values are not split on the separator: a value may not run into the next one.
    expect(keys.key('tasks.add', 'SUCCESS', '', 'w1')).not.toBe(
      keys.key('tasks.add', 'SUCCESS', 'w1'),
    );
    expect(keys.key('a', 'b')).toBe('a\u0000b\u0000\u0000');
  });

  it('stays within its bound: past it, it starts again and still gives the same keys', () => {
    const keys = new SeriesKeys(3);
    const first = keys.key('n', 's', 'q', 'w');
    for (let i = 0; i < 10; i++) keys.key(`n${i}`, 's');
    const internals = keys as unknown as { keys: number };
    expect(internals.keys).toBeLessThanOrEqual(3);
    expect(keys.key('n', 's', 'q', 'w')).toBe(first);
  });
});
