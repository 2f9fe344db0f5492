import { native } from '../native';
import { Slab } from '../io/slab';

/**
 * Aligned memory for `count` blocks of `blockSize` (slab page i is block i).
 * A slab is whole system pages, so a count of small blocks is rounded up.
 */
export function allocBlocks(blockSize: number, count: number): Slab {
  const perPage = Math.max(1, native.pageSize / blockSize);
  return Slab.alloc(blockSize, Math.max(1, Math.ceil(count / perPage)) * perPage);
}
