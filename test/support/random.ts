import { Prng } from '../../src/bench/prng';

export type Random = () => number;

/** The bench's seeded generator (mulberry32) as floats in [0, 1), so that a failing run replays exactly. */
export function seeded(seed: number): Random {
  const prng = new Prng(seed);
  return () => prng.next32() / 4294967296;
}

/** Waits a few turns of the event loop: enough to reorder completions without costing wall time. */
export async function turns(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
