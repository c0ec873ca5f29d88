import { describe, expect, it } from 'vitest';
import { HeldTasks } from '../../src/assemble/HeldTasks.js';

describe('HeldTasks', () => {
  it('releases tasks whose grace period is over, in deadline order, while allowed', () => {
    const held = new HeldTasks(100);
    held.hold('a', 0);
    held.hold('b', 10);
    held.hold('a', 50); // already held: its deadline stays
    held.hold('c', 20);
    const released: string[] = [];
    held.releaseDue(
      105,
      () => true,
      (id) => released.push(id),
    );
    expect(released).toEqual(['a']);
    let allowed = 1;
    held.releaseDue(
      1000,
      () => allowed-- > 0,
      (id) => released.push(id),
    );
    expect(released).toEqual(['a', 'b']);
    expect(held.has('c')).toBe(true);
    expect(
      held.releaseAll(
        () => true,
        (id) => released.push(id),
      ),
    ).toBe(true);
    expect(released).toEqual(['a', 'b', 'c']);
  });

  it('tracks the finished tasks waiting for their root, each under one root', () => {
    const held = new HeldTasks(100);
    held.waitForRoot('x', 'r1');
    held.waitForRoot('y', 'r1');
    held.waitForRoot('x', 'r2');
    expect(held.waitingOn('r1')).toEqual(['y']);
    expect(held.waitingOn('r2')).toEqual(['x']);
    held.stopWaiting('x');
    expect(held.waitingOn('r2')).toBeUndefined();
    expect(held.isWaitingForRoot('x')).toBe(false);
    expect(held.isWaitingForRoot('y')).toBe(true);
  });
});
