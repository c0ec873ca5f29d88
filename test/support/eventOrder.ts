/**
 * Orders of arrival for replaying captured events. A small deterministic PRNG, so that a failing
 * order can be replayed from its seed.
 */
function nextState(state: number): number {
  return (state * 1103515245 + 12345) % 2147483648;
}

/** Any order at all. */
export function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = nextState(state);
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/**
 * The orders the broker can really deliver: events of one process (one `hostname`) arrive in the
 * order sent, since a process publishes on one connection; the streams of different processes
 * (clients, workers) interleave arbitrarily.
 */
export function interleaved<T extends { hostname?: string }>(items: T[], seed: number): T[] {
  const streams = new Map<string, T[]>();
  for (const item of items) {
    const key = item.hostname ?? '';
    const stream = streams.get(key) ?? [];
    stream.push(item);
    streams.set(key, stream);
  }
  const queues = [...streams.values()];
  const out: T[] = [];
  let state = seed;
  while (queues.some((q) => q.length > 0)) {
    state = nextState(state);
    const nonEmpty = queues.filter((q) => q.length > 0);
    out.push((nonEmpty[state % nonEmpty.length] as T[]).shift() as T);
  }
  return out;
}
