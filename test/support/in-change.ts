import { Change } from '../../src/delta/change';
import type { Deltas } from '../../src/delta/transition';

/**
 * Runs `fn` as one change on a bare Deltas (no Volume over it), as
 * Volume.change does: under the delta lock held shared, ended once `fn`
 * has settled.
 */
export async function inChange<T>(deltas: Deltas, fn: (tx: Change) => T | Promise<T>): Promise<T> {
  await deltas.lock.shared();
  const tx = new Change(deltas, deltas.current);
  try {
    return await fn(tx);
  } finally {
    tx.end();
    deltas.lock.releaseShared();
  }
}
