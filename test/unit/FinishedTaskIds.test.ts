import { describe, expect, it } from 'vitest';
import { BoundedLru } from '../../src/assemble/BoundedLru.js';
import { FinishedTaskIds } from '../../src/assemble/FinishedTaskIds.js';

describe('FinishedTaskIds', () => {
  it('forgets the oldest id past its capacity, and remembers which tasks failed', () => {
    const ids = new FinishedTaskIds(3);
    ids.add('a', false);
    ids.add('b', true);
    ids.add('c', false);
    ids.add('d', true);
    expect(ids.toArray()).toEqual(['b', 'c', 'd']);
    expect(ids.failed('b')).toBe(true);
    expect(ids.failed('c')).toBe(false);
    expect(ids.failed('a')).toBe(false);
    // An id deleted (a continuation) and exported again is the newest.
    ids.delete('b');
    ids.add('e', false);
    ids.add('b', false);
    expect(ids.toArray()).toEqual(['d', 'e', 'b']);
    expect(ids.failed('b')).toBe(false);
  });

  it('keeps the order through many evictions, and after being emptied', () => {
    const ids = new FinishedTaskIds(100);
    for (let i = 0; i < 10_000; i++) ids.add(`t${i}`, false);
    expect(ids.size).toBe(100);
    expect(ids.toArray()[0]).toBe('t9900');
    for (const id of ids.toArray()) ids.delete(id);
    for (let i = 0; i < 150; i++) ids.add(`u${i}`, false);
    expect(ids.toArray()).toEqual(Array.from({ length: 100 }, (_, i) => `u${i + 50}`));
  });
});

describe('BoundedLru', () => {
  it('evicts the least recently used entry, through many evictions and after being emptied', () => {
    const evicted: string[] = [];
    const lru = new BoundedLru<string, number>(3, (key) => evicted.push(key));
    lru.set('a', 1);
    lru.set('b', 2);
    lru.set('c', 3);
    expect(lru.get('a')).toBe(1);
    lru.set('d', 4);
    expect(evicted).toEqual(['b']);
    expect(lru.peek('c')).toBe(3);
    lru.set('e', 5);
    expect(evicted).toEqual(['b', 'c']);
    for (const key of ['a', 'd', 'e']) lru.delete(key);
    for (let i = 0; i < 1000; i++) lru.set(`k${i}`, i);
    expect(evicted.slice(2, 4)).toEqual(['k0', 'k1']);
    expect(evicted).toHaveLength(2 + 997);
    expect([lru.has('k996'), lru.has('k997'), lru.has('k999')]).toEqual([false, true, true]);
  });
});
