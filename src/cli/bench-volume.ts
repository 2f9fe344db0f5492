import { BlockforkError } from '../io/errors';
import { open, type OpenOptions, type Volume } from '../volume';
import { Prng } from './prng';
import { NotAvailable, type Target } from './subject';

/**
 * The volume a cache workload runs on: the bench's target opened as a user
 * would open it, with every option the workload does not name left at its
 * default, so that the numbers are the ones a user gets.
 */
export type Mode = 'ordered' | 'journal';

/**
 * Opens the target in `mode`. When open() refuses the mode as not built yet
 * (ERR_NOT_SUPPORTED: the journal, issue 4), the run is not available rather
 * than failed; any other error fails the bench.
 */
export async function openVolume(target: Target, mode: Mode, options: OpenOptions = {}): Promise<Volume> {
  try {
    return await open(target.path, { ...options, journal: mode === 'journal' });
  } catch (error) {
    if (error instanceof BlockforkError && error.code === 'ERR_NOT_SUPPORTED') throw new NotAvailable(`not available: ${error.message}`);
    throw error;
  }
}

/**
 * Blocks of the target's region that the volume can use: a journal keeps
 * room for its log, so a journaled volume may hold fewer than the region.
 */
export function usableBlocks(volume: Volume, target: Target): number {
  return Math.min(Math.floor(target.region / volume.blockSize), volume.blockCount);
}

/**
 * A block of seeded noise to write: data that no layer below can compress or
 * skip as zeroes (as fio's and the raw engine's buffers are). Writers stamp
 * each block's number over its first bytes, so no two blocks are alike.
 */
export function noiseBlock(size: number, seed: number): Buffer {
  const block = Buffer.alloc(size);
  const prng = new Prng(seed ^ 0x85ebca6b);
  for (let i = 0; i < size; i += 4) block.writeUInt32LE(prng.next32(), i);
  return block;
}
